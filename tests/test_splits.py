"""Patient-level splits and the leakage check: properties over random manifests, leaky splits caught, sample."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.model_selection import train_test_split

from cxrcurate.dedup import hashindex
from cxrcurate.errors import CxrcurateError
from cxrcurate.labels import LABELS
from cxrcurate.manifest import read_manifest, write_manifest
from cxrcurate.splits import SIDES, leakage_report, make_split, split_groups


def _h(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def _phash(*parts: object) -> int:
    return int(_h("phash", *parts)[:16], 16)


def _row(image_id: str, patient_id: str | None, label: str = "normal", source: str | None = None, **kw) -> dict:
    source = source or image_id.split(":")[0]
    row = {"image_id": image_id, "source": source, "patient_id": patient_id, "path": image_id.replace(":", "/"),
           "label": label, "view": "PA", "modality": "xray", "width": 256, "height": 256, "bit_depth": 8,
           "file_sha256": _h("file", image_id), "pixel_sha256": _h("pixel", image_id), "phash": _phash(image_id),
           "extra": None, "dup_group": None, "keep": None, "split": None}
    row.update(kw)
    return row


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["phash"] = df["phash"].astype(np.uint64)
    return df


def _synth(n_patients: int, seed: int, sources: tuple[str, ...] = ("cohen", "hannover", "nih-cxr14"),
           p_label: tuple[float, ...] = (0.45, 0.25, 0.18, 0.08, 0.04)) -> pd.DataFrame:
    """A realistic manifest: patients with 1-5 images, one label each mostly, 10% unknown patients."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        source = sources[int(rng.integers(len(sources)))]
        label = LABELS[int(rng.choice(len(LABELS), p=p_label))]
        pid = None if rng.random() < 0.1 else f"{source}:{p}"
        for j in range(int(rng.integers(1, 6)) if pid else 1):
            row_label = label if rng.random() < 0.9 else LABELS[int(rng.integers(len(LABELS)))]
            rows.append(_row(f"{source}:images/{p}_{j}.png", pid, row_label))
    return _frame(rows)


def _oracle_units(df: pd.DataFrame) -> set[frozenset[str]]:
    """Connected components by brute force: rows i, j linked when any identity key is shared."""
    keys = []
    for r in df.to_dict("records"):
        aliases = json.loads(r["extra"]).get("alias_patient_ids", []) if isinstance(r["extra"], str) else []
        k = {("p", a) for a in aliases} | ({("p", r["patient_id"])} if isinstance(r["patient_id"], str) else set())
        k |= {(c, r[c]) for c in ("dup_group", "pixel_sha256", "file_sha256") if isinstance(r[c], str)}
        keys.append(k)
    ids = df["image_id"].tolist()
    seen: set[int] = set()
    units = set()
    for start in range(len(df)):
        if start in seen:
            continue
        stack, comp = [start], set()
        while stack:
            i = stack.pop()
            if i in comp:
                continue
            comp.add(i)
            stack += [j for j in range(len(df)) if j not in comp and keys[i] & keys[j]]
        seen |= comp
        units.add(frozenset(ids[i] for i in comp))
    return units


