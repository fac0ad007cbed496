"""Splits made elsewhere: COVIDx label files of every published shape, CSV/TSV, a saved DatasetDict, a folder of
per-split Parquet files, matched to the shipped sample's manifest; `cxrcurate leakage --split-file` end to end.

The fixtures and the evidence for their shapes: tests/fixtures/splitfiles/README.md (lindawangg/COVID-Net history).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from cxrcurate.cli import main
from cxrcurate.errors import UsageError
from cxrcurate.splitcheck.files import parse_covidx_line, read_covidx, read_split_files
from cxrcurate.splitcheck.match import match_entries

FIX = Path(__file__).parent / "fixtures" / "splitfiles"


@pytest.fixture(scope="module")
def deduped(sample_build, tmp_path_factory) -> Path:
    """The shipped sample, built and deduplicated (its copies carry one dup group)."""
    name = tmp_path_factory.mktemp("split-sample").name  # a fresh name in the sample's data root, where users keep it
    out = Path(sample_build.manifest).with_name(f"{name}.parquet")
    assert main(["dedup", str(sample_build.manifest), "--out", str(out), "-q", "--workers", "1"]) == 0
    out.with_name(f"{name}.dropped.parquet").write_bytes(Path(sample_build.dropped).read_bytes())
    return out


@pytest.mark.parametrize("line, names, patient, label, source", [
    ("230 19abe1f3.jpg COVID-19", ["19abe1f3.jpg"], "230", "COVID-19", None),  # COVIDx 1-2
    ("236 483f2ad8.jpg positive cohen", ["483f2ad8.jpg"], "236", "positive", "cohen"),  # COVIDx 3-9
    ("COVID 1 COVID(1).png positive sirm", ["COVID(1).png", "1 COVID(1).png"], "COVID 1", "positive", "sirm"),
    ("COVID_2 COVID (2).png COVID-19 sirm", ["(2).png", "COVID (2).png"], "COVID_2 COVID", "COVID-19", "sirm"),
    ("x.png negative rsna ", ["x.png"], None, "negative", "rsna"),  # trailing blank
    ("15 ryct.2020200034.fig5-day0.jpeg 0 COVID-19", ["ryct.2020200034.fig5-day0.jpeg"], "15", "COVID-19", None),
])
def test_every_covidx_shape_parses(line, names, patient, label, source):
    got = parse_covidx_line(line)
    assert (got["names"], got["patient"], got["label"], got["source"]) == (names, patient, label, source)


def test_unreadable_lines_are_entries_with_a_problem_not_lost():
    e = read_covidx(FIX / "test_COVIDx8B.txt")
    assert len(e) == 4 and set(e["side"]) == {"test"}
    bad = e[e["problem"].notna()]
    assert len(bad) == 1 and "just-one-field" in bad["problem"].iat[0] and bad["origin"].iat[0].endswith(":4")
    assert read_covidx(FIX / "train_COVIDx8B.txt")["origin"].tolist()[-1].endswith(":7")  # the blank line skipped


def test_a_side_must_be_known():
    with pytest.raises(UsageError, match="say which side"):
        read_split_files([str(FIX / "split.tsv").replace("split.tsv", "README.md")], "covidx")


def test_covidx_pair_matches_and_explains_the_rest(deduped):
    from cxrcurate.manifest import read_manifest

    df = read_manifest(deduped)
    dropped = pd.read_parquet(deduped.with_name("manifest.dropped.parquet"))
    entries = read_split_files([str(FIX / "train_COVIDx8B.txt"), str(FIX / "test_COVIDx8B.txt"),
                                str(FIX / "split.csv")])
    m = match_entries(entries, df, dropped)
    got = dict(zip(m.entries["origin"], zip(m.entries["image_id"], m.entries["reason"], strict=True), strict=True))
    assert got["train_COVIDx8B.txt:2"][0] == "cohen:images/483f2ad8.jpg"  # by file name within its source
    assert got["split.csv#1"][0] == "cohen:images/483f2ad8.jpg"  # by the tail of the user's own path
    assert got["test_COVIDx8B.txt:3"][0] == "hannover:png/0578e08b.png"  # no tag: by file name anywhere
    assert got["train_COVIDx8B.txt:1"][1].startswith("source not in the manifest: 'sirm'")
    assert got["train_COVIDx8B.txt:3"][1].startswith("source not in the manifest: 'actmed'")
    assert got["train_COVIDx8B.txt:4"][1] == "not in the manifest"
    assert got["split.csv#3"][1].startswith("dropped by the build: row_without_file")
    assert got["test_COVIDx8B.txt:4"][1].startswith("unreadable line")
    per = m.per_source()
    assert per.loc["sirm", "source not in the manifest"] == 2 and per.loc["cohen", "matched"] == 4
    assert per.loc["nih-cxr14", "dropped: row_without_file"] == 1  # the dropped table's reason, per source
    assert m.side[df["image_id"] == "covid-cxnet:images/549.png"].iat[0] == "test"  # 'testing' read as test


def test_a_name_with_a_space_matches_the_file_the_manifest_knows():
    df = pd.DataFrame({"image_id": ["sirm:COVID/COVID (2).png", "sirm:COVID/COVID (3).png"], "source": ["sirm"] * 2,
                       "path": ["sirm/COVID/COVID (2).png", "sirm/COVID/COVID (3).png"]})
    m = match_entries(read_covidx(FIX / "train_COVIDx8B.txt"), df)
    hit = m.entries[m.entries["image_id"].notna()]
    assert hit["image_id"].tolist() == ["sirm:COVID/COVID (2).png"] and hit["matched_by"].tolist() == ["name"]


def test_original_sha256_survives_another_layout_and_a_resized_copy():
    df = pd.DataFrame({"image_id": ["cohen:images/a.jpg", "cohen:images/b.jpg"], "source": ["cohen"] * 2,
                       "path": ["cohen/images/a.jpg", "cohen/images/b.jpg"], "file_sha256": ["11" * 32, "22" * 32]})
    originals = pd.DataFrame({"path": ["cohen/images/b.jpg"], "original_sha256": ["ab" * 32]})
    entries = pd.DataFrame([{"side": "test", "name": "elsewhere/renamed.jpg", "names": ["elsewhere/renamed.jpg"],
                             "source": None, "patient": None, "label": None, "sha256": "ab" * 32, "origin": "x#1",
                             "problem": None}])
    assert match_entries(entries, df, originals=originals).entries["image_id"].tolist() == ["cohen:images/b.jpg"]
    assert match_entries(entries, df).entries["reason"].tolist() == ["not in the manifest"]


def test_datasetdict_and_parquet_folder_match_by_image_bytes(deduped, tmp_path):
    datasets = pytest.importorskip("datasets")
    from cxrcurate.manifest import read_info, read_manifest

    df = read_manifest(deduped)
    root = Path(read_info(deduped)["data_root"])
    rows = df[df["source"] == "hannover"].head(4)
    data = [(root / p).read_bytes() for p in rows["path"]]
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")})
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"image": [{"bytes": b, "path": f"img{i}.png"} for i, b in
                                                       enumerate(data[:3])], "label": ["x"] * 3}, features=feats),
        "test": datasets.Dataset.from_dict({"image": [{"bytes": data[3], "path": "img3.png"}], "label": ["x"]},
                                           features=feats)})
    dd.save_to_disk(str(tmp_path / "dd"))
    m = match_entries(read_split_files([str(tmp_path / "dd")]), df)
    assert m.entries["matched_by"].tolist() == ["sha256"] * 4
    sha = df.set_index("image_id")["file_sha256"]  # a byte-identical file in two sources may match either copy
    assert sha[m.entries["image_id"]].tolist() == rows["file_sha256"].tolist()
    (tmp_path / "pq" / "data").mkdir(parents=True)
    for side, part in (("train", data[:2]), ("test", data[2:])):
        pd.DataFrame({"file_name": ["renamed.png"] * len(part), "sha256": [hashlib.sha256(b).hexdigest() for b in
                                                                           part]}).to_parquet(
            tmp_path / "pq" / "data" / f"{side}-00000-of-00001.parquet")
    m = match_entries(read_split_files([str(tmp_path / "pq")], "hf"), df)
    assert m.side.value_counts().to_dict() == {"train": 2, "test": 2}


def test_cli_checks_a_published_pair_in_one_command(deduped, tmp_path, capsys):
    args = ["leakage", str(deduped), "--split-file", f"train={FIX / 'train_COVIDx.txt'}",
            "--split-file", str(FIX / "test_COVIDx.txt")]
    assert main(args) == 3  # the same radiograph on both sides under two patient ids
    out = capsys.readouterr().out
    assert "LEAKAGE FOUND" in out and "not in the manifest" in out
    assert "cohen:images/19abe1f3.jpg (cohen, patient cohen:230)  <->  test hannover:png/19abe1f3.png" in out
    assert main(args + ["--format", "json"]) == 3

    def no_nan(name: str):
        raise AssertionError(f"{name} in JSON output")
    doc = json.loads(capsys.readouterr().out, parse_constant=no_nan)
    cross = pd.DataFrame(doc["crossings"])
    pair = cross[(cross["image_a"] == "cohen:images/19abe1f3.jpg") & (cross["image_b"] == "hannover:png/19abe1f3.png")]
    assert pair[["link", "source_a", "source_b", "patient_a", "patient_b"]].values.tolist() == [
        ["dup_group", "cohen", "hannover", "cohen:230", "hannover:271ddf1a"]]
    assert doc["split_files"]["per_source"]["(no tag)"] == {"matched": 4, "not in the manifest": 1}
    assert [u["name"] for u in doc["split_files"]["unmatched_entries"]] == [
        "47c78742-4998-4878-aec4-37b11b1354ac.png"]
    assert main(args + ["--examples", "0"]) == 3
    assert "<->" not in capsys.readouterr().out


def test_cli_a_file_on_two_sides_is_a_leak(deduped, tmp_path, capsys):
    twice = tmp_path / "test_list.txt"
    twice.write_text("236 483f2ad8.jpg positive cohen\n")
    assert main(["leakage", str(deduped), "--split-file", f"train={FIX / 'train_COVIDx8B.txt'}",
                 "--split-file", f"test={twice}", "--format", "json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["split_files"]["named_on_two_sides_list"][0]["image_id"] == "cohen:images/483f2ad8.jpg"
    assert main(["leakage", str(deduped), "--split-file", f"train={FIX / 'train_COVIDx8B.txt'}",
                 "--split-file", str(FIX / "test_COVIDx8B.txt"), "--format", "json"]) == 3
    cross = json.loads(capsys.readouterr().out)["crossings"]
    # a chain through a row no entry names: train cohen 483f2ad8.jpg = hannover 483f2ad8.png (no side), whose
    # patient hannover:48bbd9e5 is also the patient of test 0578e08b.png
    assert {"link": "unit", "side_a": "train", "image_a": "cohen:images/483f2ad8.jpg", "source_a": "cohen",
            "patient_a": "cohen:236", "side_b": "test", "image_b": "hannover:png/0578e08b.png",
            "source_b": "hannover", "patient_b": "hannover:48bbd9e5"} in cross


def test_cli_nothing_matches_says_why(deduped, tmp_path, capsys):
    only = tmp_path / "train_only.txt"
    only.write_text("COVID 1 COVID(1).png positive sirm\n")
    assert main(["leakage", str(deduped), "--split-file", str(only)]) == 2
    assert "source not in the manifest: 'sirm'" in capsys.readouterr().err


def test_cli_one_matched_side_is_not_checked_and_the_montage_draws_pairs(deduped, tmp_path, capsys):
    from PIL import Image

    test_side = tmp_path / "test_rsna.txt"
    test_side.write_text("35cda03a-0898-4f8b-92d3-6f263aed23ff 35cda03a-0898-4f8b-92d3-6f263aed23ff.png negative "
                         "rsna\n")
    assert main(["leakage", str(deduped), "--split-file", str(FIX / "train_COVIDx.txt"), "--split-file",
                 str(test_side)]) == 1
    out = capsys.readouterr().out
    assert "NOT CHECKED" in out and "OK" not in out and "no entry of side(s) test matches" in out
    png = tmp_path / "pairs.png"
    assert main(["leakage", str(deduped), "--split-file", f"train={FIX / 'train_COVIDx.txt'}", "--split-file",
                 str(FIX / "test_COVIDx.txt"), "--montage", str(png), "--examples", "2"]) == 3  # a leak: check failed
    with Image.open(png) as im:
        assert im.format == "PNG" and im.height == 1 * (200 + 44)  # the one crossing pair, 200 px high + captions
