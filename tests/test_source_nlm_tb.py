"""The Shenzhen and Montgomery loaders on fake trees in the NLM layout (readings in the real formats, masks)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from cxrcurate.errors import SourceError, UnknownSourceError
from cxrcurate.sources import get_source
from cxrcurate.sources.base import FILE_WITHOUT_ROW, MASK_WITHOUT_IMAGE, NOT_IMAGE, ROW_WITHOUT_FILE, Dropped, Record
from cxrcurate.sources.nlm_tb import Montgomery, NlmTbSource, Shenzhen

MCU_READINGS = {
    "MCUCXR_0001_0": "Patient's Sex: M\nPatient's Age: 047Y\n\nnormal\n",
    "MCUCXR_0002_1": "Patient's Sex: F\r\nPatient's Age: 012Y\r\n\r\nbilateral upper lobe cavitary TB\r\n",
    "MCUCXR_0099_1": "Patient's Sex: F\nPatient's Age: 060Y\n\nright apical scarring\n",  # no image
}
CHN_READINGS = {
    "CHNCXR_0001_0": "male 35yrs\nnormal\n",
    "CHNCXR_0002_1": "female 9yrs\n\nSTB,ATB in right upper field\n",
    "CHNCXR_0003_1": "Male 35 yrs\nbilateral PTB\n",
    "CHNCXR_0004_0": "female 1yrs\nnormal",
    "CHNCXR_0005_0": "male 35yr\n",
    "CHNCXR_0777_1": "male 50yrs\nPTB\n",  # no image
}


def _png(path: Path, shade: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), shade).save(path, format="PNG")


def _write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def _montgomery(root: Path) -> None:
    for i, stem in enumerate(("MCUCXR_0001_0", "MCUCXR_0002_1", "MCUCXR_0003_0")):
        _png(root / f"CXR_png/{stem}.png", shade=20 * i)
    _write(root / "CXR_png/Thumbs.db", b"\0\1")
    _write(root / "CXR_png/.DS_Store", b"\0")  # hidden: skipped
    for stem, text in MCU_READINGS.items():
        _write(root / f"ClinicalReadings/{stem}.txt", text)
    for side in ("leftMask", "rightMask"):
        for stem in ("MCUCXR_0001_0", "MCUCXR_0002_1"):
            _png(root / f"ManualMask/{side}/{stem}.png", shade=255)
    _png(root / "ManualMask/leftMask/MCUCXR_0098_0.png", shade=255)  # mask without image
    _write(root / "NLM-MontgomeryCXRSet-ReadMe.pdf", b"%PDF-1.4")


def _shenzhen(root: Path, mask_folder: str = "mask") -> None:
    for i, stem in enumerate(("CHNCXR_0001_0", "CHNCXR_0002_1", "CHNCXR_0003_1", "CHNCXR_0004_0", "CHNCXR_0005_0",
                              "CHNCXR_0006_1", "scan")):
        _png(root / f"CXR_png/{stem}.png", shade=20 * i)
    _write(root / "CXR_png/Thumbs.db", b"\0\1")
    for stem, text in CHN_READINGS.items():
        _write(root / f"ClinicalReadings/{stem}.txt", text)
    _write(root / "ClinicalReadings/Thumbs.db", b"\0\1")
    _write(root / "NLM-ChinaCXRSet-ReadMe.docx", b"PK")
    for stem in ("CHNCXR_0001_0", "CHNCXR_0002_1", "CHNCXR_0500_1"):
        _png(root / f"{mask_folder}/{stem}_mask.png", shade=255)


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")}


def _parse(src: NlmTbSource) -> tuple[dict[str, Record], list[Dropped]]:
    items = list(src.parse())
    assert all(isinstance(i, Record | Dropped) for i in items)
    records = [i for i in items if isinstance(i, Record)]
    assert len({r.rel for r in records}) == len(records)
    return {r.rel: r for r in records}, [i for i in items if isinstance(i, Dropped)]


def _assert_accounted(root: Path, records: dict[str, Record], dropped: list[Dropped]) -> None:
    """Each file is exactly one of: a record's image, one of its masks or reading, or a dropped item."""
    used = [r.rel for r in records.values()] + [m for r in records.values() for m in r.mask_rels]
    used += [r.source_record for r in records.values() if r.source_record != r.rel]
    seen = Counter(used + [d.rel for d in dropped])
    assert max(seen.values()) == 1
    assert set(seen) == _files(root)


