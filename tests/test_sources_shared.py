"""Loaders and the full build on the real collections in ../shared/data (skipped when it is absent)."""

import csv
import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from cxrcurate.build import build_manifest
from cxrcurate.manifest import read_info, read_manifest
from cxrcurate.sources import Record, get_source

SOURCES = ["cohen", "covid-cxnet", "hannover", "figure1", "actualmed", "nih-cxr14"]
META = {"cohen": ["metadata.csv"], "covid-cxnet": ["metadata.csv"], "hannover": ["data.csv"],
        "figure1": ["metadata.csv"], "actualmed": ["metadata.csv"], "nih-cxr14": ["Data_Entry_2017_v2020.csv.gz"]}
# The June-2020 Cohen findings, read by a person, not by the code under test.
COHEN_EXPECTED = {
    "COVID-19": "covid19", "COVID-19, ARDS": "covid19", "No Finding": "normal", "Pneumocystis": "pneumonia",
    "Streptococcus": "pneumonia", "SARS": "pneumonia", "Pneumonia": "pneumonia", "Klebsiella": "pneumonia",
    "Mycoplasma Bacterial Pneumonia": "pneumonia", "Legionella": "pneumonia", "Varicella": "pneumonia",
    "E.Coli": "pneumonia", "Bacterial": "pneumonia", "Chlamydophila": "pneumonia", "Influenza": "pneumonia",
    "Lipoid": "other", "ARDS": "other",
}


@pytest.fixture(scope="module")
def full_build(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    return build_manifest([(s, shared_data / s) for s in SOURCES], out, workers=2, progress=False)


def _rows(path: Path) -> int:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8-sig", errors="replace") as fh:
        return sum(1 for _ in csv.DictReader(fh))


def test_every_file_and_row_is_accounted_for(full_build, shared_data):
    m = read_manifest(full_build.manifest)
    d = pd.read_parquet(full_build.dropped)
    masks = [p for paths in m["mask_paths"].dropna() for p in paths]
    used = list(m["path"]) + masks + list(d["path"].dropna())
    assert len(used) == len(set(used)), "a file is counted twice"
    on_disk = set()
    for s in SOURCES:
        for p in (shared_data / s).rglob("*"):
            rel = p.relative_to(shared_data).as_posix()
            if p.is_file() and p.name not in META[s] + ["SCHEMA.md", "BBox_List_2017.csv.gz"]:
                on_disk.add(rel)
    assert on_disk == set(used)
    for s in SOURCES:
        for csv_name in META[s]:
            n = _rows(shared_data / s / csv_name)
            ids = set(m.loc[m.source == s, "source_record"]) | set(d.loc[d.source == s, "source_record"].dropna())
            assert {f"{csv_name}#{i}" for i in range(n)} <= ids, s
            in_both = set(m.loc[m.source == s, "source_record"]) & set(d.loc[d.source == s, "source_record"])
            assert not in_both, f"{s}: rows both kept and dropped: {sorted(in_both)[:3]}"
    # the arithmetic of the summary: 1,822 decodable X-ray records, 43 of them lateral
    assert full_build.n_images == len(m) == 1779
    assert full_build.dropped_by_reason["view_excluded"] == 43


def test_cohen_labels_agree_with_the_csv(full_build, shared_data):
    m = read_manifest(full_build.manifest).set_index("image_id")
    seen = set()
    checked = 0
    with open(shared_data / "cohen/metadata.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            name = row["filename"]
            if row["modality"] != "X-ray" or row["folder"] != "images" or name in seen:
                continue
            seen.add(name)
            image_id = f"cohen:images/{name}"
            if image_id not in m.index:  # missing file or lateral: in the dropped table (checked above)
                continue
            assert m.loc[image_id, "label"] == COHEN_EXPECTED[row["finding"]], name
            assert m.loc[image_id, "patient_id"] == f"cohen:{row['patientid']}"
            assert m.loc[image_id, "finding_raw"] == row["finding"]
            checked += 1
    assert checked == 527
    assert "cohen:331a" in set(m["patient_id"])  # ids are strings
    shared = m.loc["cohen:images/000001-24.jpg"]  # one picture listed under patients 285 and 339
    assert json.loads(shared["extra"])["alias_patient_ids"] == ["cohen:339"]


def test_nih_reports_the_real_pediatric_count(full_build):
    notes = read_info(full_build.manifest)["sources"]["nih-cxr14"]["notes"]
    assert notes["csv_rows"] == 112120
    assert notes["csv_pediatric_images"] == 5402
    assert notes["impossible_ages"] == 0


def test_covid_cxnet_children_and_metadata(full_build):
    m = read_manifest(full_build.manifest)
    cx = m[m.source == "covid-cxnet"].set_index("image_id")
    assert (cx["label"] == "covid19").all() and len(cx) == 898
    assert cx.loc["covid-cxnet:images/818-.png", "pediatric_reason"] == "age<18"  # a child without the p mark
    assert cx.loc["covid-cxnet:images/757p.jpg", "age_years"] == pytest.approx(0.03)
    assert pd.notna(cx.loc["covid-cxnet:images/374.PNG", "patient_id"])  # row says 374.png
    assert pd.notna(cx.loc["covid-cxnet:images/403.jpeg", "patient_id"])  # row says 403.jpg
    assert cx["patient_id"].isna().sum() == 447  # no metadata row: files 1-259 and 188 others (398, 510-673, ...)


def test_hannover_rule_and_agchung(shared_data):
    items = list(get_source("hannover")(shared_data / "hannover").parse())
    recs = [r for r in items if isinstance(r, Record)]
    assert len(recs) == 243
    before = [r for r in recs if r.extra.get("days_after_admission", 0) < 0]
    assert before and all(r.label == "unknown" for r in before)
    assert all(r.label == "covid19" for r in recs if r.extra.get("days_after_admission", -1) >= 0)
    fig = [r for r in get_source("figure1")(shared_data / "figure1").parse() if isinstance(r, Record)]
    by_rel = {r.rel: r for r in fig}
    assert by_rel["images/COVID-00003a.jpg"].patient_id == by_rel["images/COVID-00003b.jpg"].patient_id
    assert by_rel["images/COVID-00002.jpg"].age_years == 50.0  # "50+"
    assert sum(r.label == "unknown" for r in fig) == 15
