"""NIH ChestX-ray14 (Wang et al., 2017; https://nihcc.app.box.com/v/ChestXray-NIHCC).

Labels follow the COVID-CXNet paper: ``No Finding`` is ``normal``; ``Pneumonia`` among the ``|``-joined
findings is ``pneumonia`` (its community-acquired pneumonia class); any other finding is ``other``.
``Patient Age`` is in years; the original 2017 CSV holds impossible ages (e.g. 411), which become unknown and
are counted in ``notes['impossible_ages']``. ``notes`` also reports, for the whole CSV (with or without the
images on disk), how many images are of patients under 18.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd

from ..imageio import is_image_name
from ..labels import MAX_AGE, PEDIATRIC_AGE, normalize_sex, normalize_view, pediatric_from_age
from . import register
from .base import (
    DUPLICATE_ROW,
    FILE_WITHOUT_ROW,
    ROW_WITHOUT_FILE,
    Dropped,
    ManualDownload,
    Record,
    Source,
    unparseable,
)

# MD5s of the twelve image archives as NIH's FAQ_CHESTXRAY.pdf (Q07, "We thank Utku Ozbulak for providing those
# MD5s") in the Box folder publishes them. Evidence: a text extraction of that FAQ in the public-code search index
# (id 4039575493), and public loaders that check the same twelve values and cite the FAQ's Box file
# (nihcc.app.box.com/v/ChestXray-NIHCC/file/249502714403; index ids 17023658594, 9694343726, 70696847699).
# NIH publishes no sha256, so the sha256 of the first copy checked is pinned as well.
_NIH_MD5 = ("fe8ed0a6961412fddcbb3603c11b3698", "ab07a2d7cbe6f65ddd97b4ed7bde10bf", "2301d03bde4c246388bad3876965d574",
            "9f1b7f5aae01b13f4bc8e2c44a4b8ef6", "1861f3cd0ef7734df8104f2b0309023b", "456b53a8b351afd92a35bc41444c58c8",
            "1075121ea20a137b87f290d6a4a5965e", "b61f34cec3aa69f295fbb593cbd9d443", "442a3caa61ae9b64e61c561294d1e183",
            "09ec81c4c31e32858ad8cf965c494b74", "499aefc67207a5a97692424cf5dbeed5", "dc9fda1757c2de0032b63347a7d2895c")
ARCHIVE_MD5 = {f"images_{n:03d}.tar.gz": f"md5:{md5}" for n, md5 in enumerate(_NIH_MD5, 1)}

_REQUIRED = ("Image Index", "Finding Labels", "Patient ID", "Patient Age", "Patient Gender", "View Position")

FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
            "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")


def nih_label(findings: str) -> str:
    """``normal`` / ``pneumonia`` / ``other`` from a ``|``-joined ``Finding Labels`` value (whole tokens)."""
    tokens = {t.strip() for t in findings.split("|") if t.strip()}
    if not tokens:
        return "unknown"
    if tokens == {"No Finding"}:
        return "normal"
    return "pneumonia" if "Pneumonia" in tokens else "other"


@register
class NIHChestXray14(Source):
    """``Data_Entry_2017*.csv[.gz]`` and the PNGs in ``images/`` or ``images_001/images/`` ... ``images_012/``."""

    name = "nih-cxr14"
    title = "NIH ChestX-ray14"
    homepage = "https://nihcc.app.box.com/v/ChestXray-NIHCC"
    license = "public domain (NIH Clinical Center; cite Wang et al. 2017)"
    layout = ("  Data_Entry_2017_v2020.csv  (or Data_Entry_2017.csv, optionally .gz)\n"
              "  images/*.png  or  images_001/images/*.png ... images_012/images/*.png")
    fetch = ManualDownload(
        "https://nihcc.app.box.com/v/ChestXray-NIHCC",
        "Data_Entry_2017_v2020.csv and the twelve images_001.tar.gz ... images_012.tar.gz archives (Box asks to "
        "accept its terms; extract each archive in the folder)",
        112_120, metadata=("Data_Entry_2017_v2020.csv",), archives=ARCHIVE_MD5,
        digest_note="MD5s published in NIH's FAQ_CHESTXRAY.pdf (Q07) in the Box folder")
    dedup_rank = 20  # an institution's originals

    def _csv(self) -> str:
        for name in ("Data_Entry_2017_v2020.csv", "Data_Entry_2017_v2020.csv.gz", "Data_Entry_2017.csv",
                     "Data_Entry_2017.csv.gz"):
            if (self.root / name).exists():
                return name
        self.require("Data_Entry_2017_v2020.csv")
        raise AssertionError("unreachable")

    @property
    def metadata_files(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self._csv(),)

    def _images(self) -> tuple[dict[str, str], list[Dropped]]:
        found: dict[str, str] = {}
        other: list[Dropped] = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name.startswith("images")):
            inner = folder / "images" if (folder / "images").is_dir() else folder
            files, dropped = self.entries(inner.relative_to(self.root))
            other.extend(d for d in dropped if not (inner != folder and d.rel == self.rel(inner)))
            for name, rel in files.items():
                found.setdefault(name, rel)
        return found, other

    def _read(self) -> tuple[str, list[str], list[dict[str, str]], pd.Series, list[Dropped]]:
        """The CSV read once: its name, row ids, rows, ages (impossible ones unknown), unparseable rows; notes."""
        csv_name = self._csv()
        meta = self.read_rows(csv_name, _REQUIRED)
        rids = [rid for rid, _ in meta.rows]
        df = pd.DataFrame([row for _, row in meta.rows], columns=meta.header).fillna("")
        age_col = "Patient Age"
        ages_raw = df[age_col].str.extract(r"^0*(\d+)", expand=False).astype(float)
        impossible = ages_raw > MAX_AGE
        ages = ages_raw.where(~impossible)
        self.notes.update({
            "csv": csv_name, "csv_rows": int(len(df)), "csv_patients": int(df["Patient ID"].nunique()),
            "csv_pediatric_images": int((ages < PEDIATRIC_AGE).sum()),
            "csv_pediatric_patients": int(df.loc[ages < PEDIATRIC_AGE, "Patient ID"].nunique()),
            "impossible_ages": int(impossible.sum()),
            "impossible_age_examples": sorted({int(min(a, 1e9)) for a in ages_raw[impossible]})[:10],
        })
        return csv_name, rids, df.to_dict("records"), ages, list(unparseable(meta))

    def _fields(self, row: dict[str, str], rid: str, age: float) -> dict[str, Any]:
        """One CSV row's facts, as ``parse`` and ``metadata_table`` both report them."""
        age_years = None if age != age else float(age)
        pediatric, reason = pediatric_from_age(age_years)
        extra: dict[str, Any] = {"follow_up": row.get("Follow-up #")}
        if age_years is None and row.get("Patient Age"):
            extra["age_raw"] = row["Patient Age"]
        return {"label": nih_label(row.get("Finding Labels") or ""), "source_record": rid,
                "patient_id": f"nih-cxr14:{_patient(row['Patient ID'])}", "url": self.homepage,
                "license": self.license, "finding_raw": row.get("Finding Labels"),
                "view": normalize_view(row.get("View Position")), "age_years": age_years,
                "sex": normalize_sex(row.get("Patient Gender")), "pediatric": pediatric, "pediatric_reason": reason,
                "extra": extra}

    def metadata_table(self) -> tuple[pd.DataFrame, list[Dropped]]:
        """Metadata-only mode: every image the CSV describes (no image files needed), with the labels, patients,
        ages and pediatric flags ``parse`` gives, plus ``file_name``, ``follow_up`` and the CSV's original
        ``width``/``height``; and the rows left out (unparseable, or naming an image a row before already named).

        Raises:
            SourceError: the CSV is missing or lacks a required column.
        """
        _, rids, rows, ages, dropped = self._read()
        out, used = [], {}
        for rid, row, age in zip(rids, rows, ages.tolist(), strict=True):
            name = row["Image Index"]
            if name in used:
                dropped.append(Dropped(DUPLICATE_ROW, source_record=rid, detail=f"{name} already described by "
                                                                                 f"{used[name]}"))
                continue
            used[name] = rid
            f = self._fields(row, rid, age)
            out.append({"image_id": f"{self.name}:{name}", "source": self.name, "source_record": rid,
                        "patient_id": f["patient_id"], "file_name": name, "label": f["label"],
                        "finding_raw": f["finding_raw"], "view": f["view"], "age_years": f["age_years"],
                        "sex": f["sex"], "pediatric": f["pediatric"], "pediatric_reason": f["pediatric_reason"],
                        "follow_up": _int(row.get("Follow-up #")), "width": _int(row.get("OriginalImage[Width")),
                        "height": _int(row.get("Height]"))})
        return pd.DataFrame(out), dropped

    def parse(self) -> Iterator[Record | Dropped]:
        csv_name, rids, rows, ages, bad = self._read()
        yield from bad
        files, other = self._images()
        yield from other
        for name, rel in files.items():
            if not is_image_name(name):
                yield Dropped(FILE_WITHOUT_ROW, rel=rel, detail="not an image")
        used: dict[str, str] = {}
        for rid, row, age in zip(rids, rows, ages.tolist(), strict=True):
            name = row["Image Index"]
            rel = files.get(name)
            if rel is None:
                yield Dropped(ROW_WITHOUT_FILE, source_record=rid, detail=f"{name} not in any images folder")
                continue
            if name in used:
                yield Dropped(DUPLICATE_ROW, source_record=rid, detail=f"{name} already described by {used[name]}")
                continue
            used[name] = rid
            yield Record(rel=rel, **self._fields(row, rid, age))
        for name, rel in files.items():
            if name not in used and is_image_name(name):
                yield Dropped(FILE_WITHOUT_ROW, rel=rel, detail=f"no {csv_name} row names this file")


def _int(value: str | None) -> int | None:
    """A CSV integer (``Follow-up #``, the original width/height), None when absent or not a number."""
    value = (value or "").strip()
    return int(value) if value.lstrip("-").isdigit() else None


def _patient(value: str) -> str:
    """``Patient ID`` without leading zeros (``00012`` -> ``12``), as it is in the CSV otherwise."""
    return str(int(value)) if value.strip().isdigit() else value.strip()
