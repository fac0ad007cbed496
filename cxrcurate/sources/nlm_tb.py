"""The NLM tuberculosis chest X-ray sets: Shenzhen and Montgomery County (Jaeger et al., 2014).

Both sets share one layout and one loader (``NlmTbSource``); the subclasses only say how their clinical readings
and lung masks are written.

* ``CXR_png/<PREFIX>_<nnnn>_<t>.png``: one PA radiograph per patient; ``t`` is 0 for normal (label ``normal``)
  and 1 for tuberculosis (label ``other``: TB is a finding outside the pneumonia/COVID-19 classes);
  ``finding_raw`` is ``normal``/``tuberculosis``. A name without that pattern gets label ``unknown``.
* ``ClinicalReadings/<stem>.txt``: sex, age and the radiologist's reading. The text of the reading (the lines
  that are not sex/age) goes to ``extra["reading"]``, and the reading file's path becomes the record's
  ``source_record`` (it is the metadata "row" of the image; an image without one uses its own path). A
  reading without its image is dropped as ``row_without_file``; an image without a reading still gives a
  record, with age and sex unknown.
* lung masks: ``mask_rels`` holds their paths inside the source (Montgomery: ``[left, right]``); a mask without
  its image is dropped as ``mask_without_image``.

The root may be the set's own folder or the folder that holds it (``MontgomerySet/``, ``ChinaSet_AllFiles/``).
Non-image files in image and mask folders (``Thumbs.db``), non-``.txt`` files among the readings and loose files
beside the folders (the NLM ReadMe) are dropped as ``not_image`` (a loose image as ``file_without_row``); other
folders are not read; hidden files are skipped, as ``Source.files_in`` does.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from ..errors import ParseError
from ..imageio import is_image_name, read_regular
from ..labels import normalize_sex, parse_age, pediatric_from_age
from . import register
from .base import (
    FILE_WITHOUT_ROW,
    MASK_WITHOUT_IMAGE,
    NOT_IMAGE,
    ROW_WITHOUT_FILE,
    DirectDownload,
    Dropped,
    Record,
    Source,
)

# The archive URLs are the ones NLM's download page links and that public loaders use (torchxrayvision's tests,
# tensorflow-datasets builders, many READMEs). No published digest of either archive was found (issue 14 searched
# the public loaders and stored pages), so none is written here: a made-up digest would fail every honest download.
_NO_DIGEST = ("NLM publishes no sha256 for this archive; the digest of the copy fetched is recorded in "
              ".cxrcurate-source.json and checked on every later fetch into the same folder")
_NLM_TERMS = ("NLM's readme asks users not to share the set outside their research group, to report errors, and to "
              "cite Jaeger et al. 2014")
_IMAGES = "CXR_png"
_READINGS = "ClinicalReadings"
_FINDINGS = {"0": ("normal", "normal"), "1": ("other", "tuberculosis")}  # digit -> (label, finding_raw)


def _read_text(path: Path) -> str:
    """A reading's text: UTF-8 (with BOM) if it decodes, else Windows-1252 (some files carry stray bytes)."""
    data = read_regular(path, max_bytes=2**20)  # a reading is a few lines; a FIFO or a huge file is refused
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _join(lines: list[str]) -> str | None:
    text = "\n".join(s for line in lines if (s := line.strip()))
    return text or None


