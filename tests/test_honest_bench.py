"""The honest benchmark: units on the full manifest (the bench's own data path), CIs by unit, the ladder as
published (hard cascade, histogram matching, frozen ImageNet rungs), a training recipe that says when it did
not learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrcurate.bench.data import prepare
from cxrcurate.bench.metrics import aggregate, score
from cxrcurate.splits import leakage_report, split_groups


def _manifest(n_patients: int = 60, seed: int = 0) -> pd.DataFrame:
    """Independent patients, two images each, half of them COVID-19; no dedup links among them."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = "covid19" if p % 2 else "normal"
        for k in range(2):
            rows.append({"image_id": f"s:{p}-{k}", "source": "s", "patient_id": f"s:{p}", "label": label,
                         "dup_group": f"g{p}-{k}", "keep": True, "split": None, "extra": None,
                         "pixel_sha256": f"{p:04d}{k}", "file_sha256": f"f{p:04d}{k}",
                         "phash": int(rng.integers(0, 2**63))})
    return pd.DataFrame(rows)


def _with_chain(df: pd.DataFrame, via: str) -> pd.DataFrame:
    """Add A (kept, no patient) and C (patient P) linked ONLY through a row the task drops.

    ``via`` = ``copy``: B is a not-kept copy of A with patient P; ``label``: B is a copy of A kept, but labelled
    ``other`` (outside a normal-vs-COVID task); both B variants carry patient P, as C does.
    """
    base = {"source": "t", "extra": None, "split": None, "phash": 1}
    a = {**base, "image_id": "t:A", "patient_id": None, "label": "covid19", "dup_group": "G", "keep": True,
         "pixel_sha256": "a", "file_sha256": "fa"}
    b = {**base, "image_id": "t:B", "patient_id": "t:P", "label": "covid19" if via == "copy" else "other",
         "dup_group": "G" if via == "copy" else "G2", "keep": via != "copy", "pixel_sha256": "b",
         "file_sha256": "fb"}
    if via == "label":  # B shares A's pixels (so a hash links them) but its label is outside the task
        b["pixel_sha256"] = "a"
    c = {**base, "image_id": "t:C", "patient_id": "t:P", "label": "covid19", "dup_group": "H", "keep": True,
         "pixel_sha256": "c", "file_sha256": "fc"}
    return pd.concat([df, pd.DataFrame([a, b, c])], ignore_index=True)


@pytest.mark.parametrize("via", ["copy", "label"])
def test_a_link_through_a_dropped_row_keeps_both_ends_together(via):
    df = _with_chain(_manifest(), via)
    apart = 0
    for seed in range(40):
        task = prepare(df, ("non-covid", "covid19"), "group", ("normal",), test=0.3, val=0.2, seed=seed)
        side = task.frame.set_index("image_id")["split"]
        assert "t:B" not in side.index  # B is not in the task ...
        apart += side["t:A"] != side["t:C"]  # ... but A and C are one unit through it
        # the bench's split checked against the FULL manifest: no unit on two sides
        full = df.assign(split=df["image_id"].map(side))
        assert leakage_report(full).findings["unit"].total == 0
    assert apart == 0


def test_a_link_through_a_row_cut_by_max_images_still_binds():
    df = _with_chain(_manifest(), "copy")
    for seed in range(10):
        task = prepare(df, ("non-covid", "covid19"), "group", ("normal",), test=0.3, val=0.2, seed=seed,
                       max_images=80)
        full = df.assign(split=df["image_id"].map(task.frame.set_index("image_id")["split"]))
        assert leakage_report(full).findings["unit"].total == 0
        assert task.frame.groupby("unit")["split"].nunique().max() == 1


def test_units_link_accepted_pairs_of_the_pairs_table():
    df = _manifest(6)
    pairs = pd.DataFrame({"image_a": ["s:0-0", "s:1-0"], "image_b": ["s:3-1", "s:4-1"], "accepted": [True, False]})
    units = split_groups(df, pairs)
    idx = df.set_index("image_id").index
    u = pd.Series(units.to_numpy(), index=idx)
    assert u["s:0-0"] == u["s:3-1"] and u["s:1-0"] != u["s:4-1"]


