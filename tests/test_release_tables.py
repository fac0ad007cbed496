"""The release is a manifest: every command reads its tables; it cannot be edited unnoticed; it rebuilds to the same
bytes with 1 and with 2 threads; commands that rewrite a table keep every column and never overwrite by surprise."""

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
import pyarrow.parquet as pq
import pytest
from fakerelease import fake_release

from cxrcurate.cli import main
from cxrcurate.errors import CxrcurateError
from cxrcurate.manifest import read_manifest
from cxrcurate.release import materialise, verify_release

RELEASE = Path(__file__).resolve().parents[1] / "manifests" / "v1"
TABLES = ("open.parquet", "open.pairs.parquet", "open.conflicts.parquet", "open.dropped.parquet")


def test_leakage_reads_the_published_release_with_its_pairs(capsys):
    assert main(["leakage", str(RELEASE / "open.parquet")]) == 0
    out = capsys.readouterr().out
    assert "open.pairs.parquet" in out and "OK: nothing crosses sides" in out
    assert "accepted pairs of the pairs table" in out  # the pairs beside it were used, not phash
    assert main(["leakage", str(RELEASE / "nih-cxr14.parquet")]) == 0
    assert main(["stats", str(RELEASE / "open.parquet")]) == 0
    assert "quality flags per source" in capsys.readouterr().out


def test_every_release_table_says_its_kind():
    kinds = {"open.parquet": "release", "open.pairs.parquet": "pairs", "open.conflicts.parquet": "conflicts",
             "open.dropped.parquet": "dropped", "nih-cxr14.parquet": "nih-cxr14"}
    for name, kind in kinds.items():
        meta = json.loads(pq.read_schema(RELEASE / name).metadata[b"cxrcurate"])
        assert meta["table"] == kind and meta["release"] == "v1", name
    pairs = pd.read_parquet(RELEASE / "open.pairs.parquet")
    assert list(pairs.columns) == ["image_a", "image_b", "kind", "hamming", "inliers", "score", "accepted", "stage"]
    assert pairs["accepted"].all()


def test_release_json_lists_the_sha256_of_every_other_file():
    facts = json.loads((RELEASE / "release.json").read_text())
    names = {p.name for p in RELEASE.iterdir() if p.is_file() and p.name != "release.json"}
    assert set(facts["files"]) == names
    for name, sha in facts["files"].items():
        assert hashlib.sha256((RELEASE / name).read_bytes()).hexdigest() == sha, name


def test_a_tampered_release_fails_verify_and_is_not_materialised(tmp_path, capsys):
    rel, root = fake_release(tmp_path, 'v9', pairs=True)
    assert main(["verify", "--release", str(rel), "--root", str(root)]) == 0
    df = pd.read_parquet(rel / "open.parquet")
    df.loc[0, "label"] = "normal"  # one label edited, the table otherwise intact and valid
    df.to_parquet(rel / "open.parquet", index=False)
    capsys.readouterr()
    assert main(["verify", "--release", str(rel), "--root", str(root)]) == 3
    out = capsys.readouterr().out
    assert "RELEASE TAMPERED" in out and "tampered (sha256 differs from release.json, or missing): open.parquet" in out
    with pytest.raises(CxrcurateError, match="TAMPERED"):
        materialise(rel, root)
    (rel / "extra.parquet").write_bytes(b"x")
    assert "extra.parquet" in verify_release(rel, root).unlisted


def test_a_link_out_of_the_root_is_refused_by_verify_and_materialise(tmp_path):
    rel, root = fake_release(tmp_path, 'v9', pairs=True)
    outside = tmp_path / "elsewhere.png"
    shutil.copy(root / "hannover/png/1.png", outside)  # the very bytes the release expects, but outside the root
    (root / "hannover/png/1.png").unlink()
    (root / "hannover/png/1.png").symlink_to(outside)
    report = verify_release(rel, root)
    assert not report.ok and report.outside_root == ["hannover/png/1.png"] and not report.changed
    with pytest.raises(CxrcurateError, match="leads out of"):
        materialise(rel, root)