def test_montgomery(tmp_path: Path) -> None:
    _montgomery(tmp_path)
    records, dropped = _parse(Montgomery(tmp_path))
    assert len(records) == 3 and len(dropped) == 4
    _assert_accounted(tmp_path, records, dropped)

    normal = records["CXR_png/MCUCXR_0001_0.png"]
    assert (normal.label, normal.finding_raw, normal.patient_id) == ("normal", "normal", "montgomery:MCUCXR_0001")
    assert (normal.age_years, normal.sex, normal.pediatric, normal.pediatric_reason) == (47.0, "M", False, "age>=18")
    assert normal.mask_rels == ["ManualMask/leftMask/MCUCXR_0001_0.png", "ManualMask/rightMask/MCUCXR_0001_0.png"]
    assert normal.source_record == "ClinicalReadings/MCUCXR_0001_0.txt"
    assert normal.extra == {"reading": "normal"} and normal.view == "PA"

    tb = records["CXR_png/MCUCXR_0002_1.png"]
    assert (tb.label, tb.finding_raw, tb.age_years, tb.sex) == ("other", "tuberculosis", 12.0, "F")
    assert (tb.pediatric, tb.pediatric_reason) == (True, "age<18")
    assert tb.extra == {"reading": "bilateral upper lobe cavitary TB"}

    bare = records["CXR_png/MCUCXR_0003_0.png"]  # no reading, no masks
    assert (bare.age_years, bare.sex, bare.pediatric, bare.mask_rels, bare.extra) == (None, None, None, [], {})
    assert bare.source_record == bare.rel and bare.patient_id == "montgomery:MCUCXR_0003"

    assert {(d.reason, d.rel) for d in dropped} == {
        (NOT_IMAGE, "CXR_png/Thumbs.db"),
        (NOT_IMAGE, "NLM-MontgomeryCXRSet-ReadMe.pdf"),
        (ROW_WITHOUT_FILE, "ClinicalReadings/MCUCXR_0099_1.txt"),
        (MASK_WITHOUT_IMAGE, "ManualMask/leftMask/MCUCXR_0098_0.png"),
    }
    orphan = next(d for d in dropped if d.reason == ROW_WITHOUT_FILE)
    assert orphan.detail == "clinical reading without image"
    assert orphan.source_record == orphan.rel


@pytest.mark.parametrize("mask_folder", ["mask", "masks"])
def test_shenzhen(tmp_path: Path, mask_folder: str) -> None:
    _shenzhen(tmp_path, mask_folder)
    records, dropped = _parse(Shenzhen(tmp_path))
    assert len(records) == 7 and len(dropped) == 5
    _assert_accounted(tmp_path, records, dropped)

    def facts(stem: str) -> tuple:
        r = records[f"CXR_png/{stem}.png"]
        return r.label, r.finding_raw, r.patient_id, r.age_years, r.sex, r.pediatric, r.pediatric_reason

    assert facts("CHNCXR_0001_0") == ("normal", "normal", "shenzhen:CHNCXR_0001", 35.0, "M", False, "age>=18")
    assert facts("CHNCXR_0002_1") == ("other", "tuberculosis", "shenzhen:CHNCXR_0002", 9.0, "F", True, "age<18")
    assert facts("CHNCXR_0003_1")[3:5] == (35.0, "M")
    assert facts("CHNCXR_0004_0")[3:6] == (1.0, "F", True)
    assert facts("CHNCXR_0005_0")[3:5] == (35.0, "M")
    assert facts("CHNCXR_0006_1") == ("other", "tuberculosis", "shenzhen:CHNCXR_0006", None, None, None, None)
    assert facts("scan") == ("unknown", None, None, None, None, None, None)

    assert records["CXR_png/CHNCXR_0002_1.png"].extra == {"reading": "STB,ATB in right upper field"}
    assert records["CXR_png/CHNCXR_0005_0.png"].extra == {}  # sex/age only, no reading text
    assert records["CXR_png/CHNCXR_0001_0.png"].mask_rels == [f"{mask_folder}/CHNCXR_0001_0_mask.png"]
    assert records["CXR_png/CHNCXR_0003_1.png"].mask_rels == []
    assert all(r.view == "PA" for r in records.values())

    assert {(d.reason, d.rel) for d in dropped} == {
        (NOT_IMAGE, "CXR_png/Thumbs.db"),
        (NOT_IMAGE, "ClinicalReadings/Thumbs.db"),
        (NOT_IMAGE, "NLM-ChinaCXRSet-ReadMe.docx"),
        (ROW_WITHOUT_FILE, "ClinicalReadings/CHNCXR_0777_1.txt"),
        (MASK_WITHOUT_IMAGE, f"{mask_folder}/CHNCXR_0500_1_mask.png"),
    }


