"""`cxrcurate verify` says why files do not match a release: the same names in another layout, resized copies,
re-encoded copies; each with the way forward; `--format json` for scripts."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
from fakerelease import write_release
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from cxrcurate.cli import main

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "manifests" / "v1"
SAMPLE = ROOT / "cxrcurate" / "sample"


def _sample_rows() -> pd.DataFrame:
    """Release v1's rows for the files the package's sample holds (the sample is laid out as the repositories and
    its files are copies resized to at most 448 px: cxrcurate/sample/README.md)."""
    df = pd.read_parquet(RELEASE / "open.parquet")
    here = df["path"].map(lambda p: (SAMPLE / p).is_file())
    return df[df["source"].isin(["cohen", "hannover"]) & here].copy()


def _release(tmp_path: Path, rows: pd.DataFrame) -> Path:
    return write_release(tmp_path / "release", rows)


def _as_published(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows describing the sample files themselves (their sha256 and dimensions), as if they were the originals."""
    rows = rows.copy()
    rows["file_sha256"] = [hashlib.sha256((SAMPLE / p).read_bytes()).hexdigest() for p in rows["path"]]
    sizes = [Image.open(SAMPLE / p).size for p in rows["path"]]
    rows["width"], rows["height"] = [w for w, _ in sizes], [h for _, h in sizes]
    return rows


def test_the_same_files_in_another_layout_are_recognised(tmp_path, capsys):
    release = _release(tmp_path, _as_published(_sample_rows()))
    root = tmp_path / "raw"
    shutil.copytree(SAMPLE / "hannover", root / "hannover")
    shutil.copytree(SAMPLE / "cohen", root / "covid-chestxray-dataset-main")  # the archive's own folder name
    assert main(["verify", "--release", str(release), "--root", str(root)]) == 3
    out = capsys.readouterr().out
    assert "9 missing" in out and "ANOTHER LAYOUT: 9 missing files have the same file name elsewhere" in out
    assert "(9 of them byte-identical" in out
    assert f"`mkdir -p {root} && mv {root / 'covid-chestxray-dataset-main'} {root / 'cohen'}` (9 files)" in out
    assert f"cxrcurate fetch --release {release} --out {root}" in out
    shutil.move(root / "covid-chestxray-dataset-main", root / "cohen")  # doing what it says fixes it
    assert main(["verify", "--release", str(release), "--root", str(root)]) == 0


def test_resized_copies_are_recognised(tmp_path, capsys):
    rows = _sample_rows()  # v1's own figures: the original files' sha256 and dimensions
    release = _release(tmp_path, rows)
    root = tmp_path / "raw"
    for source in ("cohen", "hannover"):
        shutil.copytree(SAMPLE / source, root / source)
    assert main(["verify", "--release", str(release), "--root", str(root), "--format", "json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert not doc["ok"] and len(doc["changed"]) == len(rows)
    resized = doc["diagnosis"]["resized"]
    assert resized, "the sample's copies are smaller than the published originals"
    first = rows.set_index("path").loc[resized[0]["path"]]
    assert resized[0]["release_size"] == f"{first['width']}x{first['height']}" != resized[0]["found_size"]
    assert any(line.startswith("RESIZED COPIES") for line in doc["diagnosis"]["advice"])


def test_a_re_encoded_copy_is_recognised(tmp_path, capsys):
    release = _release(tmp_path, _as_published(_sample_rows()))
    root = tmp_path / "raw"
    for source in ("cohen", "hannover"):
        shutil.copytree(SAMPLE / source, root / source)
    png = root / "hannover" / "png" / "006f3a8a.png"
    info = PngInfo()
    info.add_text("Software", "an image editor")
    Image.open(png).save(png, pnginfo=info)  # same pixels and size, other bytes
    assert main(["verify", "--release", str(release), "--root", str(root)]) == 3
    out = capsys.readouterr().out
    assert "1 changed" in out and "RE-ENCODED OR EDITED COPIES: 1 files" in out and "006f3a8a.png" in out
    assert "RESIZED" not in out and "ANOTHER LAYOUT" not in out