def test_split_keeps_every_column_and_writes_only_where_told(tmp_path, capsys):
    rel, root = fake_release(tmp_path, 'v9', pairs=True)
    src = rel / "open.parquet"
    before = src.read_bytes()
    assert main(["split", str(src), "--test", "0.34", "--val", "0"]) == 2  # neither --out nor --in-place
    assert "--out" in capsys.readouterr().err and src.read_bytes() == before
    out = tmp_path / "split.parquet"
    assert main(["split", str(src), "--test", "0.34", "--val", "0", "--out", str(out)]) == 0
    assert src.read_bytes() == before
    df = read_manifest(out)
    for col in ("flag_inverted", "flag_small", "unit", "repository", "commit", "quality", "file_bytes", "mode"):
        assert col in df.columns, col
    assert df["flag_small"].all() and (df["repository"] == "o/r").all()
    assert df.attrs["cxrcurate"]["table"] == "release" and df.attrs["cxrcurate"]["release"] == "v9"
    assert (tmp_path / "split.pairs.parquet").is_file()  # the evidence travels with the rows
    assert main(["split", str(out), "--test", "0.34", "--val", "0", "--seed", "1", "--in-place"]) == 0
    assert read_manifest(out).attrs["cxrcurate"]["split"]["seed"] == 1


def test_dedup_keeps_columns_it_does_not_own(sample_build, tmp_path):
    df = read_manifest(sample_build.manifest)
    df["site_note"] = [f"n{i}" for i in range(len(df))]
    df["dup_group"] = "stale"
    mine = tmp_path / "mine.parquet"
    from cxrcurate.manifest import write_manifest

    write_manifest(df, mine, df.attrs["cxrcurate"])
    assert main(["dedup", str(mine), "--out", str(tmp_path / "d.parquet"), "-q", "--workers", "1", "--data-root",
                 str(sample_build.manifest.parent)]) == 0  # mine sits outside its data root: say where that is
    out = read_manifest(tmp_path / "d.parquet")
    assert out["site_note"].tolist() == df["site_note"].tolist() and (out["dup_group"] != "stale").all()
    assert read_manifest(mine)["dup_group"].eq("stale").all()  # the input is untouched


def test_a_release_table_without_fingerprints_is_refused_by_dedup_with_the_way_forward(tmp_path, capsys):
    rel, root = fake_release(tmp_path, 'v9', pairs=True)
    code = main(["dedup", str(rel / "open.parquet"), "--out", str(tmp_path / "d.parquet"), "--data-root", str(root)])
    err = capsys.readouterr().err
    assert code == 1 and "pixel_sha256 (3 row(s))" in err and "materialise" in err


def test_bring_your_own_csv_with_the_required_columns(tmp_path, capsys, caplog):
    rows = [{"image_id": f"mine:{i}.png", "source": "mine", "path": f"mine/{i}.png", "label": lab,
             "patient_id": f"p{i // 2}"} for i, lab in enumerate(["normal", "covid19"] * 10)]
    pd.DataFrame(rows).to_csv(tmp_path / "mine.csv", index=False)
    out = tmp_path / "mine.split.parquet"
    assert main(["split", str(tmp_path / "mine.csv"), "--test", "0.2", "--val", "0", "--out", str(out)]) == 0
    assert "provenance" in caplog.text
    df = read_manifest(out)
    assert df.groupby("patient_id")["split"].nunique().max() == 1 and df["view"].isna().all()
    pd.DataFrame(rows).drop(columns=["label"]).to_csv(tmp_path / "bad.csv", index=False)
    capsys.readouterr()
    assert main(["stats", str(tmp_path / "bad.csv")]) == 1
    assert "missing column(s) ['label']" in capsys.readouterr().err


def _subset(shared: Path, dest: Path, per_folder: int) -> None:
    """A data root with the five open collections' metadata and the first ``per_folder`` images of each image folder
    plus every image of the first 30 accepted pairs of the committed release (so copies and their scores are
    exercised); the rest of the metadata rows become `row_without_file` in the dropped table."""
    orig = pd.read_csv(shared / "ORIGINALS.csv", dtype=str)
    by_release = dict(zip(orig["path"].str.split("/").str[0] + "/" + orig["repo_path"], orig["path"], strict=True))
    pairs = pd.read_parquet(RELEASE / "open.pairs.parquet").head(30)
    wanted = {by_release[i.split(":", 1)[0] + "/" + i.split(":", 1)[1]] for i in pd.concat([pairs.image_a,
                                                                                             pairs.image_b])}
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared / "ORIGINALS.csv", dest / "ORIGINALS.csv")
    for source in ("covid-cxnet", "cohen", "hannover", "figure1", "actualmed"):
        for dirpath, _, files in os.walk(shared / source):
            images = sorted(f for f in files if f.lower().endswith((".png", ".jpg", ".jpeg")))
            for name in files:
                rel = Path(dirpath, name).relative_to(shared)
                if name not in images or name in images[:per_folder] or rel.as_posix() in wanted:
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(Path(dirpath, name), dest / rel)


