"""Kermany et al. pediatric pneumonia chest X-rays (Mendeley Data, doi:10.17632/rscbjbr9sj.2).

The chest X-ray half of "Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images": anterior-posterior
radiographs of children aged one to five from Guangzhou Women and Children's Medical Center. Every image is
therefore ``pediatric=True`` with ``pediatric_reason="source:kermany"``: this is the source whose children end up
as "normal" controls in adult COVID-19 sets, and the manifest has to say so.

Labels come from the class folder (``NORMAL`` -> ``normal``, ``PNEUMONIA`` -> ``pneumonia``); the organism
(``bacteria``/``virus``) from the file name goes to ``finding_raw``. The published split folder is kept in
``extra["kermany_split"]`` and is not used as the manifest's split (it is not patient-grouped).

Patient ids come from the file names: ``person1_bacteria_1`` -> ``kermany:person1``, ``IM-0115-0001`` ->
``kermany:IM-0115``, ``NORMAL2-IM-1427-0001`` -> ``kermany:NORMAL2-IM-1427`` (a separate numbering series from
``IM-1427``, so the two stay distinct). A name matching none of these still gives a record, with no patient id.

Copies in the wild, and how they are accounted for:

* the root may be the folder holding ``chest_xray/`` (Mendeley's ``CellData``) or ``chest_xray/`` itself;
* Kaggle's copy nests a duplicate ``chest_xray/chest_xray/``: a file there whose twin exists in the main tree is
  dropped as ``duplicate_row`` (detail names the twin); one without a twin is parsed like any other image;
* ``__MACOSX/`` folders hold macOS resource forks (``._x.jpeg``, not images): every file there is ``not_image``;
* other hidden files (``.DS_Store``) are skipped, as ``Source.files_in`` does;
* an image outside ``<split>/<NORMAL|PNEUMONIA>/`` has no label and is dropped as ``file_without_row``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import SourceError
from ..imageio import is_image_name
from . import register
from .base import DUPLICATE_ROW, FILE_WITHOUT_ROW, NOT_IMAGE, Dropped, ManualDownload, Record, Source, hidden_file

SPLITS = ("train", "val", "test")
_CLASSES = {"NORMAL": "normal", "PNEUMONIA": "pneumonia"}
_MACOSX = "__MACOSX"
_NESTED = "chest_xray"
# person1_bacteria_1, person1000_virus_1681
_PERSON = re.compile(r"^(?P<pid>person\d+)_(?P<kind>bacteria|virus)_\d+$", re.IGNORECASE)
# IM-0115-0001, NORMAL2-IM-1427-0001, and the rarer IM-0545-0001-0002
_IM = re.compile(r"^(?P<pid>(?:NORMAL2-)?IM-\d+)(?:-\d+)+$", re.IGNORECASE)


def patient_from_name(stem: str) -> tuple[str | None, str | None]:
    """``(patient, organism)`` from a Kermany file stem; ``(None, None)`` for a name matching no pattern.

    ``organism`` is ``bacteria``/``virus`` for pneumonia names and None for the ``IM-`` names of normals.
    """
    if m := _PERSON.match(stem):
        return m.group("pid"), m.group("kind").lower()
    if m := _IM.match(stem):
        return m.group("pid"), None
    return None, None


def _has_splits(folder: Path) -> bool:
    return any((folder / s).is_dir() for s in SPLITS)


@register
class Kermany(Source):
    """``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg``; labels from folders, patients from names."""

    name = "kermany"
    title = "Kermany et al. pediatric pneumonia chest X-rays (Labeled OCT and Chest X-Ray Images, v2)"
    homepage = "https://data.mendeley.com/datasets/rscbjbr9sj/2"
    license = "CC BY 4.0"
    layout = (
        "  chest_xray/                    (or pass chest_xray/ itself as the root)\n"
        "    train/NORMAL/IM-0115-0001.jpeg\n"
        "    train/NORMAL/NORMAL2-IM-1427-0001.jpeg\n"
        "    train/PNEUMONIA/person1_bacteria_1.jpeg\n"
        "    train/PNEUMONIA/person1_virus_6.jpeg\n"
        "    test/...  val/...            (same class folders; Mendeley v2 has no val/)"
    )
    metadata_files = ()
    fetch = ManualDownload(
        "https://data.mendeley.com/datasets/rscbjbr9sj/2",
        "ChestXRay2017.zip (Mendeley's download button; the same images are on Kaggle as chest-xray-pneumonia, "
        "which needs a login); extract it so chest_xray/ is in the folder",
        5_856, {"normal": 1_583, "pneumonia": 4_273}, archives={"ChestXRay2017.zip": None},
        # No published digest of ChestXRay2017.zip was found (issue 14 searched the stored Mendeley, Kaggle and
        # Hugging Face pages and public loaders); a made-up one would fail every honest copy.
        digest_note="Mendeley publishes no digest of ChestXRay2017.zip; the sha256 of the first copy checked is "
                    "pinned in .cxrcurate-source.json and every later check must match it")
    dedup_rank = 50  # an institution's originals, republished widely

    def parse(self) -> Iterator[Record | Dropped]:
        base = self._base()
        folders = [base]
        if base != self.root and (self.root / _MACOSX).is_dir():
            folders.append(self.root / _MACOSX)
        for folder in folders:
            for path in self._walk(folder):
                yield self._classify(path, base)

    def _base(self) -> Path:
        """The folder holding the split folders (or Kaggle's nested copy of them)."""
        outer = self.root / _NESTED
        for cand in (self.root, outer):
            if _has_splits(cand):
                return cand
        if _has_splits(outer / _NESTED):
            return outer
        self.require(_NESTED)
        raise SourceError(f"{self.name}: no train/, val/ or test/ folder in {outer}. Expected the layout:\n"
                          f"{self.layout}")

    def _walk(self, folder: Path) -> Iterator[Path]:
        """Every file under ``folder`` in a stable order; hidden ones only inside ``__MACOSX`` or named like images."""
        for dirpath, dirnames, filenames in os.walk(folder):
            in_macosx = _MACOSX in Path(dirpath).relative_to(self.root).parts
            dirnames[:] = sorted(d for d in dirnames if in_macosx or not d.startswith("."))
            for name in sorted(filenames):
                if in_macosx or not name.startswith(".") or is_image_name(name):  # hidden images are listed
                    yield Path(dirpath) / name

    def _classify(self, path: Path, base: Path) -> Record | Dropped:
        rel = self.rel(path)
        if _MACOSX in Path(rel).parts:
            return Dropped(NOT_IMAGE, rel=rel, detail="macOS resource fork in __MACOSX, not an image")
        if path.name.startswith("."):
            return hidden_file(rel)
        if not is_image_name(path.name):
            return Dropped(NOT_IMAGE, rel=rel, detail=f"suffix {path.suffix or '(none)'}")
        inner = path.relative_to(base).parts
        if len(inner) > 1 and inner[0] == _NESTED:
            twin = base.joinpath(*inner[1:])
            if twin.is_file():
                return Dropped(DUPLICATE_ROW, rel=rel, source_record=rel,
                               detail=f"Kaggle's nested copy of {self.rel(twin)}")
            inner = inner[1:]
        if len(inner) != 3 or inner[0].lower() not in SPLITS or inner[1].upper() not in _CLASSES:
            return Dropped(FILE_WITHOUT_ROW, rel=rel,
                           detail="not in <split>/NORMAL/ or <split>/PNEUMONIA/, so it has no label")
        return self._record(rel, split=inner[0].lower(), folder=inner[1].upper(), stem=path.stem)

    def _record(self, rel: str, split: str, folder: str, stem: str) -> Record:
        patient, organism = patient_from_name(stem)
        label = _CLASSES[folder]
        finding = "normal" if label == "normal" else (organism or "pneumonia")
        return Record(
            rel=rel, label=label, source_record=rel, patient_id=f"kermany:{patient}" if patient else None,
            license=self.license, finding_raw=finding, view="AP", pediatric=True,
            pediatric_reason="source:kermany", extra={"kermany_split": split},
        )