class NlmTbSource(Source):
    """What the two NLM TB sets share: the ``CXR_png``/``ClinicalReadings`` layout, labels, ids, accounting.

    Subclasses set ``prefix`` (``CHNCXR``/``MCUCXR``) and ``wrappers`` (the set's own folder name, so its parent
    can be the root too) and implement ``read_reading`` and ``mask_files``.
    """

    homepage = "https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets"
    license = "public domain (NLM), cite Jaeger et al. 2014"
    metadata_files = ()
    prefix: ClassVar[str]
    wrappers: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def read_reading(self, text: str) -> tuple[str | None, str | None, str | None]:
        """``(sex, age, reading)`` as written in a clinical-reading file (raw, not yet normalised)."""

    @abstractmethod
    def mask_files(self, base: str) -> Iterator[tuple[str, str] | Dropped]:
        """``(image stem, mask path)`` for every mask under ``base`` (in ``mask_rels`` order), or ``Dropped``."""

    def base(self) -> str:
        """The set's folder inside the root, as a prefix for paths (``""`` when the root is the set itself)."""
        for wrapper in self.wrappers:
            if not (self.root / _IMAGES).is_dir() and (self.root / wrapper / _IMAGES).is_dir():
                return f"{wrapper}/"
        return ""

    def parse(self) -> Iterator[Record | Dropped]:
        base = self.base()
        self.require(base + _IMAGES)
        files = self.files_in(base + _IMAGES)
        yield from self.drop_non_images(files)
        images = [(Path(n).stem, rel) for n, rel in files.items() if is_image_name(n)]
        readings: dict[str, str] = {}
        if (self.root / base / _READINGS).is_dir():
            for name, rel in self.files_in(base + _READINGS).items():
                if name.lower().endswith(".txt"):
                    readings[Path(name).stem] = rel
                else:
                    yield Dropped(NOT_IMAGE, rel=rel, detail="not a clinical reading (.txt) nor an image")
        masks: dict[str, list[str]] = {}
        for item in self.mask_files(base):
            if isinstance(item, Dropped):
                yield item
            else:
                masks.setdefault(item[0], []).append(item[1])
        for name, rel in self.files_in(base or ".").items():  # loose files beside the folders: the ReadMe
            yield Dropped(FILE_WITHOUT_ROW if is_image_name(name) else NOT_IMAGE, rel=rel,
                          detail=f"outside {_IMAGES}/, {_READINGS}/ and the mask folders")
        stems = {stem for stem, _ in images}
        for stem, rel in images:
            yield self._record(stem, rel, readings.get(stem), masks.get(stem, []))
        for stem, rel in readings.items():
            if stem not in stems:
                yield Dropped(ROW_WITHOUT_FILE, rel=rel, source_record=rel, detail="clinical reading without image")
        for stem, rels in masks.items():
            if stem not in stems:
                for rel in rels:
                    yield Dropped(MASK_WITHOUT_IMAGE, rel=rel, detail=f"no {base}{_IMAGES}/{stem}.png")

    def _record(self, stem: str, rel: str, reading_rel: str | None, mask_rels: list[str]) -> Record:
        m = re.match(rf"^(?P<case>{self.prefix}_\d+)_(?P<tb>[01])$", stem, re.IGNORECASE)
        label, finding = _FINDINGS[m.group("tb")] if m else ("unknown", None)
        sex = age = reading = None
        unread = None
        if reading_rel is not None:
            try:
                sex, age, reading = self.read_reading(_read_text(self.root / reading_rel))
            except ParseError as exc:  # the image and its label stand without the reading; the cause is kept
                unread = str(exc)
        age_years = parse_age(age)
        pediatric, reason = pediatric_from_age(age_years)
        return Record(
            rel=rel, label=label, source_record=reading_rel or rel,
            patient_id=f"{self.name}:{m.group('case').upper()}" if m else None, license=self.license,
            finding_raw=finding, view="PA", age_years=age_years, sex=normalize_sex(sex), pediatric=pediatric,
            pediatric_reason=reason, mask_rels=list(mask_rels),
            extra={"reading": reading} if reading else {"reading_unreadable": unread} if unread else {},
        )

    def _masks_in(self, folder: str, suffix: str = "") -> Iterator[tuple[str, str] | Dropped]:
        """The masks directly in ``folder`` (if it exists), keyed by image stem (``suffix`` removed)."""
        if not (self.root / folder).is_dir():
            return
        files = self.files_in(folder)
        yield from self.drop_non_images(files)
        for name, rel in files.items():
            if is_image_name(name):
                stem = Path(name).stem
                yield (stem[: -len(suffix)] if suffix and stem.endswith(suffix) else stem), rel


_MCU_FIELD = re.compile(r"^\s*patient'?s\s+(?P<key>sex|age)\s*:\s*(?P<value>.*?)\s*$", re.IGNORECASE)