def test_holdout_source_takes_every_unit_that_touches_it_even_through_dropped_rows():
    df = _with_chain(_manifest(), "copy")
    df.loc[df["image_id"] == "t:A", "source"] = "u"  # A is the only kept row of source u ...
    df.loc[df["image_id"] == "t:B", "source"] = "v"  # ... and its dropped copy B is the only row of source v
    task = prepare(df, ("non-covid", "covid19"), "group", ("normal",), test=0.2, val=0.2, seed=0,
                   holdout_source="v")
    side = task.frame.set_index("image_id")["split"]
    assert side["t:A"] == "test" and side["t:C"] == "test"  # pulled into test through the dropped copy
    assert (side.drop(["t:A", "t:C"]) != "test").all()


def test_bootstrap_by_unit_is_wider_than_by_image():
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(40), 5)
    y = (patients % 2).astype(int)
    signal = rng.normal(0, 1, 40)[patients] + y * 1.0  # patient-level effect: images of one patient correlate
    proba = 1 / (1 + np.exp(-signal))
    proba = np.stack([1 - proba, proba], axis=1)
    by_image = score(y, proba, ("non-covid", "covid19"), n_boot=400, seed=1)
    by_unit = score(y, proba, ("non-covid", "covid19"), n_boot=400, seed=1, groups=patients)
    wi = np.diff(by_image["ci95"]["roc_auc"])[0]
    wu = np.diff(by_unit["ci95"]["roc_auc"])[0]
    assert by_unit["ci_unit"] == "unit" and by_unit["n_units"] == 40 and by_image["ci_unit"] == "image"
    assert wu > 1.3 * wi, (wi, wu)
    assert by_unit["boot_undefined"]["roc_auc"] == 0


def test_undefined_resamples_are_counted_not_dropped():
    y = np.array([0] * 9 + [1])
    proba = np.stack([np.linspace(0.9, 0.1, 10), np.linspace(0.1, 0.9, 10)], axis=1)
    res = score(y, proba, ("non-covid", "covid19"), n_boot=200, seed=0)
    assert 0 < res["boot_undefined"]["roc_auc"] < 200  # resamples without the positive have no AUC
    assert res["n_boot"] == 200


