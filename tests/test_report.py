"""The HTML report: one self-contained file whose every picture is an embedded PNG, checked in headless Chromium
when it is installed (Debian's ``chromium`` package)."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the [bench] extra installs torch")
pytest.importorskip("matplotlib", reason="the [bench] extra installs matplotlib")

from cxrcurate.cli import main  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Added to a copy of the page only: after loading, the body records how many images failed to decode.
PROBE = ("<script>window.addEventListener('load',()=>{const bad=[...document.images].filter("
         "i=>!(i.complete&&i.naturalWidth>0&&i.naturalHeight>0));document.body.setAttribute('data-images',"
         "document.images.length);document.body.setAttribute('data-broken',bad.length);});</script>")


pytestmark = pytest.mark.usefixtures("torch_one_thread")




@pytest.fixture(scope="module")
def report(toy_manifest, tmp_path_factory):
    """bench -> audit -> report on the toy manifest (base CNN, 32 px, COVID-19 vs normal + pneumonia)."""
    from cxrcurate.bench.run import BenchOptions, run_bench
    from cxrcurate.bench.train import TrainConfig

    out = tmp_path_factory.mktemp("report")
    train = TrainConfig(epochs=6, batch_size=8, workers=0, lr=3e-3, patience=6)
    run = run_bench(toy_manifest, out / "run", BenchOptions(model="base-cnn", size=32, n_boot=50, augment=False,
                                                            negatives=("normal", "pneumonia"), train=train),
                    progress=False)
    main(["audit", str(run), "--no-loso", "--methods", "gradcam,lime", "--lime-samples", "24", "--ig-steps", "8",
          "-q"])
    assert main(["report", str(run), "-o", str(out / "report.html")]) == 0
    return out / "report.html"


def test_report_loads_no_model_and_no_torch(report):
    """The report renders what the bench and the audit recorded: a fresh process never imports torch or Captum."""
    import sys

    run = report.parent / "run"
    code = ("import sys; from cxrcurate.cli import main; rc = main(['report', sys.argv[1], '-o', sys.argv[2]]); "
            "print(rc, 'torch' in sys.modules, 'captum' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(run), str(report.parent / "again.html")],
                          capture_output=True, text=True, timeout=300, env={**os.environ})
    assert done.stdout.split()[-3:] == ["0", "False", "False"], done.stderr[-2000:]


def test_report_is_one_self_contained_file(report):
    from PIL import Image

    page = report.read_text(encoding="utf-8")
    for heading in ("Summary", "Configuration", "Data", "Metrics", "Where the model looks", "Shortcut audit",
                    "Against the paper"):
        assert f"<h2>{heading}" in page, heading
    assert page.index("<h2>Summary") < page.index("<h2>Configuration")  # the answer first
    assert "What to believe:" in page and "images / units" in page
    sources = re.findall(r"<img[^>]*\ssrc='([^']*)'", page)
    assert len(sources) >= 4 and len(sources) == page.count("<img")  # ROC, confusion, one grid per class
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert img.width > 50 and img.height > 50
    assert not re.search(r"(src|href)=['\"]?(https?:|//|file:)", page)  # nothing loaded from elsewhere
    assert "0.987" in page  # the paper's base-CNN accuracy beside ours
    for check in ("lungs_masked", "lungs_only", "attribution_in_lungs", "source_probe", "leave_one_source_out",
                  "demographics", "leakage"):
        assert check in page


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_report_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image

    browser = _chromium()
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium)")
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    flags = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'data-images="(\d+)" data-broken="(\d+)"', dom.stdout)
    assert found, dom.stdout[-500:]
    assert int(found.group(1)) >= 4 and found.group(2) == "0"  # every picture decoded, none missing
    shot = tmp_path / "report.png"
    done = subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1400,3000", report.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = Image.open(shot).convert("L")
    assert pixels.getextrema()[0] < 100 and len(pixels.getcolors(1 << 16) or ()) > 50  # text and figures, not blank
    keep = os.environ.get("CXRCURATE_ARTIFACTS")
    if keep:  # where CI (or a developer) collects the screenshot to look at
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report.png")