@st.composite
def manifests(draw) -> pd.DataFrame:
    rows = []
    for p in range(draw(st.integers(1, 30))):
        known = draw(st.sampled_from([True, True, True, False]))
        label = draw(st.sampled_from(LABELS))
        for j in range(draw(st.integers(1, 4))):
            row_label = draw(st.sampled_from([label, label, *LABELS]))
            rows.append(_row(f"cohen:images/{p}_{j}.png", f"cohen:{p}" if known else None, row_label))
    n = len(rows)
    links = draw(st.lists(st.tuples(st.sampled_from(["dup", "pixel", "file", "alias", "alias"]), st.integers(0, n - 1),
                                    st.integers(0, n - 1)), max_size=max(1, n // 2)))
    dup_parent = list(range(n))

    def find(i: int) -> int:
        while dup_parent[i] != i:
            i = dup_parent[i]
        return i

    for kind, a, b in links:
        if kind == "dup":  # a near-duplicate that dedup linked
            dup_parent[find(b)] = find(a)
        elif kind in ("pixel", "file"):  # an exact copy, linked by hash only (dedup has not run)
            rows[b][f"{kind}_sha256"], rows[b]["phash"] = rows[a][f"{kind}_sha256"], rows[a]["phash"]
        elif rows[a]["patient_id"]:  # row b's patient is also known under row a's id
            rows[b]["extra"] = json.dumps({"alias_patient_ids": [rows[a]["patient_id"]]})
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(find(i), []).append(i)
    for root, rows_in in members.items():
        if len(rows_in) > 1:
            for i in rows_in:
                rows[i]["dup_group"], rows[i]["keep"] = f"dup:{root}", i == min(rows_in)
                rows[i]["phash"] = rows[root]["phash"]
    return _frame(rows)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests(), st.integers(0, 2**32 - 1))
def test_property_units_never_cross_sides(df, seed):
    oracle = _oracle_units(df)
    units = split_groups(df)
    assert {frozenset(ids) for _, ids in df["image_id"].groupby(units)} == oracle
    try:
        out = make_split(df, test=0.2, val=0.1, seed=seed)
    except CxrcurateError as exc:
        assert "independent units" in str(exc) and len(oracle) < 20, (len(oracle), exc)
        return
    assert out["split"].isin(SIDES).all() and set(out["split"]) == set(SIDES)
    assert (out.groupby(units)["split"].nunique() == 1).all()
    for unit in oracle:  # the brute-force units too, not just split_groups' own
        assert out.loc[out["image_id"].isin(unit), "split"].nunique() == 1
    report = leakage_report(out)
    assert report.ok, report.to_text()


def test_split_groups_links_patients_dups_and_hashes_before_dedup():
    df = _frame([_row("cohen:a", "cohen:1"), _row("cohen:b", "cohen:1"),
                 _row("hannover:c", "hannover:9", pixel_sha256=_h("pixel", "cohen:b")),  # copy of b
                 _row("hannover:d", None, dup_group="g1"), _row("nih-cxr14:e", "nih-cxr14:5", dup_group="g1"),
                 _row("cohen:f", None), _row("cohen:g", None)])
    units = split_groups(df)
    assert units.nunique() == 4
    assert units[0] == units[1] == units[2] == "unit:cohen:a"
    assert units[3] == units[4] and units[5] != units[6]
    assert split_groups(df.iloc[::-1]).sort_index().equals(units)  # ids do not depend on row order


def test_leaky_per_image_split_is_caught():
    df = _synth(400, seed=1)
    tr, te = train_test_split(np.arange(len(df)), test_size=0.2, random_state=0)
    df.loc[te, "split"], df.loc[tr, "split"] = "test", "train"
    report = leakage_report(df)
    expected = int((df.dropna(subset=["patient_id"]).groupby("patient_id")["split"].nunique() > 1).sum())
    assert not report.ok and expected > 20
    assert report.findings["patient"].total == expected == report.findings["patient"].by_sides["train/test"]
    assert report.findings["unit"].total == expected
    assert len(report.findings["patient"].examples) == 10
    assert report.findings["pixel_sha256"].total == report.findings["near_duplicate"].total == 0
    text = report.to_text()
    assert "LEAKAGE FOUND" in text and f"train/test {expected}" in text
    assert json.loads(json.dumps(report.to_dict()))["ok"] is False


def test_identical_pixels_files_and_near_duplicates_across_sides():
    base = [_row("cohen:a", None, split="train"), _row("hannover:b", None, split="test",
                                                       pixel_sha256=_h("pixel", "cohen:a"))]
    base += [_row("cohen:c", None, split="train"), _row("nih-cxr14:d", None, split="val",
                                                        file_sha256=_h("file", "cohen:c"))]
    base += [_row(f"nih-cxr14:{i}", f"nih-cxr14:{i}", split=s) for i, s in enumerate(["train", "val", "test"] * 3)]
    df = _frame(base)
    report = leakage_report(df)
    assert report.findings["pixel_sha256"].by_sides == {"train/val": 0, "train/test": 1, "val/test": 0}
    assert report.findings["file_sha256"].by_sides == {"train/val": 1, "train/test": 0, "val/test": 0}
    assert report.findings["patient"].total == 0 and report.findings["unit"].total == 2
    # a pairs table: only accepted pairs count, unknown images are noted
    df = df.drop(columns=["pixel_sha256", "file_sha256"])
    pairs = pd.DataFrame({"image_a": ["nih-cxr14:0", "nih-cxr14:1", "nih-cxr14:3", "cohen:zz"],
                          "image_b": ["nih-cxr14:1", "nih-cxr14:2", "nih-cxr14:6", "nih-cxr14:0"],
                          "kind": "near", "hamming": [3, 5, 2, 1], "score": 0.9,
                          "accepted": [True, False, True, True]})
    report = leakage_report(df, pairs=pairs)
    near = report.findings["near_duplicate"]
    assert near.total == 1 and near.by_sides["train/val"] == 1 and near.examples[0]["hamming"] == 3
    assert any("not in this manifest" in n for n in report.notes)
    assert json.loads(json.dumps(report.to_dict()))["findings"]["near_duplicate"]["examples"][0]["kind"] == "near"
    assert any("pixel_sha256 not checked" in n for n in report.notes)


def test_phash_radius_without_pairs_table(monkeypatch):
    df = _frame([_row("cohen:a", None, split="train", phash=0b1011 << 40),
                 _row("cohen:b", None, split="test", phash=(0b1011 << 40) ^ 0b111),  # 3 bits away
                 _row("cohen:c", None, split="val", phash=((0b1011 << 40) ^ (0b11111 << 8)) | (1 << 63))])  # a 6, b 9
    four = leakage_report(df).findings["near_duplicate"]
    assert four.total == 1 and four.examples[0] == {"image_a": "cohen:a", "side_a": "train", "image_b": "cohen:b",
                                                    "side_b": "test", "hamming": 3}
    assert leakage_report(df, radius=2).ok
    values = np.random.default_rng(0).integers(0, 2**63, size=(50, 2), dtype=np.int64).astype(np.uint64)
    expected = [[bin(int(v)).count("1") for v in row] for row in values]
    assert hashindex._popcount(values).tolist() == expected
    monkeypatch.setattr(hashindex, "_HAS_BITWISE_COUNT", False)  # numpy < 2: the byte lookup table
    assert hashindex._popcount(values).tolist() == expected
    assert leakage_report(df, radius=6).findings["near_duplicate"].by_sides == {"train/val": 1, "train/test": 1,
                                                                                "val/test": 0}


def test_chain_through_an_unsplit_row_is_a_unit_leak():
    df = _frame([_row("cohen:a", "cohen:1", split="train"), _row("cohen:b", "cohen:1", split=None),
                 _row("hannover:c", None, split="test", pixel_sha256=_h("pixel", "cohen:b"))])
    report = leakage_report(df)
    assert report.findings["patient"].total == report.findings["pixel_sha256"].total == 0
    assert report.findings["unit"].by_sides["train/test"] == 1 and not report.ok


def test_stratified_split_follows_label_proportions(tmp_path):
    df = read_manifest(write_manifest(_synth(650, seed=3), tmp_path / "m.parquet"))  # real dtypes (pandas str)
    assert 1800 <= len(df) <= 2200
    out = make_split(df, test=0.2, val=0.1, seed=7)
    info = out.attrs["cxrcurate"]["split"]
    assert info["method"]["test"].startswith("StratifiedGroupKFold") and info["method"]["val"].startswith("Stratified")
    frac = out["split"].value_counts(normalize=True)
    assert abs(frac["test"] - 0.2) < 0.02 and abs(frac["val"] - 0.1) < 0.02
    overall = df["label"].value_counts(normalize=True)
    for side in ("test", "val", "train"):
        got = out.loc[out["split"] == side, "label"].value_counts(normalize=True).reindex(overall.index, fill_value=0)
        assert (got - overall).abs().max() < 0.025, (side, got, overall)
    assert leakage_report(out).ok
    written = read_manifest(write_manifest(out, tmp_path / "s.parquet", info=out.attrs["cxrcurate"]))
    assert written["split"].tolist() == out["split"].tolist()


def test_unstratified_fallback_keeps_units_whole():
    df = _synth(120, seed=4)
    out = make_split(df, test=0.25, val=0.0, seed=1, stratify=None)
    assert out.attrs["cxrcurate"]["split"]["method"] == {"test": "GroupShuffleSplit"}
    assert set(out["split"]) == {"train", "test"} and leakage_report(out).ok


def test_deterministic_by_seed_and_row_order():
    df = _synth(300, seed=5)
    a, b, c = make_split(df, seed=11), make_split(df, seed=11), make_split(df, seed=12)
    assert a["split"].equals(b["split"])
    assert (a["split"] != c["split"]).sum() > 50
    shuffled = make_split(df.sample(frac=1.0, random_state=0), seed=11)
    assert shuffled["split"].reindex(df.index).equals(a["split"])
    np.random.seed(0)  # the global generator plays no part
    assert make_split(df, seed=11)["split"].equals(a["split"])
    assert df["split"].isna().all()  # the input is not modified


def test_copies_take_the_side_of_their_unit():
    df = _synth(200, seed=6)
    rows = df.to_dict("records")
    for i in range(0, 60, 3):  # rows i+1 (another patient) is a near copy of row i: keep=False
        rows[i]["dup_group"] = rows[i + 1]["dup_group"] = f"g{i}"
        rows[i]["keep"], rows[i + 1]["keep"] = True, False
    df = _frame(rows)
    out = make_split(df, seed=2)
    for i in range(0, 60, 3):
        assert out.loc[i, "split"] == out.loc[i + 1, "split"]
    assert leakage_report(out).ok


def test_copies_do_not_weigh_in_the_draw():
    rows = [_row(f"nih-cxr14:{i}", f"nih-cxr14:{i}", "covid19") for i in range(300)]  # 150 copies of one picture:
    rows += [_row(f"cohen:copy{i}", None, "covid19", dup_group="g", keep=i == 0) for i in range(150)]  # 1 unit
    df = _frame(rows)
    for seed in range(3):
        out = make_split(df, test=0.2, val=0.0, seed=seed)
        kept = out[out["keep"].astype("boolean").fillna(True).to_numpy(bool)]
        assert abs((kept["split"] == "test").mean() - 0.2) < 0.03
        assert out.loc[df["dup_group"] == "g", "split"].nunique() == 1


def test_holdout_source_with_units_pulled_into_test():
    df = _synth(240, seed=8)
    cohen = df.index[df["source"] == "cohen"][:3]
    others = df[(df["source"] == "hannover") & df["patient_id"].notna()].drop_duplicates("patient_id").index[:3]
    for c, o in zip(cohen, others, strict=True):  # three hannover images are copies of cohen images
        df.loc[o, "pixel_sha256"] = df.loc[c, "pixel_sha256"]
    linked_patients = set(df.loc[others, "patient_id"])
    expected = int(df["patient_id"].isin(linked_patients).sum())
    assert expected > 3  # their patients have further images, which must follow them
    out = make_split(df, val=0.1, seed=3, holdout_source="cohen")
    info = out.attrs["cxrcurate"]["split"]
    assert (out.loc[out["source"] == "cohen", "split"] == "test").all()
    assert info["pulled_into_test"] == expected and info["pulled_into_test_by_source"] == {"hannover": expected}
    assert (out["split"] == "test").sum() == (df["source"] == "cohen").sum() + expected
    json.dumps(info)  # goes into the Parquet metadata
    assert {"train", "val"} <= set(out["split"]) and leakage_report(out).ok


def test_alias_patient_ids_are_honoured():
    rows = [_row(f"cohen:images/339_{j}.png", "cohen:339") for j in range(3)]
    rows.append(_row("cohen:images/339a.png", "cohen:339a", extra=json.dumps({"alias_patient_ids": ["cohen:339"]})))
    rows.append(_row("cohen:images/bad.png", "cohen:1", extra='{"alias_patient_ids": ['))  # unreadable: ignored
    rows += [_row(f"nih-cxr14:{i}", f"nih-cxr14:{i}") for i in range(40)]
    df = _frame(rows)
    units = split_groups(df)
    assert units[:4].nunique() == 1 and units[4] != units[0]
    for seed in range(8):
        assert make_split(df, seed=seed).loc[:3, "split"].nunique() == 1
    df["split"] = ["train"] * 3 + ["test"] + ["val"] * (len(df) - 4)
    finding = leakage_report(df).findings["patient"]
    assert finding.by_sides["train/test"] == 1
    assert finding.examples[0]["patient"] == "cohen:339=cohen:339a"
    assert finding.examples[0]["sides"] == {"train": 3, "test": 1}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"test": 0.0}, "test=0.0 must be in (0, 1)"),
    ({"test": 1.2}, "test=1.2 must be in (0, 1)"),
    ({"val": -0.1}, "val=-0.1 must be in [0, 1)"),
    ({"test": 0.6, "val": 0.4}, "leaves nothing for train"),
    ({"seed": -1}, "seed=-1 must be an int"),
    ({"stratify": "finding"}, "cannot stratify by 'finding'"),
    ({"holdout_source": "kermany"}, "holdout source 'kermany' has no rows"),
    ({"test": 0.05}, "needs at least 20 independent units"),
])
def test_make_split_errors(kwargs, message):
    df = _synth(12, seed=9)
    with pytest.raises(CxrcurateError) as exc:
        make_split(df, **kwargs)
    assert message in str(exc.value)