@register
class Montgomery(NlmTbSource):
    """Montgomery County (Maryland) TB screening set: 138 PA images, readings with sex/age lines, lung masks."""

    name = "montgomery"
    title = "Montgomery County chest X-ray set (NLM tuberculosis image data sets)"
    prefix = "MCUCXR"
    wrappers = ("MontgomerySet",)
    layout = (
        "  CXR_png/MCUCXR_0001_0.png            (_0 normal, _1 tuberculosis)\n"
        "  ClinicalReadings/MCUCXR_0001_0.txt   (\"Patient's Sex: M\", \"Patient's Age: 047Y\", then the reading)\n"
        "  ManualMask/leftMask/MCUCXR_0001_0.png\n"
        "  ManualMask/rightMask/MCUCXR_0001_0.png"
    )
    fetch = DirectDownload(
        "https://openi.nlm.nih.gov/imgs/collections/NLM-MontgomeryCXRSet.zip",
        "the Montgomery County set (NLM-MontgomeryCXRSet.zip), extracted", None, 138, {"normal": 80, "other": 58},
        sha256_note=_NO_DIGEST, terms=_NLM_TERMS)
    dedup_rank = 40  # an institution's originals

    def read_reading(self, text: str) -> tuple[str | None, str | None, str | None]:
        fields: dict[str, str] = {}
        rest: list[str] = []
        for line in text.splitlines():
            if m := _MCU_FIELD.match(line):
                fields[m.group("key").lower()] = m.group("value")
            else:
                rest.append(line)
        return fields.get("sex"), fields.get("age"), _join(rest)

    def mask_files(self, base: str) -> Iterator[tuple[str, str] | Dropped]:
        for side in ("leftMask", "rightMask"):
            yield from self._masks_in(f"{base}ManualMask/{side}")


# "male 35yrs", "female 9yrs", "Male 35 yrs", "male 35yr", "female 1yrs"; text after the age is reading.
_CHN_FIRST = re.compile(
    r"^\s*(?P<sex>female|male|f|m)(?![a-z])[\s,:]*"
    r"(?:(?P<age>\d+(?:\.\d+)?(?:\s*(?:years?|yrs?|y|months?|mos?))?)(?![\w.]))?[\s.,;]*(?P<rest>.*)$",
    re.IGNORECASE,
)


@register
class Shenzhen(NlmTbSource):
    """Shenzhen No.3 People's Hospital TB set: 662 PA images, readings opening with sex and age, lung masks."""

    name = "shenzhen"
    title = "Shenzhen chest X-ray set (NLM tuberculosis image data sets)"
    prefix = "CHNCXR"
    wrappers = ("ChinaSet_AllFiles",)
    mask_folders: ClassVar[tuple[str, ...]] = ("mask", "masks")
    layout = (
        "  CXR_png/CHNCXR_0001_0.png            (_0 normal, _1 tuberculosis)\n"
        "  ClinicalReadings/CHNCXR_0001_0.txt   (first line \"male 35yrs\", then the reading)\n"
        "  mask/CHNCXR_0001_0_mask.png          (optional, Kaggle's lung masks; masks/ also accepted)"
    )
    fetch = DirectDownload(
        "https://openi.nlm.nih.gov/imgs/collections/ChinaSet_AllFiles.zip",
        "the Shenzhen set (ChinaSet_AllFiles.zip), extracted", None, 662, {"normal": 326, "other": 336},
        sha256_note=_NO_DIGEST, terms=_NLM_TERMS)
    dedup_rank = 30  # an institution's originals

    def read_reading(self, text: str) -> tuple[str | None, str | None, str | None]:
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines or not (m := _CHN_FIRST.match(lines[0])):
            return None, None, _join(lines)
        return m.group("sex"), m.group("age"), _join([m.group("rest"), *lines[1:]])

    def mask_files(self, base: str) -> Iterator[tuple[str, str] | Dropped]:
        for folder in self.mask_folders:
            yield from self._masks_in(base + folder, suffix="_mask")
