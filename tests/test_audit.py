"""The shortcut audit: its self-test (a planted marker is flagged, a clean control passes), a toy run end to end
through the ``audit`` subcommand, and each check's rules on hand-made data."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch", reason="the [bench] extra installs torch")
pytest.importorskip("captum", reason="the [bench] extra installs captum")

from cxrcurate.audit import checks as audit_checks  # noqa: E402
from cxrcurate.audit.base import STATUSES, AuditOptions  # noqa: E402
from cxrcurate.audit.core import attribution_status, drop_status, masked_status, run_audit, vote  # noqa: E402
from cxrcurate.cli import main  # noqa: E402

CHECKS = {"lungs_masked", "lungs_only", "attribution_in_lungs", "source_probe", "leave_one_source_out",
          "demographics", "leakage"}


pytestmark = pytest.mark.usefixtures("torch_one_thread")




def two_source_toy(toy_manifest, out, masks_for=("toya", "toyb")):
    """The toy images copied under ``out``, split into two sources by patient, with exact lung masks."""
    from PIL import Image

    from cxrcurate.audit.selftest import lung_mask
    from cxrcurate.manifest import read_manifest, write_manifest

    df = read_manifest(toy_manifest)
    if not (out / "toy").exists():
        shutil.copytree(toy_manifest.parent / "toy", out / "toy")
        Image.fromarray(lung_mask(96) * 255).save(out / "toy/lungs.png")  # the generator's ellipses, exactly
    number = df["patient_id"].str.extract(r"p(\d+)$")[0].astype(int)
    df["source"] = np.where(number % 2 == 1, "toya", "toyb")
    df["image_id"] = df["source"] + ":" + df["path"]
    df["patient_id"] = df["source"] + ":p" + number.astype(str)
    df["mask_paths"] = [["toy/lungs.png"] if s in masks_for else None for s in df["source"]]
    name = "manifest.parquet" if len(masks_for) == 2 else f"manifest-{'-'.join(masks_for) or 'nomask'}.parquet"
    return write_manifest(df, out / name, {"data_root": str(out)})


@pytest.fixture(scope="module")
def toy_run(toy_manifest, tmp_path_factory):
    from cxrcurate.bench.run import BenchOptions, run_bench
    from cxrcurate.bench.train import TrainConfig

    out = tmp_path_factory.mktemp("audit-toy")
    manifest = two_source_toy(toy_manifest, out)
    train = TrainConfig(epochs=8, batch_size=8, workers=0, lr=3e-3, patience=8)
    return run_bench(manifest, out / "run", BenchOptions(model="base-cnn", size=32, n_boot=50, augment=False,
                                                          train=train), progress=False)


def test_self_test_flags_the_planted_marker_and_passes_the_clean_control(tmp_path):
    from cxrcurate.audit.selftest import SelfTestOptions, run_self_test

    result = run_self_test(tmp_path, SelfTestOptions(n_images=160, epochs=10, lime_samples=32))
    planted, clean = result.variants["planted"], result.variants["clean"]
    assert planted["checks"]["lungs_masked"]["status"] == "fail", result.table()
    assert planted["checks"]["attribution_in_lungs"]["status"] in ("warn", "fail"), result.table()
    assert planted["marker"]["hot"] and planted["marker"]["ig"]["lift"] > 3 * max(clean["marker"]["ig"]["lift"], 1)
    assert clean["checks"]["lungs_masked"]["status"] == "pass", result.table()
    assert not clean["marker"]["hot"], result.table()
    assert result.ok and planted["got"] == "flagged" and clean["got"] == "passed"
    assert json.loads((tmp_path / "selftest.json").read_text())["ok"] is True
    assert "PASS" in result.table()


def test_audit_command_end_to_end_on_a_toy_run(toy_run, capsys):
    code = main(["audit", str(toy_run), "--lime-samples", "16", "--ig-steps", "8", "--max-images", "0"])
    out = capsys.readouterr().out
    audit = json.loads((toy_run / "audit.json").read_text())
    checks = {c["name"]: c for c in audit["checks"]}
    assert set(checks) == CHECKS and all(c["status"] in STATUSES and c["thresholds"] for c in checks.values())
    assert code == (1 if audit["verdict"] == "fail" else 0)
    assert all(name in out for name in CHECKS) and f"verdict: {audit['verdict'].upper()}" in out
    assert audit["reload_max_abs_diff"] < 1e-4  # the rebuilt network is the run's network
    test_n = json.loads((toy_run / "metrics.json").read_text())["runs"][0]["n"]
    assert audit["lung_masks"]["by_kind"] == {"ground-truth": test_n}
    assert checks["lungs_masked"]["numbers"]["n"] == test_n and checks["lungs_only"]["status"] != "not run"
    loso = checks["leave_one_source_out"]["numbers"]["sources"]
    assert set(loso) == {"toya", "toyb"} and all("gap" in r for r in loso.values())
    assert (toy_run / "audit-loso/toya/run-0/weights.safetensors").exists()
    probe = checks["source_probe"]["numbers"]["labels"]
    assert set(probe) == {"normal", "covid19"} and all(v["auroc"] is not None for v in probe.values())
    attr = pd.read_parquet(toy_run / "run-0/attributions.parquet")
    assert len(attr) == 3 * test_n and set(attr["method"]) == {"gradcam", "lime", "ig"}
    assert checks["attribution_in_lungs"]["numbers"]["methods"]["ig"]["by_source"].keys() <= {"toya", "toyb"}
    assert "report" in checks["leakage"]["numbers"] and "per_class" in checks["demographics"]["numbers"]


def test_images_without_a_lung_mask_are_counted_not_invented(toy_run, toy_manifest):
    half = two_source_toy(toy_manifest, toy_run.parent, masks_for=("toya",))
    opts = AuditOptions(lung_source="ground-truth", manifest=str(half), loso=False, probe=False, region="box",
                        attribution=_methods("gradcam"), n_boot=20)
    audit = run_audit(toy_run, opts)
    split = pd.read_parquet(toy_run / "run-0/split.parquet")
    without = int(((split["split"] == "test") & (split["source"] == "toyb")).sum())
    checks = {c["name"]: c for c in audit["checks"]}
    assert without > 0 and audit["lung_masks"]["no_mask"] == without
    assert audit["lung_masks"]["by_kind"]["none"] == without
    assert checks["attribution_in_lungs"]["numbers"]["no_mask"] == without
    assert checks["lungs_masked"]["numbers"]["no_mask"] == without
    assert checks["lungs_masked"]["numbers"]["region"] == "lung bounding box"
    assert checks["leave_one_source_out"]["status"] == "not run" and "--no-loso" in \
        checks["leave_one_source_out"]["summary"]


def _methods(*names):
    from cxrcurate.audit.attribution import AttributionOptions

    return AttributionOptions(methods=names, lime_samples=8, ig_steps=4)


def test_status_rules():
    assert masked_status(0.9, [0.75, 1.0]) == "fail"
    assert masked_status(0.65, [0.55, 0.8]) == "warn"  # above chance, below the fail line
    assert masked_status(0.75, [0.45, 0.95]) == "warn"  # high but too few images to tell
    assert masked_status(0.6, [0.35, 0.8]) == "pass"  # indistinguishable from chance
    assert masked_status(float("nan"), [float("nan")] * 2) == "not run"
    assert [drop_status(d) for d in (0.01, 0.1, 0.3)] == ["pass", "warn", "fail"]
    assert vote(["fail", "pass", "pass"]) == "pass" and vote(["fail", "warn", "pass"]) == "warn"
    assert vote(["fail", "pass"]) == "fail" and vote(["not run"]) == "not run"
    stats = {"lung_share_mean": 0.2, "pointing_hit_rate": 0.3, "chance": 0.35}
    assert attribution_status(stats) == "fail"
    assert attribution_status({**stats, "lung_share_mean": 0.45, "pointing_hit_rate": 0.9}) == "warn"
    assert attribution_status({**stats, "lung_share_mean": 0.7, "pointing_hit_rate": 0.9}) == "pass"


def test_demographics_flags_a_class_whose_negatives_are_children():
    frame = pd.DataFrame({"label": ["normal"] * 6 + ["covid19"] * 6, "target": [0] * 6 + [1] * 6,
                          "split": ["train", "test"] * 6, "pediatric": [True] * 5 + [False] + [False] * 6,
                          "age_years": [5.0] * 5 + [40.0] + [60.0] * 6})
    check = audit_checks.demographics(frame, ("non-covid", "covid19"))
    assert check.status == "fail" and "covid19: negatives mostly children" in check.summary
    assert {r["label"] for r in check.numbers["table"]} == {"normal", "covid19"}
    frame["pediatric"] = False
    assert audit_checks.demographics(frame, ("non-covid", "covid19")).status == "pass"


def test_leakage_check_fails_a_patient_on_both_sides_and_a_per_image_split():
    frame = pd.DataFrame({"image_id": ["a", "b", "c"], "patient_id": ["p1", "p1", "p2"],
                          "split": ["train", "test", "test"], "dup_group": [None] * 3})
    check = audit_checks.leakage(frame, "group")
    assert check.status == "fail" and "patient" in check.summary and not check.numbers["report"]["ok"]
    frame["patient_id"] = ["p1", "p2", "p3"]
    assert audit_checks.leakage(frame, "group").status == "pass"
    assert audit_checks.leakage(frame, "per-image").status == "fail"


def test_leave_one_source_out_says_not_run_with_one_source():
    frame = pd.DataFrame({"source": ["only"] * 4})
    opts = AuditOptions()
    check = audit_checks.leave_one_source_out(None, frame, opts)
    assert check.status == "not run" and "single source" in check.summary


def test_source_probe_finds_a_source_written_into_the_features():
    gen = torch.Generator().manual_seed(0)

    class Run:  # features: the source shifts every value, the label does nothing
        def dataset(self, rows):
            return [(torch.full((3, 4, 4), float(s == "a")) + 0.3 * torch.randn(3, 4, 4, generator=gen), 0, i)
                    for s, i in zip(rows["source"], rows["image_id"], strict=True)]

    class Model:
        def features(self, x):
            return x.flatten(1)

    n = 40
    frame = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "patient_id": [f"p{k}" for k in range(n)],
                          "label": ["normal", "covid19"] * (n // 2), "source": ["a"] * (n // 2) + ["b"] * (n // 2)})
    check = audit_checks.source_probe(Run(), Model(), frame, AuditOptions(probe_images=32), "cpu")
    assert check.status == "fail" and check.numbers["images"] == 32
    assert all(v["auroc"] > 0.9 for v in check.numbers["labels"].values())
    one = audit_checks.source_probe(Run(), Model(), frame.assign(source="a"), AuditOptions(), "cpu")
    assert one.status == "not run" and "one-source" in one.summary