def test_impossible_requests():
    tiny = _frame([_row(f"cohen:{i}", "cohen:1") for i in range(30)] + [_row("cohen:x", "cohen:2")])
    with pytest.raises(CxrcurateError, match="only 2 are left"):
        make_split(tiny)
    with pytest.raises(CxrcurateError, match="no rows to split"):
        make_split(tiny.iloc[:0])
    one_source = _synth(20, seed=1, sources=("cohen",))
    with pytest.raises(CxrcurateError, match="nothing is left for train"):
        make_split(one_source, holdout_source="cohen")
    with pytest.raises(CxrcurateError, match="no column 'fold'"):
        leakage_report(tiny, split_column="fold")
    with pytest.raises(CxrcurateError, match="no row has a side"):
        leakage_report(tiny)
    tiny["split"] = "train"
    with pytest.raises(CxrcurateError, match=r"lacks column\(s\) \['accepted'\]"):
        leakage_report(tiny, pairs=pd.DataFrame({"image_a": [], "image_b": []}))


def test_sample_manifest(sample_build, tmp_path):
    df = read_manifest(sample_build.manifest)
    out = make_split(df, test=0.2, val=0.1, seed=0)
    report = leakage_report(out)
    assert report.ok, report.to_text()
    for _, same in df.groupby("pixel_sha256"):  # the sample holds the same pictures in two sources
        assert out.loc[same.index, "split"].nunique() == 1
    held = make_split(df, seed=0, holdout_source="cohen")
    assert (held.loc[held["source"] == "cohen", "split"] == "test").all() and leakage_report(held).ok
    path = write_manifest(out, tmp_path / "split.parquet", info=out.attrs["cxrcurate"])
    assert read_manifest(path).attrs["cxrcurate"]["split"]["seed"] == 0
