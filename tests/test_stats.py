"""`cxrcurate stats` answers the first question first: kept images and units per label and split; then the
per-source detail; every column explained; one JSON object with --format json."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cxrcurate.cli import main
from cxrcurate.stats import LEGEND, split_summary

RELEASE = Path(__file__).resolve().parents[1] / "manifests" / "v1" / "open.parquet"


def test_the_first_table_counts_one_copy_per_picture_and_units_by_split(capsys):
    df = pd.read_parquet(RELEASE)
    assert main(["stats", str(RELEASE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("kept images and units per label and split")
    table = split_summary(df)
    covid = table.set_index("label").loc["covid19"]
    kept = df[df["keep"] & (df["label"] == "covid19")]
    assert covid["kept"] == len(kept) < covid["rows"] == (df["label"] == "covid19").sum()
    assert covid["test_units"] == kept.loc[kept["split"] == "test", "unit"].nunique()
    assert covid["train_kept"] + covid["val_kept"] + covid["test_kept"] == covid["kept"]
    for column in ("kept", "units", "patients_unknown", "pediatric_unknown"):
        assert f"  {column}: " in out  # a legend under the tables


def test_stats_before_dedup_and_split_counts_rows_and_linked_units(sample_build, capsys):
    assert main(["stats", str(sample_build.manifest), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)  # one JSON document, not several
    assert set(doc) >= {"summary", "by_source", "legend"} and doc["legend"] == LEGEND
    total = next(r for r in doc["summary"] if r["label"] == "(all)")
    assert total["all_kept"] == total["rows"] == 30
    assert total["all_units"] <= 30  # patients and identical files link rows into units


def test_stats_reads_the_metadata_only_release_table(capsys):
    nih = RELEASE.parent / "nih-cxr14.parquet"  # no dup_group column, no unit column: units by patient
    assert main(["stats", str(nih), "--format", "json"]) == 0
    total = next(r for r in json.loads(capsys.readouterr().out)["summary"] if r["label"] == "(all)")
    assert total["kept"] == total["rows"] == 112_120
    assert total["units"] == pd.read_parquet(nih, columns=["patient_id"])["patient_id"].nunique()
