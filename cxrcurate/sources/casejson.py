"""The loader shared by the scraped web sources: one ``cases/<case_id>.json`` per case plus ``images/<case_id>/``.

``cxrcurate fetch`` writes this folder (``cxrcurate/fetch/base.py``); each case file holds what the case page
states (title, age/sex, findings, diagnosis, license) and one entry per image shown (URL, caption, view,
modality, the downloaded file and its status). Every case, image entry and file is accounted for:

* an X-ray image on disk becomes a ``Record`` (``patient_id`` is ``<source>:<case_id>``: one case, one patient);
* an image of another modality (CT, MRI, ultrasound), or one whose caption does not say it is an X-ray, is
  ``not_xray``; the detail names the modality or says it was not stated (an unstated modality is never assumed);
* an image that was not downloaded (failed) is ``row_without_file``, with the fetch error; so is a case that
  shows no image at all;
* a file under ``images/`` that no case names is ``file_without_row``; a non-image there or in ``cases/`` is
  ``not_image``; a case file that is not valid JSON is ``unreadable``.

Label rule: these sites' COVID-19 series are ``covid19`` when the case's diagnosis names COVID-19 (or SARS-CoV-2)
and does not negate it ("COVID-19 excluded", "negativo per SARS-CoV-2"); any other diagnosis goes through
``labels.label_from_finding`` (whole tokens), so an unmapped one is ``unknown``, never guessed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ParseError
from ..imageio import is_image_name, read_regular
from ..labels import VIEWS, label_from_finding, pediatric_from_age
from .base import (
    FILE_WITHOUT_ROW,
    NOT_IMAGE,
    NOT_XRAY,
    ROW_WITHOUT_FILE,
    UNREADABLE,
    Dropped,
    Record,
    Source,
    hidden_file,
)

_COVID = re.compile(r"\b(covid-?19|sars-cov-2|2019-ncov)\b", re.I)
_NEG_BEFORE = re.compile(r"\b(no|not|non|negative|negativ[oa]|without|senza)\b[^.;]{0,40}\b(covid-?19|sars-cov-2)\b",
                         re.I)
_NEG_AFTER = re.compile(r"\b(covid-?19|sars-cov-2)\b[^.;]{0,25}\b(ruled out|excluded|esclus[oa]|negativ\w*)\b", re.I)
_CASE_EXTRA = ("title", "published", "patient_raw")


def label_from_diagnosis(diagnosis: str | None) -> str:
    """``covid19`` for a diagnosis naming COVID-19 without negating it; else ``label_from_finding``."""
    if not diagnosis:
        return "unknown"
    if _COVID.search(diagnosis) and not (_NEG_BEFORE.search(diagnosis) or _NEG_AFTER.search(diagnosis)):
        return "covid19"
    return label_from_finding(diagnosis)


class CaseFolderSource(Source):
    """A scraped site's raw folder as ``cxrcurate fetch`` writes it. Subclasses set the class attributes."""

    layout = ("  cases/<case_id>.json          one per case, written by `cxrcurate fetch`\n"
              "  images/<case_id>/<nn>.<ext>   the case's images, named by position\n"
              "  .cxrcurate-source.json        where and when it was fetched")
    metadata_files: ClassVar[tuple[str, ...]] = ()

    def _image_files(self) -> tuple[dict[str, bool], list[Dropped]]:
        """Every non-hidden file under ``images/`` (rel -> used) and ``not_image`` for the non-images."""
        files: dict[str, bool] = {}
        junk: list[Dropped] = []
        base = self.root / "images"
        if not base.is_dir():
            return files, junk
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                rel = self.rel(Path(dirpath) / name)
                if name.startswith("."):  # .part files of unfinished downloads, .DS_Store; image names are listed
                    if is_image_name(name):
                        junk.append(hidden_file(rel))
                    continue
                if is_image_name(name):
                    files[rel] = False
                else:
                    junk.append(Dropped(NOT_IMAGE, rel=rel, detail=f"suffix {Path(name).suffix or '(none)'}"))
        return files, junk

    def parse(self) -> Iterator[Record | Dropped]:
        self.require("cases")
        files, junk = self._image_files()
        yield from junk
        cases = 0
        for name, rel in self.files_in("cases").items():
            if not name.endswith(".json"):
                yield Dropped(NOT_IMAGE, rel=rel, detail="not a case file (.json)")
                continue
            try:
                case = json.loads(read_regular(self.root / rel, max_bytes=16 * 2**20).decode("utf-8"))
                images = case["images"]
                case_id = str(case["case_id"])
            except (OSError, ValueError, KeyError, TypeError, ParseError) as exc:
                yield Dropped(UNREADABLE, rel=rel, source_record=rel, detail=f"not a readable case file: {exc}")
                continue
            cases += 1
            if not images:
                yield Dropped(ROW_WITHOUT_FILE, source_record=rel, detail=f"case {case.get('url')} shows no image")
            for i, entry in enumerate(images):
                yield self._image(case, case_id, rel, i, entry, files)
        for rel, used in files.items():
            if not used:
                yield Dropped(FILE_WITHOUT_ROW, rel=rel, detail="no case file names this image")
        self.notes["cases"] = cases

    def _image(self, case: dict[str, Any], case_id: str, case_rel: str, i: int, entry: dict[str, Any],
               files: dict[str, bool]) -> Record | Dropped:
        rid = f"{case_rel}#{i}"
        file = entry.get("file")
        on_disk = file if file in files else None
        if on_disk:
            files[on_disk] = True
        modality = entry.get("modality")
        caption = entry.get("caption")
        if modality != "xray":
            stated = f"modality {modality}" if modality else "modality not stated (caption does not say X-ray)"
            return Dropped(NOT_XRAY, rel=on_disk, source_record=rid, detail=f"{stated}; caption: {caption!r}")
        if on_disk is None:
            why = entry.get("error") or entry.get("status") or "not downloaded"
            return Dropped(ROW_WITHOUT_FILE, source_record=rid, detail=f"{entry.get('url')}: {why}")
        age = case.get("age_years")
        pediatric, reason = pediatric_from_age(age)
        view = entry.get("view") if entry.get("view") in VIEWS else "unknown"
        extra = {k: case[k] for k in _CASE_EXTRA if case.get(k)}
        extra.update({"case_url": case.get("url"), "caption": caption, "position": entry.get("position"),
                      **(entry.get("extra") or {})})
        return Record(
            rel=on_disk, label=label_from_diagnosis(case.get("diagnosis")), source_record=rid,
            patient_id=f"{self.name}:{case_id}", url=entry.get("url"), license=case.get("license") or self.license,
            finding_raw=case.get("diagnosis"), view=view, modality="xray", age_years=age, sex=case.get("sex"),
            pediatric=pediatric, pediatric_reason=reason, extra={k: v for k, v in extra.items() if v is not None},
        )
