"""What a leak is worth: k-NN under a split vs a unit-aware split of the same rows, neighbour shares, confounds, and
words instead of numbers where the evidence is insufficient."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cxrcurate.cli import main
from cxrcurate.errors import CxrcurateError
from cxrcurate.splitcheck.measure import measure_leak, measure_split_table, per_image_split


def _copies(n_pictures: int = 150, seed: int = 0, sources: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    """Each picture published twice (one dup group, one patient), content unrelated to the label: only a model that
    finds the picture's copy can beat chance."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_pictures, 16))
    labels = np.where(rng.random(n_pictures) < 0.5, "covid19", "normal")
    rows, vecs = [], []
    for i in range(n_pictures):
        for c in range(2):
            src = f"s{(i + c) % sources}"
            rows.append({"image_id": f"{src}:p{i:03d}-{c}.png", "source": src, "patient_id": f"{src}:{i}",
                         "label": labels[i], "dup_group": f"g{i}", "keep": c == 0})
            vecs.append(base[i] + rng.normal(scale=0.01, size=16))
    x = np.asarray(vecs, np.float32)
    return pd.DataFrame(rows), x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_per_image_split_of_copies_hands_a_model_a_gain():
    df, x = _copies()
    side = per_image_split(df, test=0.3, seed=1)
    r = measure_leak(df, side, vectors=x, n_boot=300)
    n = r.neighbours
    assert n["has_copy"] > 0.5 * n["test_rows"] and n["nn_copy"] == n["has_copy"]
    assert r.given["roc_auc"].value > 0.8
    assert r.unit_aware["roc_auc"].ci[0] < 0.5 < r.unit_aware["roc_auc"].ci[1]  # no copy to find: chance
    gain = r.gain["roc_auc"]
    assert gain.value > 0.2 and gain.ci[0] > 0 and gain.verdict().startswith("a gain")
    assert r.rows["unit_aware_test"] == pytest.approx(r.rows["test"], abs=6)
    worth = r.leaked_worth["roc_auc"]  # paired on the same test rows: narrower than the gain's interval
    assert worth.ci[0] > 0.2 and worth.ci[1] - worth.ci[0] < gain.ci[1] - gain.ci[0]
    assert r.rows["purged_train"] < r.rows["train"]
    doc = r.to_dict()
    json.dumps(doc)
    assert doc["gain"]["roc_auc"]["verdict"].startswith("a gain")


def test_a_unit_aware_split_shows_no_gain():
    df, x = _copies(seed=2)
    from cxrcurate.splits import make_split

    side = make_split(df, test=0.3, val=0.0, seed=0)["split"]
    r = measure_leak(df, side, vectors=x, n_boot=300)
    assert r.neighbours["has_copy"] == 0 and r.neighbours["has_unit"] == 0
    assert r.gain["roc_auc"].ci[0] < 0 < r.gain["roc_auc"].ci[1]
    assert "no difference shown" in r.gain["roc_auc"].verdict()
    assert r.leaked_worth["roc_auc"].insufficient.startswith("no train row shares a unit with the test side")


def test_degenerate_inputs_say_insufficient_evidence_in_words():
    df, x = _copies(n_pictures=30)
    df["label"] = "covid19"  # one class
    r = measure_leak(df, per_image_split(df.assign(label=np.where(np.arange(len(df)) % 2, "covid19", "normal")),
                                         seed=0), vectors=x, n_boot=100)
    for group in (r.given, r.unit_aware, r.gain, r.leaked_worth):
        for f in group.values():
            assert f.value is None and f.ci is None and f.insufficient
    text = r.to_text()
    assert "insufficient evidence" in text and "[" not in text.split("given split:")[1].split("confounds")[0]
    assert r.confounds["label_from_source"].insufficient == "one source only"


def test_one_unit_is_insufficient_evidence():
    df, x = _copies(n_pictures=12)
    df["patient_id"] = "s0:one"  # every picture of one patient: one unit
    side = pd.Series(np.where(np.arange(len(df)) % 4 == 0, "test", "train"), index=df.index)
    r = measure_leak(df, side, vectors=x, n_boot=100)
    assert r.given["roc_auc"].insufficient == "the test side holds one unit"
    assert r.unit_aware["roc_auc"].insufficient.startswith("no unit-aware split of these rows")


def test_confounds_against_their_chance_levels():
    df, x = _copies(n_pictures=160, sources=2, seed=3)
    df["label"] = np.where(df["source"] == "s0", "covid19", "normal")  # the label IS the source
    shift = np.where(df["source"].to_numpy()[:, None] == "s0", 0.0, 0.6)  # and the source shows in the pixels
    x = x + shift.astype(np.float32)
    side = per_image_split(df, seed=0)
    r = measure_leak(df, side, vectors=x, n_boot=300)
    src = r.confounds["label_from_source"]
    assert src.value > 0.95 and src.ci[0] > 0.5 and src.verdict() == "above chance"
    content = r.confounds["source_from_content"]
    assert content.chance == 0.5 and content.ci[0] > 0.5


def test_cli_measure_on_the_sample(sample_build, capsys):
    assert main(["leakage", str(sample_build.manifest), "--per-image", "--measure", "--embedding", "phash",
                 "--format", "json"]) == 3  # the sample's copies cross a per-image split
    doc = json.loads(capsys.readouterr().out)
    m = doc["measure"]
    assert m["embedding"] == "phash" and m["rows"]["train"] + m["rows"]["test"] == 30
    for group in ("given", "unit_aware", "gain", "leaked_worth", "confounds"):
        for f in m[group].values():  # either a number with its interval, or the reason there is none
            assert (f["value"] is None) == (f["ci"] is None) == bool(f["insufficient"])
            assert f["verdict"].startswith("insufficient evidence") == bool(f["insufficient"])


def test_a_bench_runs_split_table_is_measured_on_the_full_manifest(tmp_path):
    df, x = _copies(n_pictures=60)
    side = per_image_split(df, seed=0)
    table = pd.DataFrame({"image_id": df["image_id"], "split": side}).dropna()
    table.to_parquet(tmp_path / "split.parquet")
    got = measure_split_table(df, tmp_path / "split.parquet", vectors=x, n_boot=100)
    assert got.to_dict() == measure_leak(df, side, vectors=x, n_boot=100).to_dict()
    with pytest.raises(CxrcurateError, match="lacks column"):
        measure_split_table(df, table.drop(columns="split"), vectors=x)