@pytest.mark.parametrize(("text", "expected"), [
    ("male 35yrs\nnormal", ("male", "35yrs", "normal")),
    ("Male 35 yrs\n\nSTB\nright upper field", ("Male", "35 yrs", "STB\nright upper field")),
    ("female 1yrs", ("female", "1yrs", None)),
    ("male,35yrs normal", ("male", "35yrs", "normal")),
    ("Mild infiltrate", (None, None, "Mild infiltrate")),
    ("", (None, None, None)),
])
def test_shenzhen_reading_formats(tmp_path: Path, text: str, expected: tuple) -> None:
    (tmp_path / "CXR_png").mkdir()
    assert Shenzhen(tmp_path).read_reading(text) == expected


def test_root_may_hold_the_set_folder(tmp_path: Path) -> None:
    _montgomery(tmp_path / "MontgomerySet")
    _png(tmp_path / "MontgomerySet/MCUCXR_0004_0.png")  # a loose image: not in CXR_png/
    records, dropped = _parse(Montgomery(tmp_path))
    _assert_accounted(tmp_path, records, dropped)
    reasons = {(d.reason, d.rel) for d in dropped}
    assert (NOT_IMAGE, "MontgomerySet/NLM-MontgomeryCXRSet-ReadMe.pdf") in reasons
    assert (FILE_WITHOUT_ROW, "MontgomerySet/MCUCXR_0004_0.png") in reasons
    assert "MontgomerySet/CXR_png/MCUCXR_0001_0.png" in records
    assert records["MontgomerySet/CXR_png/MCUCXR_0001_0.png"].mask_rels[0] == (
        "MontgomerySet/ManualMask/leftMask/MCUCXR_0001_0.png")


def test_non_utf8_reading(tmp_path: Path) -> None:
    _png(tmp_path / "CXR_png/CHNCXR_0001_1.png")
    _write(tmp_path / "ClinicalReadings/CHNCXR_0001_1.txt", "female 40yrs\nPTB \u00b0\n".encode("cp1252"))
    (record,) = _parse(Shenzhen(tmp_path))[0].values()
    assert (record.age_years, record.sex, record.extra) == (40.0, "F", {"reading": "PTB \u00b0"})


@pytest.mark.parametrize("cls", [Montgomery, Shenzhen])
def test_missing_images_folder_shows_expected_layout(tmp_path: Path, cls: type[NlmTbSource]) -> None:
    (tmp_path / "ClinicalReadings").mkdir()
    with pytest.raises(SourceError, match="Expected the layout") as err:
        list(cls(tmp_path).parse())
    assert "CXR_png" in str(err.value) and f"ClinicalReadings/{cls.prefix}_0001_0.txt" in str(err.value)


def test_registry_resolves_and_suggests() -> None:
    assert get_source("shenzhen") is Shenzhen
    assert get_source("montgomery") is Montgomery
    with pytest.raises(UnknownSourceError) as err:
        get_source("shenzen")
    assert "did you mean" in str(err.value).lower() and "shenzhen" in str(err.value)
    with pytest.raises(UnknownSourceError) as err:
        get_source("kermani")
    assert "did you mean" in str(err.value).lower()
