"""The two agchung collections released with COVID-Net: Figure1 and Actualmed COVID-19 chest X-rays.

Both use one ``metadata.csv`` schema (``patientid, offset, sex, age, finding, ... view, modality``). Figure1
names each image after its ``patientid`` (``COVID-00003a.jpg``: the letter marks the patient's second
picture, so the patient id drops it); Actualmed has an ``imagename`` column. A blank ``finding`` is
``unknown`` (Actualmed's notes call those cases "Inconclusive"), never assumed COVID-19.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..labels import label_from_finding, normalize_sex, normalize_view, parse_age, pediatric_from_age
from . import register
from .base import (
    DUPLICATE_ROW,
    FILE_WITHOUT_ROW,
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

_EXTRA = ("offset", "survival", "temperature", "pO2 saturation", "artifacts/distortion", "notes")


class _AgChung(Source):
    """Shared parser; subclasses say how a row names its image file and its patient."""

    license = "not stated by the repository (images contributed to COVID-Net; see homepage)"
    metadata_files = ("metadata.csv",)
    required: tuple[str, ...] = ("patientid", "finding")  # view and modality may be absent (unknown / x-ray)

    def file_key(self, row: dict) -> str:
        raise NotImplementedError

    def patient(self, row: dict) -> str | None:
        return clean(row.get("patientid"))

    def parse(self) -> Iterator[Record | Dropped]:
        self.require("metadata.csv", "images")
        meta = self.read_rows("metadata.csv", self.required)
        files, junk = self.scan("images")
        yield from junk
        yield from unparseable(meta)
        lookup = {**{n.rsplit(".", 1)[0].lower(): n for n in files}, **{n.lower(): n for n in files}}
        used: dict[str, str] = {}
        for rid, row in meta.rows:
            key = self.file_key(row)
            name = lookup.get(key.lower())
            modality = (clean(row.get("modality")) or "x-ray").lower()
            if name is None:
                yield Dropped(ROW_WITHOUT_FILE, source_record=rid, detail=f"images/{key} not found")
                continue
            if name in used:
                yield Dropped(DUPLICATE_ROW, source_record=rid, detail=f"{name} already described by {used[name]}")
                continue
            used[name] = rid
            if modality not in {"x-ray", "xray"}:
                yield Dropped(NOT_XRAY, rel=files[name], source_record=rid, detail=f"modality={modality}")
                continue
            finding = clean(row.get("finding"))
            age = parse_age(clean(row.get("age")))
            pediatric, reason = pediatric_from_age(age)
            extra = extras(row, _EXTRA)
            if clean(row.get("age")) is not None:
                extra["age_raw"] = clean(row.get("age"))
            pid = self.patient(row)
            yield Record(
                rel=files[name], label=label_from_finding(finding), source_record=rid,
                patient_id=f"{self.name}:{pid}" if pid else None, url=f"{self.homepage}/blob/master/images/{name}",
                license=None, finding_raw=finding, view=normalize_view(clean(row.get("view"))), age_years=age,
                sex=normalize_sex(clean(row.get("sex"))), pediatric=pediatric, pediatric_reason=reason, extra=extra,
            )
        for name, rel in files.items():
            if name not in used:
                yield Dropped(FILE_WITHOUT_ROW, rel=rel, detail="no metadata.csv row names this file")


@register
class Figure1(_AgChung):
    """Figure1-COVID-chestxray-dataset: ``images/<patientid>.<ext>``."""

    name = "figure1"
    title = "Figure1 COVID-19 chest X-ray dataset"
    homepage = "https://github.com/agchung/Figure1-COVID-chestxray-dataset"
    layout = "  metadata.csv   (patientid names the image)\n  images/<patientid>.jpg|png"
    fetch = Repository("agchung/Figure1-COVID-chestxray-dataset", "95bb569e55f4110d3b734c0f355340e04e16989a")
    dedup_rank = 70  # a curated aggregator

    def file_key(self, row: dict) -> str:
        return clean(row.get("patientid")) or ""

    def patient(self, row: dict) -> str | None:
        pid = clean(row.get("patientid"))
        return re.sub(r"(?<=\d)[a-z]$", "", pid) if pid else None


@register
class Actualmed(_AgChung):
    """Actualmed-COVID-chestxray-dataset: ``metadata.csv`` with ``imagename``; ``images/<imagename>``."""

    name = "actualmed"
    title = "Actualmed COVID-19 chest X-ray dataset"
    homepage = "https://github.com/agchung/Actualmed-COVID-chestxray-dataset"
    layout = "  metadata.csv   (imagename column)\n  images/<imagename>"
    fetch = Repository("agchung/Actualmed-COVID-chestxray-dataset", "27240dd8dec9454bc97f9f3c0c432ef434de2517")
    dedup_rank = 60  # a curated aggregator

    required = ("patientid", "finding", "imagename")

    def file_key(self, row: dict) -> str:
        return clean(row.get("imagename")) or ""
