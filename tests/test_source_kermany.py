"""The Kermany loader on a fake tree in the real (Kaggle) layout, with its nested duplicate and ``__MACOSX``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from cxrcurate.errors import SourceError, UnknownSourceError
from cxrcurate.sources import get_source
from cxrcurate.sources.base import DUPLICATE_ROW, FILE_WITHOUT_ROW, HIDDEN_FILE, NOT_IMAGE, Dropped, Record
from cxrcurate.sources.kermany import Kermany, patient_from_name

IMAGES = [
    "train/NORMAL/IM-0115-0001.jpeg",
    "train/NORMAL/NORMAL2-IM-1427-0001.jpeg",
    "train/NORMAL/IM-1427-0001.jpeg",
    "train/PNEUMONIA/person1_bacteria_1.jpeg",
    "train/PNEUMONIA/person1_virus_6.jpeg",
    "val/PNEUMONIA/person1000_bacteria_2931.jpeg",
    "test/NORMAL/IM-0001-0001.jpeg",
    "test/PNEUMONIA/scan 7.jpeg",  # matches no name pattern: still a record
]


def _jpeg(path: Path, shade: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), shade).save(path, format="JPEG")


def _touch(path: Path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _kaggle_tree(root: Path) -> Path:
    """``root/chest_xray/`` as Kaggle ships it: splits, a nested duplicate, ``__MACOSX`` and some clutter."""
    top = root / "chest_xray"
    for i, rel in enumerate(IMAGES):
        _jpeg(top / rel, shade=10 * i)
    _jpeg(top / "chest_xray/train/NORMAL/IM-0115-0001.jpeg")  # twin of the main tree's file
    _jpeg(top / "chest_xray/test/PNEUMONIA/person3_virus_15.jpeg")  # only in the nested copy
    _touch(top / "__MACOSX/chest_xray/train/NORMAL/._IM-0115-0001.jpeg")
    _touch(top / "__MACOSX/._chest_xray")
    _touch(top / "train/NORMAL/.DS_Store")  # hidden, not named like an image: skipped
    _touch(top / "train/NORMAL/._IM-0115-0001.jpeg")  # a macOS fork outside __MACOSX: listed as hidden_file
    _touch(top / "README.txt")
    _jpeg(top / "train/stray.jpeg")  # not in a class folder: no label
    return top


def _files(root: Path) -> set[str]:
    """Every file the loader must account for: all but hidden ones outside ``__MACOSX`` not named like images."""
    out = set()
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and ("__MACOSX" in rel.parts or not p.name.startswith(".") or p.suffix == ".jpeg"):
            out.add(rel.as_posix())
    return out


def _parse(root: Path) -> tuple[list[Record], list[Dropped]]:
    items = list(Kermany(root).parse())
    assert all(isinstance(i, Record | Dropped) for i in items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Dropped)]


def test_records_labels_patients_and_pediatric_flag(tmp_path: Path) -> None:
    _kaggle_tree(tmp_path)
    records, _ = _parse(tmp_path)
    by_rel = {r.rel: r for r in records}
    assert len(records) == len(IMAGES) + 1  # + the nested-only image
    assert all(r.pediatric is True and r.pediatric_reason == "source:kermany" for r in records)
    assert all(r.view == "AP" and r.source_record == r.rel and r.license == "CC BY 4.0" for r in records)

    r = by_rel["chest_xray/train/NORMAL/IM-0115-0001.jpeg"]
    assert (r.label, r.finding_raw, r.patient_id, r.extra) == ("normal", "normal", "kermany:IM-0115",
                                                               {"kermany_split": "train"})
    assert by_rel["chest_xray/train/NORMAL/NORMAL2-IM-1427-0001.jpeg"].patient_id == "kermany:NORMAL2-IM-1427"
    assert by_rel["chest_xray/train/NORMAL/IM-1427-0001.jpeg"].patient_id == "kermany:IM-1427"

    bact = by_rel["chest_xray/train/PNEUMONIA/person1_bacteria_1.jpeg"]
    virus = by_rel["chest_xray/train/PNEUMONIA/person1_virus_6.jpeg"]
    assert (bact.label, bact.finding_raw, bact.patient_id) == ("pneumonia", "bacteria", "kermany:person1")
    assert (virus.label, virus.finding_raw, virus.patient_id) == ("pneumonia", "virus", "kermany:person1")
    val = by_rel["chest_xray/val/PNEUMONIA/person1000_bacteria_2931.jpeg"]
    assert val.patient_id == "kermany:person1000" and val.extra == {"kermany_split": "val"}

    odd = by_rel["chest_xray/test/PNEUMONIA/scan 7.jpeg"]
    assert (odd.label, odd.patient_id, odd.finding_raw, odd.pediatric) == ("pneumonia", None, "pneumonia", True)
    nested = by_rel["chest_xray/chest_xray/test/PNEUMONIA/person3_virus_15.jpeg"]
    assert (nested.patient_id, nested.extra) == ("kermany:person3", {"kermany_split": "test"})


def test_every_file_accounted_for_exactly_once(tmp_path: Path) -> None:
    _kaggle_tree(tmp_path)
    records, dropped = _parse(tmp_path)
    seen = Counter([r.rel for r in records] + [d.rel for d in dropped])
    assert max(seen.values()) == 1
    assert set(seen) == _files(tmp_path)
    assert "chest_xray/train/NORMAL/.DS_Store" not in seen

    reasons = {d.rel: d.reason for d in dropped}
    assert reasons == {
        "chest_xray/chest_xray/train/NORMAL/IM-0115-0001.jpeg": DUPLICATE_ROW,
        "chest_xray/__MACOSX/chest_xray/train/NORMAL/._IM-0115-0001.jpeg": NOT_IMAGE,
        "chest_xray/__MACOSX/._chest_xray": NOT_IMAGE,
        "chest_xray/README.txt": NOT_IMAGE,
        "chest_xray/train/stray.jpeg": FILE_WITHOUT_ROW,
        "chest_xray/train/NORMAL/._IM-0115-0001.jpeg": HIDDEN_FILE,
    }
    dup = next(d for d in dropped if d.reason == DUPLICATE_ROW)
    assert "chest_xray/train/NORMAL/IM-0115-0001.jpeg" in dup.detail


def test_root_may_be_chest_xray_itself(tmp_path: Path) -> None:
    top = _kaggle_tree(tmp_path)
    records, dropped = _parse(top)
    assert {r.rel for r in records} >= {"train/NORMAL/IM-0115-0001.jpeg", "test/PNEUMONIA/scan 7.jpeg"}
    assert len(records) == len(IMAGES) + 1 and len(dropped) == 6  # 5 + the hidden macOS fork
    assert set(r.rel for r in records) | set(d.rel for d in dropped) == _files(top)


def test_mendeley_layout_without_val(tmp_path: Path) -> None:
    """Mendeley's ``CellData/chest_xray/{train,test}``, no ``val/``, no Kaggle clutter."""
    for rel in ("train/NORMAL/IM-0115-0001.jpeg", "test/PNEUMONIA/person1_virus_6.jpeg"):
        _jpeg(tmp_path / "CellData/chest_xray" / rel)
    records, dropped = _parse(tmp_path / "CellData")
    assert dropped == []
    assert [(r.rel, r.label) for r in records] == [("chest_xray/test/PNEUMONIA/person1_virus_6.jpeg", "pneumonia"),
                                                   ("chest_xray/train/NORMAL/IM-0115-0001.jpeg", "normal")]


