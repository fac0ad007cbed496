"""The release's Croissant description (croissant.json): written by `release build` from the release's own files,
valid for mlcroissant (the reference implementation), loading the same records pandas reads, linked from the card."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
from pathlib import Path

import mlcroissant as mlc
import pandas as pd
import pytest

from cxrcurate.release.croissant import croissant, write_croissant

RELEASE = Path(__file__).resolve().parents[1] / "manifests" / "v1"


def test_the_committed_croissant_is_computed_from_the_committed_files():
    committed = json.loads((RELEASE / "croissant.json").read_text())
    assert committed == croissant(RELEASE)
    files = {f["name"]: f for f in committed["distribution"]}
    assert set(files) == {"open.parquet", "nih-cxr14.parquet", "open.pairs.parquet", "open.conflicts.parquet",
                          "open.dropped.parquet"}
    import hashlib

    for name, f in files.items():
        assert f["sha256"] == hashlib.sha256((RELEASE / name).read_bytes()).hexdigest()
    assert "[`croissant.json`](croissant.json)" in (RELEASE / "README.md").read_text()


def test_mlcroissant_validates_it_and_reads_the_records(tmp_path, caplog):
    folder = tmp_path / "v1"
    shutil.copytree(RELEASE, folder)
    path = write_croissant(folder)
    assert path.read_bytes() == (RELEASE / "croissant.json").read_bytes()  # deterministic
    with caplog.at_level(logging.WARNING):
        ds = mlc.Dataset(jsonld=str(path))  # raises ValidationError on any error
    warnings = [r.getMessage() for r in caplog.records if "warning" in r.getMessage().lower()]
    assert all("datePublished" in w for w in warnings if "[Metadata" in w), warnings
    assert not any("@context" in w and "not standard" in w for w in warnings), warnings
    df = pd.read_parquet(RELEASE / "open.parquet")
    records = list(itertools.islice(ds.records("open"), 5))
    assert [r["open/image_id"].decode() for r in records] == df["image_id"].head(5).tolist()
    assert [r["open/keep"] for r in records] == df["keep"].head(5).tolist()
    fields = {f["name"]: f for f in croissant(RELEASE)["recordSet"][0]["field"]}
    assert set(fields) == set(df.columns)
    assert fields["keep"]["dataType"] == "sc:Boolean" and fields["phash"]["dataType"] == "sc:Integer"
    assert "duplicate group" in fields["keep"]["description"] or "dup_group" in fields["keep"]["description"]


def test_a_broken_description_is_refused_by_mlcroissant(tmp_path):
    doc = croissant(RELEASE)
    doc["recordSet"][0]["field"][0]["source"]["fileObject"]["@id"] = "open-v0.parquet"  # a file it does not list
    path = tmp_path / "croissant.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(mlc.ValidationError, match="open-v0.parquet"):
        mlc.Dataset(jsonld=str(path))