@pytest.mark.slow
def test_release_is_byte_identical_with_one_and_two_threads(shared_data, tmp_path):
    data = tmp_path / "data"
    _subset(shared_data, data, 25)
    outs = []
    for n in (1, 2):
        out = tmp_path / f"rel{n}"
        env = {**os.environ, "OMP_NUM_THREADS": str(n), "OPENBLAS_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n),
               "OPENCV_FOR_THREADS_NUM": str(n), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        run = subprocess.run([sys.executable, "-m", "cxrcurate.cli", "release", "build", "--data", str(data), "--out",
                              str(out), "--workers", str(n), "--no-nih", "--quiet"], env=env, capture_output=True,
                             text=True, timeout=900)
        assert run.returncode == 0, run.stderr[-3000:]
        outs.append(out)
    pairs = pd.read_parquet(outs[0] / "open.pairs.parquet")
    assert len(pairs) >= 20 and (pairs["stage"] == "ransac").any()  # verification scores are among the floats
    for name in (*TABLES, "release.json", "README.md"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), f"{name} differs between 1 and 2 threads"


def test_verification_score_does_not_depend_on_the_order_pixels_are_summed_in():
    """The order a float reduction takes is what threads, memory alignment and chunking change. On these inputs the
    former float32 correlation changed its last bits under a permutation of the pixels in 7 of 20 draws (a score on
    a rounding boundary then wrote 0.9982 or 0.9983); the exact one never does."""
    from cxrcurate.dedup.features import _robust_correlation

    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(30_000, 102_400))
        x = rng.integers(0, 256, n).astype(np.float32)  # a 320-px thumbnail's grey levels
        y = np.clip(x * rng.uniform(0.5, 1.2) + rng.normal(0, 20, n), 0, 255)
        y = (np.round(y * 1024) / 1024).astype(np.float32)  # a linear warp lands on the 1/1024 grid
        perm = rng.permutation(n)
        assert _robust_correlation(x, y) == _robust_correlation(x[perm], y[perm])


def test_the_bench_takes_the_release_split_as_published():
    """``bench --split-policy manifest`` on the release table itself: the task's rows keep the release's sides, and
    units computed on the whole release with its pairs table never sit on two sides."""
    from cxrcurate.bench.data import prepare
    from cxrcurate.dedup import read_pairs

    df = read_manifest(RELEASE / "open.parquet")
    task = prepare(df, ("normal", "covid19"), "manifest", pairs=read_pairs(RELEASE / "open.parquet"))
    published = df.set_index("image_id")["split"]
    assert (task.frame["split"].to_numpy() == published.loc[task.frame["image_id"]].to_numpy()).all()
    assert task.frame.groupby("unit")["split"].nunique().max() == 1


def test_a_data_root_is_never_taken_from_the_file_being_checked(tmp_path, capsys):
    """A manifest recording ``data_root: "/"`` and a row ``etc/hostname`` must not reach /etc: the data root is the
    caller's ``--data-root`` or the manifest's own folder, and the recorded one is only quoted."""

    from cxrcurate.manifest import resolve_data_root, to_table

    row = {"image_id": "x:etc/hostname", "source": "x", "path": "etc/hostname", "label": "normal"}
    meta = {b"cxrcurate": json.dumps({"table": "manifest", "table_version": "1.1", "data_root": "/"}).encode()}
    hostile = tmp_path / "m.parquet"
    pq.write_table(to_table([row]).replace_schema_metadata(meta), hostile)
    df = read_manifest(hostile)
    with pytest.raises(CxrcurateError, match="not under .* the manifest's own folder.*data root /"):
        resolve_data_root(df, None)
    assert main(["show", str(hostile), "x:etc/hostname", "-o", str(tmp_path / "p.png")]) == 1
    assert "--data-root" in capsys.readouterr().err and not (tmp_path / "p.png").exists()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_text("beside the manifest")
    assert resolve_data_root(df, None) == tmp_path.resolve()  # its own folder, where its rows are
    assert resolve_data_root(df, tmp_path / "etc") == tmp_path / "etc"  # the caller's word wins
