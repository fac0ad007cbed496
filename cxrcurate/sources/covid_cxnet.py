"""The COVID-CXNet collection (https://github.com/armiro/COVID-CXNet), ``chest_xray_images/covid19``.

Every image is COVID-19 (the collection holds only positives). ``metadata.csv`` covers files 260 onwards;
its ``filename`` sometimes differs from the file in case (``374.png`` for ``374.PNG``) or extension
(``403.jpg`` for ``403.jpeg``), so names are matched case-insensitively, then by number when that is
unambiguous. Pediatric comes from ``age`` when it is known, else from the ``p`` in the file name (``446p.jpg``,
``481p-.jpg``), which marks some children but not all; with neither it is unknown.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..errors import SourceError
from ..labels import normalize_sex, normalize_view, parse_age, pediatric_from_age
from . import register
from .base import DUPLICATE_ROW, ROW_WITHOUT_FILE, Dropped, Record, Repository, Source, clean, extras, unparseable

_NAME = re.compile(r"^(?P<num>\d+)(?P<flags>[p-]*)\.[A-Za-z]+$")
_EXTRA = ("pcr_test", "survival", "location", "admission_offset", "symptom_offset", "also_had_ct", "opacification",
          "is_bilateral", "other", "medical_background")
_REQUIRED = ("filename", "patient_id", "age", "sex", "view")


@register
class CovidCXNet(Source):
    """COVID-CXNet: ``images/NNN[p][-].<ext>`` plus a partial ``metadata.csv``."""

    name = "covid-cxnet"
    title = "COVID-CXNet collection (Haghanifar et al.)"
    homepage = "https://github.com/armiro/COVID-CXNet"
    license = "CC BY 4.0 (collection)"
    layout = "  images/001.jpeg ... 900.jpg   (or chest_xray_images/covid19/)\n  metadata.csv   (optional)"
    metadata_files = ("metadata.csv",)
    fetch = Repository("armiro/COVID-CXNet", "3ade488b3828705706fc5f58c0667421d8b04a01",
                       "images in chest_xray_images/covid19/; the repository also holds model checkpoints")
    dedup_rank = 90  # a collection of collections, least metadata

    def _image_dir(self) -> str:
        for cand in ("images", "chest_xray_images/covid19"):
            if (self.root / cand).is_dir():
                return cand
        self.require("images")
        return "images"

    def parse(self) -> Iterator[Record | Dropped]:
        folder = self._image_dir()
        files, junk = self.scan(folder)
        numbered = [n for n in files if _NAME.match(n)]
        if files and len(numbered) < 0.1 * len(files):  # the real collection: all; the Cohen folder: 3 of 646
            raise SourceError(f"{self.name}: {self.root / folder} does not look like the COVID-CXNet collection: "
                              "expected files named by number (001.jpeg ... 900.jpg, 446p.jpg), found "
                              f"{len(numbered)} such names of {len(files)}, others e.g. "
                              f"{sorted(set(files) - set(numbered))[:3]}. Expected the layout:\n{self.layout}")
        meta = self.read_rows("metadata.csv", _REQUIRED) if (self.root / "metadata.csv").exists() else None
        yield from junk
        by_lower = {name.lower(): name for name in files}
        by_number: dict[str, list[str]] = {}
        for name in files:
            if m := _NAME.match(name):
                by_number.setdefault(m.group("num") + m.group("flags"), []).append(name)
        rows: dict[str, tuple[str, dict]] = {}
        if meta is not None:
            yield from unparseable(meta)
            for rid, row in meta.rows:
                fname = (clean(row.get("filename")) or "").lower()
                if fname not in by_lower and len(by_number.get(fname.rsplit(".", 1)[0], [])) == 1:
                    # the row names the right number with another extension (403.jpg for 403.jpeg)
                    by_lower[fname] = by_number[fname.rsplit(".", 1)[0]][0]
                if fname not in by_lower:
                    yield Dropped(ROW_WITHOUT_FILE, source_record=rid, detail=f"no image file named {fname!r}")
                elif by_lower[fname] in rows:
                    first = rows[by_lower[fname]][0]
                    yield Dropped(DUPLICATE_ROW, source_record=rid, detail=f"{fname} already has row {first}")
                else:
                    rows[by_lower[fname]] = (rid, row)
        for name, rel in files.items():
            m = _NAME.match(name)
            flags = m.group("flags") if m else ""
            rid, row = rows.get(name, (None, {}))
            age = parse_age(clean(row.get("age")))
            pediatric, reason = pediatric_from_age(age)
            extra = extras(row, _EXTRA)
            if "p" in flags:
                extra["filename_child_mark"] = True
                if pediatric is None:
                    pediatric, reason = True, "filename"
                elif pediatric is False:
                    extra["conflict"] = f"file name marks a child but age is {age}"
            if "-" in flags:
                extra["filename_dash_mark"] = True
            pid = clean(row.get("patient_id"))
            yield Record(
                rel=rel, label="covid19", source_record=rid or rel,
                patient_id=f"covid-cxnet:{pid}" if pid else None, url=clean(row.get("url")), license=self.license,
                finding_raw=clean(row.get("label")) or "COVID-19 (collection)",
                view=normalize_view(clean(row.get("view"))), age_years=age, sex=normalize_sex(clean(row.get("sex"))),
                pediatric=pediatric, pediatric_reason=reason, extra=extra,
            )