def test_std_over_seeds_is_the_sample_std():
    agg = aggregate([{"accuracy": 0.5, "covid_f1": 0.5, "roc_auc": 0.5, "balanced_accuracy": 0.5},
                     {"accuracy": 0.7, "covid_f1": 0.7, "roc_auc": float("nan"), "balanced_accuracy": 0.7}])
    assert agg["accuracy"]["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert agg["roc_auc"]["defined"] == 1 and np.isnan(agg["roc_auc"]["std"])


def test_the_hierarchical_rung_is_a_hard_cascade():
    pytest.importorskip("torch")
    from cxrcurate.bench.run import cascade

    order = (0, 1, 2)  # normal, pneumonia, covid19
    p1 = np.array([[0.4, 0.6], [0.7, 0.3], [0.45, 0.55]])
    p2 = np.array([[0.45, 0.55], [0.0, 1.0], [0.9, 0.1]])
    proba, pred = cascade(p1, p2, order)
    # p1=0.6, p2=0.55: the soft products' argmax says normal (0.40 > 0.33); the paper's cascade says COVID-19
    assert proba[0].argmax() == 0 and pred[0] == 2
    assert pred[1] == 0  # stage 1 says normal: stage 2 is not asked
    assert pred[2] == 1
    res = score(np.array([2, 0, 1]), proba, ("normal", "pneumonia", "covid19"), n_boot=0, pred=pred)
    assert res["accuracy"] == 1.0


def test_multiclass_rungs_match_histograms_and_imagenet_rungs_come_frozen_too():
    pytest.importorskip("torch")
    from cxrcurate.bench.run import preprocess_config
    from cxrcurate.models import get_spec
    from cxrcurate.models.ladder import build_model

    for name in ("cxnet-3class", "cxnet-hier"):
        assert preprocess_config(get_spec(name), 64).histogram_reference is not None
    assert preprocess_config(get_spec("cxnet"), 64).histogram_reference is None
    model = build_model(get_spec("resnet50-imagenet-frozen"), init="random")
    trainable = {k for k, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable and all(k.startswith("layer4.") for k in trainable)
    assert all(p.requires_grad for p in model.head.parameters())
    model.train()
    assert not model.backbone.bn1.training and model.backbone.layer4[0].bn1.training


def test_lr_finder_returns_a_usable_adam_rate():
    torch = pytest.importorskip("torch")
    from torch import nn

    from cxrcurate.bench.train import LR_MAX, LR_MIN, Loss, TrainConfig, class_weights, lr_range_test

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, 8, 8, generator=g)
    y = (x[:, 0].mean(dim=(1, 2)) > 0).long()
    ds = torch.utils.data.TensorDataset(x, y, torch.arange(256))
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 16), nn.ReLU(), nn.Linear(16, 1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(batch_size=32, workers=0)
    lr = lr_range_test(model, ds, Loss(class_weights(y.numpy(), 2), 0.0), cfg, torch.device("cpu"))
    assert LR_MIN <= lr <= LR_MAX
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights restored


def test_bench_cli_runs_leave_no_unit_on_two_sides_of_the_full_manifest(toy_manifest, tmp_path, capsys):
    """The bench's own path (CLI), several seeds, a link that runs only through a copy the bench drops; then
    `cxrcurate leakage MANIFEST --run RUN` checks every seed against the full manifest."""
    pytest.importorskip("torch")
    from cxrcurate.cli import main
    from cxrcurate.manifest import read_info, read_manifest, write_manifest

    df = read_manifest(toy_manifest).reset_index(drop=True)
    pats = sorted(df["patient_id"].dropna().unique())
    a = df.index[df["patient_id"] == pats[0]][0]  # A: kept, its patient forgotten, dup group G
    b, c = df.index[df["patient_id"] == pats[1]][:2]  # B: a copy of A not kept, patient P; C: patient P
    df.loc[a, ["patient_id", "dup_group"]] = [None, "G"]
    df.loc[b, ["dup_group", "keep"]] = ["G", False]
    df.loc[df.index != b, "keep"] = True
    df["dup_group"] = df["dup_group"].fillna(pd.Series([f"own{i}" for i in range(len(df))], index=df.index))
    manifest = write_manifest(df, tmp_path / "m" / "manifest.parquet", read_info(toy_manifest))
    # dedup ran and accepted no pair (the toy pictures share pHashes without being copies)
    pd.DataFrame({"image_a": pd.Series(dtype=str), "image_b": pd.Series(dtype=str),
                  "accepted": pd.Series(dtype=bool)}).to_parquet(manifest.with_name("manifest.pairs.parquet"))
    run = tmp_path / "run"
    args = ["bench", "--model", "base-cnn", "--manifest", str(manifest), "--data-root", str(toy_manifest.parent),
            "--out", str(run), "--runs", "3",
            "--size", "32", "--epochs", "1", "--batch-size", "8", "--workers", "0", "--no-augment", "-q",
            "--negatives", "normal,pneumonia"]
    assert main(args) == 0
    for k in range(3):
        split = pd.read_parquet(run / f"run-{k}" / "split.parquet").set_index("image_id")["split"]
        ids = df["image_id"]
        assert ids[b] not in split.index and split[ids[a]] == split[ids[c]]
    capsys.readouterr()
    assert main(["leakage", str(manifest), "--run", str(run)]) == 0
    assert capsys.readouterr().out.count("OK: nothing crosses sides") == 3
    assert main([*args[:-2], "--negatives", "normal,pneumonia", "--split-policy", "per-image", "--out",
                 str(tmp_path / "leaky")]) == 0
    assert main(["leakage", str(manifest), "--run", str(tmp_path / "leaky")]) == 3


def test_lr_finder_falls_back_when_the_loss_never_falls():
    torch = pytest.importorskip("torch")
    from torch import nn

    from cxrcurate.bench.train import LR_FALLBACK, Loss, TrainConfig, class_weights, lr_range_test

    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 3, 8, 8, generator=g)
    y = torch.randint(0, 2, (128,), generator=g)  # random labels: nothing to learn, the loss stays at ln 2
    ds = torch.utils.data.TensorDataset(x, y, torch.arange(128))
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 1))
    with torch.no_grad():
        model[1].weight.zero_()
    lr = lr_range_test(model, ds, Loss(class_weights(y.numpy(), 2), 0.0), TrainConfig(batch_size=32, workers=0),
                       torch.device("cpu"), end=1e-3)
    assert lr == LR_FALLBACK


def test_base_cnn_starts_with_a_live_signal():
    torch = pytest.importorskip("torch")
    from cxrcurate.models.ladder import BaseCNN

    torch.manual_seed(0)
    model = BaseCNN(1, 64)
    with torch.no_grad():
        out = model(torch.randn(64, 3, 64, 64))
        hidden = model.head[:3](model.features(torch.randn(64, 3, 64, 64)))
    assert float(out.std()) > 0.05  # PyTorch's default init gave 5e-4: a constant, stuck at ln 2
    assert int((hidden > 0).any(dim=0).sum()) >= 6
