"""Hannover Medical School COVID-19 image repository (https://github.com/ml-workgroup/covid-19-image-repository).

Label rule. The repository holds radiographs of patients treated for COVID-19 only, and its readme defines
``admission_offset`` as "days since admission (begin of symptoms)". The published values are mostly <= 0,
which the repository's users (e.g. the Cohen collection's importer) read as *days after* admission with the
sign flipped; a positive value is then an image taken *before* the COVID-19 admission. So:

* ``admission_offset <= 0`` (taken on or after admission): ``covid19``;
* ``admission_offset > 0`` (taken before admission, possibly before the infection): ``unknown``;
* missing offset: ``unknown``;
* an offset that is not a finite number ("n/a", "inf", "3 days"): the row and its image go to the dropped table as
  ``bad_value``, naming the row and the value (the label cannot be decided; the rest of the build goes on).

``days_after_admission`` (= -admission_offset) is kept in ``extra`` so users can apply a stricter window.
Ages are redacted upstream (k-anonymity), so ``pediatric`` is unknown for every image.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from ..labels import normalize_sex, normalize_view
from . import register
from .base import (
    BAD_VALUE,
    DUPLICATE_ROW,
    FILE_WITHOUT_ROW,
    ROW_WITHOUT_FILE,
    Dropped,
    Record,
    Repository,
    Source,
    clean,
    extras,
    unparseable,
)

_EXTRA = ("admission_offset", "icu_admission_offset", "icu_release_offset", "death_offset", "modality")


@register
class Hannover(Source):
    """``data.csv`` (one row per image, ``image_id``) and ``png/<image_id>.png``."""

    name = "hannover"
    title = "COVID-19 image repository, Hannover Medical School"
    homepage = "https://github.com/ml-workgroup/covid-19-image-repository"
    license = "CC BY 3.0"
    layout = "  data.csv\n  png/<image_id>.png"
    metadata_files = ("data.csv",)
    fetch = Repository("ml-workgroup/covid-19-image-repository", "ad7ab099b425f16e06bba22322336b7d6a732965")
    dedup_rank = 10  # an institution's originals

    def parse(self) -> Iterator[Record | Dropped]:
        self.require("data.csv", "png")
        meta = self.read_rows("data.csv", ("patient_id", "image_id", "admission_offset", "projection"))
        files, junk = self.scan("png")
        yield from junk
        yield from unparseable(meta)
        by_stem = {name.rsplit(".", 1)[0]: name for name in files}
        used: dict[str, str] = {}
        for rid, row in meta.rows:
            image_id = clean(row.get("image_id")) or ""
            name = by_stem.get(image_id)
            if name is None:
                yield Dropped(ROW_WITHOUT_FILE, source_record=rid, detail=f"png/{image_id}.png not found")
                continue
            if name in used:
                yield Dropped(DUPLICATE_ROW, source_record=rid, detail=f"{name} already described by {used[name]}")
                continue
            used[name] = rid
            offset = clean(row.get("admission_offset"))
            extra = extras(row, _EXTRA)
            days_after = _days_after(offset)
            if offset is not None and days_after is None:
                yield Dropped(BAD_VALUE, rel=files[name], source_record=rid,
                              detail=f"data.csv row {rid}: admission_offset {offset[:40]!r} is not a number of days; "
                                     "fix it (or leave it empty: label unknown) to include the image")
                continue
            if days_after is None:
                label = "unknown"
            else:
                extra["days_after_admission"] = days_after
                label = "covid19" if days_after >= 0 else "unknown"
            pid = clean(row.get("patient_id"))
            yield Record(
                rel=files[name], label=label, source_record=rid, patient_id=f"hannover:{pid}" if pid else None,
                url=f"{self.homepage}/blob/master/png/{name}", license=self.license,
                finding_raw=f"COVID-19 patient, admission_offset={offset}",
                view=normalize_view(clean(row.get("projection"))), sex=normalize_sex(clean(row.get("sex"))),
                extra=extra,
            )
        for name, rel in files.items():
            if name not in used:
                yield Dropped(FILE_WITHOUT_ROW, rel=rel, detail="no data.csv row has this image_id")


def _days_after(offset: str | None) -> float | None:
    """-``admission_offset`` as a finite float; None when empty or not a finite number."""
    try:
        value = -float(offset) if offset is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None
