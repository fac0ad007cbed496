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
from cxrcurate.audit.base import STATUSES, AuditOptions, unit_bootstrap, worst  # noqa: E402
from cxrcurate.audit.checks import probe_status  # noqa: E402
from cxrcurate.audit.core import (  # noqa: E402
    at_chance_status,
    attribution_check,
    attribution_status,
    drop_status,
    includes_chance,
    masked_status,
    run_audit,
    vote,
)
from cxrcurate.cli import main  # noqa: E402

CHECKS = {"lungs_masked", "lungs_only", "attribution_in_lungs", "source_probe", "leave_one_source_out",
          "demographics", "leakage"}


pytestmark = pytest.mark.usefixtures("torch_one_thread")




def lung_mask(side):
    """The toy generator's lungs (conftest's ellipses), uint8 0/1."""
    yy, xx = np.mgrid[0:side, 0:side] / side
    return ((((xx - 0.3) / 0.17) ** 2 + ((yy - 0.5) / 0.33) ** 2 < 1)
            | (((xx - 0.7) / 0.17) ** 2 + ((yy - 0.5) / 0.33) ** 2 < 1)).astype(np.uint8)


def two_source_toy(toy_manifest, out, masks_for=("toya", "toyb")):
    """The toy images copied under ``out``, split into two sources by patient, with exact lung masks."""
    from PIL import Image

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
                                                          test=0.35, train=train), progress=False)


def test_scenarios_plant_the_marker_at_their_rates_outside_the_lungs(tmp_path):
    from cxrcurate.audit.selftest import SCENARIOS, marker_box, real_images, scenario_manifest
    from cxrcurate.manifest import read_manifest

    images, where = real_images(64, 120, data_dir=tmp_path / "absent")  # no shared folder: the shipped sample
    assert len(images) == 120 and "sample" in where
    pictures = len({key for _, _, key in images})
    assert 15 <= pictures < 40  # jittered copies of one picture are one unit (the sample holds ~23 pictures)
    by_image = read_manifest(scenario_manifest(tmp_path / "by-image", images, SCENARIOS["clean"], seed=1,
                                               label_by="image"))
    assert by_image.groupby("patient_id")["label"].nunique().eq(2).mean() > 0.8  # units hold both classes
    df = read_manifest(scenario_manifest(tmp_path / "partial", images, SCENARIOS["partial-marker"], seed=1))
    marked = df["extra"].map(lambda e: json.loads(e)["marker"])
    rate = marked.groupby(df["label"]).mean()
    assert 0.45 < rate["covid19"] < 0.75 and 0.08 < rate["normal"] < 0.32, rate  # planned 60% / 20%
    assert df.groupby("patient_id")["label"].nunique().max() == 1  # a patient has one label
    clean = read_manifest(scenario_manifest(tmp_path / "clean", images, SCENARIOS["clean"], seed=1))
    assert not clean["extra"].map(lambda e: json.loads(e)["marker"]).any()
    inside = [images[i][1][r:r + b, c:c + b].mean() for i in range(40)
              for r, c, b in [marker_box(images[i][1], anywhere=True)]]
    assert np.mean(inside) < 0.1  # the sample's lungs fill the frame: the marker goes where they are not (0.02)


def test_near_identical_pictures_get_one_patient():
    from cxrcurate.audit.selftest import same_picture_same_patient

    rng = np.random.default_rng(0)
    a = (rng.random((64, 64)) * 255).astype(np.uint8)
    b = np.clip(a.astype(int) + 2, 0, 255).astype(np.uint8)  # the same picture, re-encoded a little brighter
    c = (rng.random((64, 64)) * 255).astype(np.uint8)
    lungs = np.zeros((64, 64), bool)
    out = same_picture_same_patient([(a, lungs, "p1"), (b, lungs, "p2"), (c, lungs, "p3")])
    assert [p for _, _, p in out] == ["p1", "p1", "p3"]


