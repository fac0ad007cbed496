"""The published release (manifests/v1): readable without cxrcurate, pinned to the original files, split without
leaks, described by a card that matches it, reproducible; verify/materialise against a user's files; flags."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fakerelease import fake_release, png

from cxrcurate.cli import main
from cxrcurate.errors import CxrcurateError
from cxrcurate.release import load_release, materialise, verify_release
from cxrcurate.release.card import render_card
from cxrcurate.release.quality import Thresholds, flags, measure
from cxrcurate.splits import leakage_report, split_groups

RELEASE = Path(__file__).resolve().parents[1] / "manifests" / "v1"
FILES = ("open.parquet", "open.pairs.parquet", "open.conflicts.parquet", "open.dropped.parquet",
         "nih-cxr14.parquet", "release.json", "README.md", "croissant.json")


@pytest.fixture(scope="module")
def release() -> pd.DataFrame:
    return load_release(RELEASE)


def test_release_files_are_committed_and_small():
    for name in FILES:
        assert (RELEASE / name).is_file(), name
    assert sum((RELEASE / n).stat().st_size for n in FILES) < 8 * 2**20


def test_loads_without_cxrcurate_in_pandas_duckdb_and_datasets(tmp_path):
    code = f"""
import json, sys
import duckdb, pandas as pd, pyarrow.parquet as pq, datasets
root = {str(RELEASE)!r}
df = pd.read_parquet(root + "/open.parquet")
assert len(df) > 1000 and df["image_id"].is_unique and set(df["split"]) == {{"train", "val", "test"}}
n = duckdb.sql(f"select count(*) from read_parquet('{{root}}/nih-cxr14.parquet')").fetchall()[0][0]
assert n == 112120, n
ds = datasets.load_dataset("parquet", data_files=root + "/open.parquet", split="train")
assert ds.num_rows == len(df) and "flag_inverted" in ds.features
meta = json.loads(pq.read_schema(root + "/open.parquet").metadata[b"cxrcurate"])
assert meta["release"] == "v1" and meta["table"] == "release" and meta["split"]["seed"] == 0
assert not any(m.startswith("cxrcurate") for m in sys.modules), "cxrcurate was imported"
print("ok")
"""
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_identity_is_the_originals(release, shared_data):
    orig = pd.read_csv(shared_data / "ORIGINALS.csv", dtype=str)
    orig["release_path"] = orig["path"].str.split("/").str[0] + "/" + orig["repo_path"]
    merged = release.merge(orig, left_on="path", right_on="release_path", how="left", validate="1:1")
    assert merged["original_sha256"].notna().all(), "a release row has no ORIGINALS.csv entry"
    assert (merged["file_sha256"] == merged["original_sha256"]).all()
    assert (merged["file_bytes"].astype(str) == merged["original_bytes"]).all()
    assert (merged["width"].astype(str) == merged["original_width"]).all()
    assert (merged["height"].astype(str) == merged["original_height"]).all()
    assert (merged["repository"] == merged["repo"]).all() and (merged["commit_x"] == merged["commit_y"]).all()
    # every ORIGINALS image of the open sources is in the release or in its dropped table with a reason
    dropped = set(pd.read_parquet(RELEASE / "open.dropped.parquet")["path"].dropna())
    accounted = set(release["path"]) | dropped
    assert set(orig["release_path"]) <= accounted
    # never the resized copy's values
    copy = shared_data / "covid-cxnet/images/001.jpeg"
    row = release.set_index("path").loc["covid-cxnet/chest_xray_images/covid19/001.jpeg"]
    assert row["file_sha256"] != hashlib.sha256(copy.read_bytes()).hexdigest()
    assert release["pixel_sha256"].isna().all() and release["phash"].isna().all()


def test_release_sha256_matches_untouched_original_files(release, shared_data):
    files = {p.name: p for p in (shared_data / "originals").rglob("*") if p.is_file()}
    by_name = release.assign(name=release["path"].str.rsplit("/", n=1).str[-1])
    checked = 0
    for name, path in files.items():
        rows = by_name[by_name["name"] == name]
        if len(rows) == 1:
            assert rows["file_sha256"].iloc[0] == hashlib.sha256(path.read_bytes()).hexdigest(), path
            checked += 1
    assert checked >= 5


def test_standard_split_has_no_unit_on_two_sides(release):
    assert release.groupby("unit")["split"].nunique().max() == 1
    assert release.assign(u=split_groups(release)).groupby("u")["split"].nunique().max() == 1
    report = leakage_report(release, pairs=RELEASE / "open.pairs.parquet")
    assert report.ok, report.to_text()
    nih = load_release(RELEASE, "nih-cxr14")
    assert len(nih) == 112_120 and nih.groupby("patient_id")["split"].nunique().max() == 1


def test_card_matches_the_release(release):
    card = (RELEASE / "README.md").read_text()
    assert card == render_card(RELEASE)
    assert card.startswith("---\n") and "task_categories:" in card and "size_categories:" in card
    for source, n in release.groupby("source").size().items():
        assert f"| {source} | {n} |" in card
    for side in ("train", "val", "test"):
        assert f"{int((release['split'] == side).sum())}" in card
    facts = json.loads((RELEASE / "release.json").read_text())
    for flag, s in facts["flag_scores"].items():
        if isinstance(s, dict) and "tp" in s:
            assert f"| {flag} | {s['positives']} | {s['flagged']} | {s['tp']} |" in card


def test_committed_release_is_what_the_command_builds(tmp_path, shared_data):
    out = tmp_path / "v1"
    out.mkdir()
    for hand_made in ("quality-truth.csv", "QUALITY-TRUTH.md"):  # the eye-checked truth set and how it was decided
        shutil.copy(RELEASE / hand_made, out / hand_made)
    assert main(["release", "build", "--data", str(shared_data), "--out", str(out), "--quiet"]) == 0
    for name in FILES:
        assert (out / name).read_bytes() == (RELEASE / name).read_bytes(), f"{name} differs from the committed one"


def test_verify_catches_a_changed_and_a_missing_file(tmp_path, capsys):
    rel, root = fake_release(tmp_path)
    assert verify_release(rel, root).ok
    assert main(["verify", "--release", str(rel), "--root", str(root)]) == 0
    png(root / "hannover/png/1.png", 99)  # changed
    (root / "hannover/png/2.png").unlink()  # missing
    png(root / "hannover/png/new.png", 5)  # extra
    report = verify_release(rel, root)
    assert not report.ok
    assert report.changed == ["hannover/png/1.png"] and report.missing == ["hannover/png/2.png"]
    assert report.extra == ["hannover/png/new.png"]
    capsys.readouterr()
    assert main(["verify", "--release", str(rel), "--root", str(root)]) == 3
    text = capsys.readouterr().out
    assert "1 missing" in text and "1 changed" in text and "MISMATCH" in text


def test_materialise_gives_a_full_manifest_with_the_release_split(tmp_path):
    rel, root = fake_release(tmp_path)
    out = tmp_path / "manifest.parquet"
    assert main(["materialise", "--release", str(rel), "--root", str(root), "--out", str(out), "--quiet"]) == 0
    from cxrcurate.manifest import read_manifest

    df = read_manifest(out)
    assert list(df["split"]) == ["train", "val", "test"] and df["pixel_sha256"].notna().all()
    assert df["flag_small"].all() and df.attrs["cxrcurate"]["data_root"] == str(root.resolve())
    (root / "hannover/png/2.png").unlink()
    with pytest.raises(CxrcurateError, match="missing"):
        materialise(rel, root)
    assert len(materialise(rel, root, allow_missing=True, progress=False)) == 2


def test_flags_on_constructed_images():
    t = Thresholds()
    blank = np.full((200, 200), 128, np.uint8)
    assert flags(measure(blank), 200, 200, "PA", t)["flag_low_information"]
    assert flags(measure(blank), 200, 200, "PA", t)["flag_small"] and not flags(measure(blank), 900, 800, "PA",
                                                                                   t)["flag_small"]
    # a frontal-like picture: dark lungs either side of a bright spine column, bright outside the body
    y, x = np.mgrid[0:256, 0:256]
    img = np.full((256, 256), 200, np.float32)
    img[(np.abs(x - 75) < 40) & (y > 50) & (y < 210)] = 50
    img[(np.abs(x - 181) < 40) & (y > 50) & (y < 210)] = 50
    img += np.random.default_rng(0).normal(0, 10, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    assert not flags(measure(img), 900, 900, "PA", t)["flag_inverted"]
    assert flags(measure(255 - img), 900, 900, "PA", t)["flag_inverted"]
    assert not flags(measure(img), 900, 900, "PA", t)["flag_lateral"]