def test_kaggle_nested_copy_alone_is_parsed(tmp_path: Path) -> None:
    _jpeg(tmp_path / "chest_xray/chest_xray/train/NORMAL/IM-0115-0001.jpeg")
    records, dropped = _parse(tmp_path)
    assert dropped == []
    assert [(r.rel, r.patient_id) for r in records] == [("chest_xray/chest_xray/train/NORMAL/IM-0115-0001.jpeg",
                                                         "kermany:IM-0115")]


def test_missing_folder_shows_expected_layout(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="Expected the layout") as err:
        list(Kermany(tmp_path).parse())
    assert "chest_xray" in str(err.value) and "train/PNEUMONIA/person1_bacteria_1.jpeg" in str(err.value)
    (tmp_path / "chest_xray" / "other").mkdir(parents=True)
    with pytest.raises(SourceError, match="no train/, val/ or test/ folder"):
        list(Kermany(tmp_path).parse())


@pytest.mark.parametrize(("stem", "expected"), [
    ("IM-0115-0001", ("IM-0115", None)),
    ("IM-0545-0001-0002", ("IM-0545", None)),
    ("NORMAL2-IM-1427-0001", ("NORMAL2-IM-1427", None)),
    ("person1_bacteria_1", ("person1", "bacteria")),
    ("person1_virus_6", ("person1", "virus")),
    ("person1000_bacteria_2931", ("person1000", "bacteria")),
    ("scan 7", (None, None)),
])
def test_patient_from_name(stem: str, expected: tuple[str | None, str | None]) -> None:
    assert patient_from_name(stem) == expected


def test_registry_resolves_and_suggests(tmp_path: Path) -> None:
    assert get_source("kermany") is Kermany
    assert get_source(" Kermany ") is Kermany
    with pytest.raises(UnknownSourceError) as err:
        get_source("kermani")
    assert "did you mean" in str(err.value).lower() and "kermany" in str(err.value)