@pytest.mark.slow
def test_self_test_gives_every_scenario_its_expected_verdict(tmp_path, shared_data):
    """The full graded self-test on real CXRs (minutes on two cores): the clean control's WHOLE verdict is pass."""
    from cxrcurate.audit.selftest import SelfTestOptions, run_self_test

    result = run_self_test(tmp_path, SelfTestOptions(data_dir=str(shared_data)))
    clean = result.scenarios["clean"]
    assert clean["got"] == "pass" and clean["auc"] > 0.7, result.table()
    assert result.scenarios["full-marker"]["got"] == "fail", result.table()
    assert result.ok, result.table()
    assert json.loads((tmp_path / "selftest.json").read_text())["ok"] is True


@pytest.mark.slow
def test_self_test_cli_passes_on_the_shipped_sample(tmp_path, capsys):
    """The default path (no --self-test-data): the shipped sample's pictures, jittered, one unit per picture."""
    code = main(["audit", "--self-test", "--out", str(tmp_path), "-q", "--self-test-scenarios", "clean,full-marker"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "the shipped sample" in out and "MISMATCH" not in out


def test_audit_command_end_to_end_on_a_toy_run(toy_run, capsys):
    from cxrcurate.bench.record import RunRecord

    code = main(["audit", str(toy_run), "--lime-samples", "16", "--ig-steps", "8", "--max-images", "0", "-q"])
    out = capsys.readouterr().out
    rec = RunRecord.open(toy_run)
    audit = rec.audit()
    assert audit["run_id"] == rec.run_id
    checks = {c["name"]: c for c in audit["checks"]}
    assert set(checks) == CHECKS and all(c["status"] in STATUSES and c["thresholds"] for c in checks.values())
    assert code == (3 if any(c["status"] == "fail" for c in checks.values()) else 0)
    assert all(name in out for name in CHECKS) and f"verdict: {audit['verdict'].upper()}" in out
    assert audit["reload_max_abs_diff"] < 1e-4  # the rebuilt network is the run's network
    seed = rec.metrics["runs"][0]
    test_n = seed["n"]
    split = rec.split(0)
    # the audit resamples the bench's units: the same count, read not recomputed
    assert audit["test_performance"]["units"] == seed["n_units"] == split.query("split == 'test'")["unit"].nunique()
    assert seed["evidence"]["kind"] == "ok", seed["evidence"]  # the toy task is learnt: the checks may decide
    assert audit["lung_masks"]["by_kind"] == {"ground-truth": test_n}
    assert checks["lungs_masked"]["numbers"]["n"] == test_n and checks["lungs_only"]["status"] != "not run"
    loso = checks["leave_one_source_out"]["numbers"]["sources"]
    assert set(loso) == {"toya", "toyb"} and all("gap" in r for r in loso.values())
    assert RunRecord.open(rec.loso_dir("toya")).weights_path(0).exists()
    assert len({r["gap_metric"] for r in loso.values()}) == 1  # one metric across sources
    probe = checks["source_probe"]["numbers"]["labels"]
    assert set(probe) == {"normal", "covid19"} and all(v["auroc"] is not None for v in probe.values())
    attr = rec.attributions(0)
    overlays = rec.overlays(0)
    assert set(overlays["method"]) == {"gradcam", "lime", "ig"} and overlays["map"].map(len).eq(32 * 32).all()
    assert len(attr) == 3 * test_n and set(attr["method"]) == {"gradcam", "lime", "ig"}
    assert checks["attribution_in_lungs"]["numbers"]["methods"]["ig"]["by_source"].keys() <= {"toya", "toyb"}
    assert "report" in checks["leakage"]["numbers"] and "per_class" in checks["demographics"]["numbers"]


def test_images_without_a_lung_mask_are_counted_not_invented(toy_run, toy_manifest):
    half = two_source_toy(toy_manifest, toy_run.parent, masks_for=("toya",))
    opts = AuditOptions(lung_source="ground-truth", manifest=str(half), loso=False, probe=False, region="box",
                        attribution=_methods("gradcam"), n_boot=20)
    audit = run_audit(toy_run, opts)
    from cxrcurate.bench.record import RunRecord

    split = RunRecord.open(toy_run).split(0)
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
    assert masked_status(0.62, [0.53, 0.75]) == "warn"  # above chance, below the fail line (0.15 from chance)
    assert masked_status(0.69, [0.55, 0.82]) == "fail"  # a full marker seen with the lungs blacked out (measured)
    assert masked_status(0.75, [0.45, 0.95]) == "warn"  # high but too few images to tell
    assert masked_status(0.6, [0.35, 0.8]) == "pass"  # indistinguishable from chance
    assert masked_status(0.3, [0.22, 0.38]) == "fail"  # far BELOW chance with a tight CI: signal outside the lungs
    assert masked_status(0.37, [0.3, 0.45]) == "warn"  # the 0.37 no longer passes
    assert masked_status(float("nan"), [float("nan")] * 2) == "not run"
    assert [drop_status(d) for d in (0.01, 0.1, 0.3)] == ["pass", "warn", "fail"]
    assert vote(["fail", "pass", "pass"]) == "pass" and vote(["fail", "warn", "pass"]) == "warn"
    assert vote(["fail", "pass"]) == "fail" and vote(["not run"]) == "not run"
    assert attribution_status(-0.2, [-0.3, -0.1]) == "fail"  # lungs lost 20 points of attribution vs untrained
    assert attribution_status(-0.07, [-0.12, -0.02]) == "warn"
    assert attribution_status(-0.2, [-0.45, 0.05]) == "pass"  # could be noise
    assert attribution_status(0.1, [0.05, 0.15]) == "pass"  # more in the lungs than untrained
    assert worst(["pass", "inconclusive", "not run"]) == "inconclusive" and worst(["inconclusive", "warn"]) == "warn"
    assert "inconclusive" in STATUSES and at_chance_status("fail", True) == "inconclusive"
    assert probe_status(0.2, [0.1, 0.3]) == "fail" and probe_status(0.2, [-0.05, 0.4]) == "pass"
    assert probe_status(0.08, [0.02, 0.14]) == "warn" and probe_status(-0.1, [-0.2, 0.0]) == "pass"


def test_unit_bootstrap_resamples_whole_patients():
    rng = np.random.default_rng(0)
    patient_effect = np.repeat(rng.normal(0, 1, 40), 5)  # 40 patients x 5 images, images of one patient alike
    values = patient_effect + rng.normal(0, 0.1, 200)
    by_image, _ = unit_bootstrap(lambda i: float(values[i].mean()), np.arange(200).astype(str), 300, 0)
    by_patient, undefined = unit_bootstrap(lambda i: float(values[i].mean()), np.repeat(np.arange(40), 5).astype(str),
                                           300, 0)
    assert undefined == 0 and (by_patient[1] - by_patient[0]) > 1.8 * (by_image[1] - by_image[0])
    _, undefined = unit_bootstrap(lambda i: float("nan") if len(set(i)) < 190 else 1.0, np.arange(200).astype(str),
                                  50, 0)
    assert undefined == 50  # every resample undefined: counted, not hidden


def test_attribution_check_is_inconclusive_for_a_model_at_chance():
    summary = {"ig": {"overall": {}}}
    lifts = {"ig": {"lift": -0.3, "ci95": [-0.4, -0.2], "trained_mean": 0.2, "initial_mean": 0.5, "n": 40}}
    assert attribution_check(summary, {}, 0, lifts, "random init").status == "fail"
    at_chance = attribution_check(summary, {}, 0, lifts, "random init", chance=True)
    assert at_chance.status == "inconclusive" and at_chance.numbers["status_if_not_at_chance"] == "fail"
    assert attribution_check(summary, {}, 0, None, "weights not cached").status == "inconclusive"
    assert includes_chance([0.45, 0.6]) and not includes_chance([0.55, 0.7]) and not includes_chance([0.2, 0.4])


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


def test_source_probe_reads_the_lift_over_the_initial_network():
    gen = torch.Generator().manual_seed(0)

    class Run:  # features: the source shifts every value, the label does nothing
        def dataset(self, rows):
            return [(torch.full((3, 4, 4), float(s == "a")) + 0.3 * torch.randn(3, 4, 4, generator=gen), 0, i)
                    for s, i in zip(rows["source"], rows["image_id"], strict=True)]

    class Model:
        def __init__(self, sees_source):
            self.sees_source = sees_source

        def features(self, x):
            return x.flatten(1) if self.sees_source else torch.randn(x.shape[0], 48, generator=gen)

    n = 40
    frame = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "patient_id": [f"p{k}" for k in range(n)],
                          "label": ["normal", "covid19"] * (n // 2), "source": ["a"] * (n // 2) + ["b"] * (n // 2)})
    frame["unit"] = frame["patient_id"]  # the bench's units, as its split table records them
    opts = AuditOptions(probe_images=32, n_boot=100)
    learnt = audit_checks.source_probe(Run(), Model(True), frame, opts, "cpu", Model(False), "random init")
    assert learnt.status == "fail" and learnt.numbers["images"] == 32
    assert all(v["auroc"] > 0.9 and v["lift"] > 0.3 and v["lift_ci95"][0] > 0
               for v in learnt.numbers["labels"].values())
    # the clean twin: the untrained network tells the sources apart just as well, so training added nothing
    already = audit_checks.source_probe(Run(), Model(True), frame, opts, "cpu", Model(True), "random init")
    assert already.status == "pass" and all(v["auroc"] > 0.9 for v in already.numbers["labels"].values())
    assert audit_checks.source_probe(Run(), Model(True), frame, opts, "cpu", None, "no weights").status == \
        "inconclusive"
    one = audit_checks.source_probe(Run(), Model(True), frame.assign(source="a"), AuditOptions(), "cpu")
    assert one.status == "not run" and "one-source" in one.summary


def test_leakage_check_reads_the_full_manifest():
    """The only link between the two sides runs through a row the run dropped (a removed copy with a patient id)."""
    manifest = pd.DataFrame({"image_id": ["kept", "copy", "other"], "patient_id": [None, "P", "P"],
                             "dup_group": ["g1", "g1", None], "keep": [True, False, True]})
    frame = pd.DataFrame({"image_id": ["kept", "other"], "split": ["train", "test"], "patient_id": [None, "P"],
                          "dup_group": ["g1", None]})
    assert audit_checks.leakage(frame, "group").status == "pass"  # the run's rows alone look clean
    check = audit_checks.leakage(frame, "group", manifest)
    assert check.status == "fail" and check.numbers["report"]["findings"]["unit"]["total"] == 1
    assert check.numbers["report"]["rows_per_side"] == {"train": 1, "test": 1}  # the dropped row takes no side
    frame["split"] = "train"
    assert audit_checks.leakage(frame, "group", manifest).status == "pass"


def test_self_test_expectations_follow_the_measured_marker_reliance():
    from cxrcurate.audit.selftest import SCENARIOS, expected_verdicts

    assert expected_verdicts(SCENARIOS["clean"], 0.5) == ("pass",)  # the control always passes, whatever happens
    assert expected_verdicts(SCENARIOS["full-marker"], 0.9) == ("fail",)
    assert expected_verdicts(SCENARIOS["partial-marker"], 0.01) == ("pass",)  # not read: no wolf to cry
    assert set(expected_verdicts(SCENARIOS["low-contrast"], 0.1)) == {"pass", "warn", "fail"}


def test_lungs_only_judges_the_drop_by_its_confidence_interval():
    from cxrcurate.audit.core import region_checks

    rng = np.random.default_rng(0)
    n = 60
    y = np.arange(n) % 2

    def scores(signal):
        p = 1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(0, 1, n))))
        return list(np.log(np.stack([1 - p, p], axis=1)))

    full = scores(1.5)
    noisy = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "target": y, "full": full,
                          "masked": scores(0.0), "inside": scores(1.3)})
    only = {c.name: c for c in region_checks(noisy, ("non-covid", "covid19"), 0, 300, 0, "mask")}["lungs_only"]
    assert only.status == "pass" and only.numbers["drop_ci95"][0] < 0.05 < only.numbers["drop_ci95"][1] + 1
    gone = noisy.assign(inside=scores(0.0))
    only = {c.name: c for c in region_checks(gone, ("non-covid", "covid19"), 0, 300, 0, "mask")}["lungs_only"]
    assert only.status == "fail" and only.numbers["drop_ci95"][0] > 0.15
