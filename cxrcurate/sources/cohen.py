"""Cohen et al., covid-chestxray-dataset (https://github.com/ieee8023/covid-chestxray-dataset).

Reads both metadata schemas: the June-2020 one (``finding`` like ``COVID-19``, ``COVID-19, ARDS``,
``Streptococcus``, ``No Finding``) and the later one (``Pneumonia/Viral/COVID-19``,
``Pneumonia/Bacterial/Streptococcus``, ``todo``, plus ``RT_PCR_positive``). Findings map to labels by whole
tokens (``labels.label_from_finding``). CT rows and ``volumes`` are not X-rays. Patient ids are strings
(``311a``). Lung masks in ``lung-masks/`` (same file name as the image) are attached to their image.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..labels import label_from_finding, normalize_sex, normalize_view, parse_age, pediatric_from_age
from . import register
from .base import (
    DUPLICATE_ROW,
    FILE_WITHOUT_ROW,
    MASK_WITHOUT_IMAGE,
    NOT_XRAY,
    ROW_WITHOUT_FILE,
    Dropped,
    Record,
    Repository,
    Source,
    clean,
    extras,
    unparseable,
)
from .metadata import MetadataRows

_EXTRA = ("offset", "survival", "intubated", "went_icu", "RT_PCR_positive", "date", "location", "doi",
          "clinical_notes", "other_notes")
_NOTES = "clinical_notes"
_REQUIRED = ("patientid", "finding", "view", "modality", "filename")


@register
class Cohen(Source):
    """covid-chestxray-dataset: one row per image in ``metadata.csv``, files in ``images/``."""

    name = "cohen"
    title = "COVID-19 image data collection (Cohen et al.)"
    homepage = "https://github.com/ieee8023/covid-chestxray-dataset"
    license = "per image (license column)"
    layout = "  metadata.csv\n  images/<filename>\n  lung-masks/<filename>   (optional)"
    metadata_files = ("metadata.csv",)
    fetch = Repository("ieee8023/covid-chestxray-dataset", "6a4242344473ccb5ed0d2148d8c7bfb1691e4ed8",
                       "later metadata schema (Pneumonia/Viral/COVID-19); the loader reads both schemas")
    dedup_rank = 80  # a collection of collections (republishes Radiopaedia, SIRM, Hannover ...)

    def _read_metadata(self) -> MetadataRows:
        """Read ``metadata.csv``; rows whose free-text notes hold unquoted commas are re-joined, not lost."""

        def rejoin(fields: list[str], header: list[str]) -> list[str]:
            # Surplus fields came from commas inside the notes: fold them back into the notes column.
            i = header.index(_NOTES) if _NOTES in header else len(header) - 1
            surplus = len(fields) - len(header)
            return fields[:i] + [",".join(fields[i:i + surplus + 1])] + fields[i + surplus + 1:]

        return self.read_rows("metadata.csv", _REQUIRED, repair=rejoin)

    def parse(self) -> Iterator[Record | Dropped]:
        self.require("metadata.csv", "images")
        meta = self._read_metadata()
        yield from unparseable(meta)
        files, junk = self.scan("images")
        yield from junk
        masks, junk = self.scan("lung-masks") if (self.root / "lung-masks").is_dir() else ({}, [])
        yield from junk
        used_files: dict[str, str] = {}
        used_masks: set[str] = set()
        records: dict[str, Record] = {}
        for rid, row in meta.rows:
            fname = clean(row.get("filename")) or ""
            modality = (clean(row.get("modality")) or "").lower()
            folder = clean(row.get("folder")) or "images"
            rel = files.get(fname) if folder == "images" else None
            if modality not in {"x-ray", "xray"} or folder != "images":
                if rel:
                    used_files[fname] = rid
                yield Dropped(NOT_XRAY, rel=rel, source_record=rid, detail=f"modality={modality} folder={folder}")
                continue
            if fname in used_files:
                pid = clean(row.get("patientid"))
                first = records.get(fname)
                if first is not None and pid and f"cohen:{pid}" != first.patient_id:
                    # the same picture under a second patient id: both ids are one person for splitting
                    first.extra.setdefault("alias_patient_ids", []).append(f"cohen:{pid}")
                yield Dropped(DUPLICATE_ROW, source_record=rid,
                              detail=f"{fname} is already described by {used_files[fname]} (patientid {pid})")
                continue
            if rel is None:
                yield Dropped(ROW_WITHOUT_FILE, source_record=rid, detail=f"images/{fname} not found")
                continue
            used_files[fname] = rid
            finding = clean(row.get("finding"))
            age = parse_age(clean(row.get("age")))
            pediatric, reason = pediatric_from_age(age)
            mask = masks.get(fname)
            if mask:
                used_masks.add(fname)
            pid = clean(row.get("patientid"))
            records[fname] = Record(
                rel=rel, label=label_from_finding(finding), source_record=rid,
                patient_id=f"cohen:{pid}" if pid else None, url=clean(row.get("url")),
                license=clean(row.get("license")), finding_raw=finding,
                view=normalize_view(clean(row.get("view"))), modality="xray", age_years=age,
                sex=normalize_sex(clean(row.get("sex"))), pediatric=pediatric, pediatric_reason=reason,
                mask_rels=[mask] if mask else [], extra=extras(row, _EXTRA),
            )
        yield from records.values()
        for fname, rel in files.items():
            if fname not in used_files:
                yield Dropped(FILE_WITHOUT_ROW, rel=rel, detail="no metadata.csv row names this file")
        for fname, rel in masks.items():
            if fname not in used_masks:
                why = "its image is not an X-ray record (CT, dropped row)" if fname in files else "no such image"
                yield Dropped(MASK_WITHOUT_IMAGE, rel=rel, detail=why)
