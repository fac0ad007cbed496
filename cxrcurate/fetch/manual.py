"""Sources that need a person: a login, a click-through or a terms page stands before the files.

``fetch`` does not script around those; it raises ``ManualDownloadRequired`` with the official location, what to
download, and the folder layout the loader reads. ``check_download`` then verifies what the person put on disk
(``cxrcurate fetch --source kermany --check PATH``): it runs the loader, counts the images per label against the
published counts, and says what is missing or misplaced.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CxrcurateError, ManualDownloadRequired
from ..sources import get_source
from ..sources.base import Dropped, Record


@dataclass(frozen=True)
class ManualSource:
    """Where a person downloads a source and what a complete copy holds (published counts, as data)."""

    url: str
    what: str
    images: int
    by_label: dict[str, int] = field(default_factory=dict)
    metadata: tuple[str, ...] = ()


MANUAL: dict[str, ManualSource] = {
    "nih-cxr14": ManualSource(
        "https://nihcc.app.box.com/v/ChestXray-NIHCC",
        "Data_Entry_2017_v2020.csv and the twelve images_001.tar.gz ... images_012.tar.gz archives (Box asks to "
        "accept its terms; extract each archive in the folder)",
        112_120, metadata=("Data_Entry_2017_v2020.csv",)),
    "kermany": ManualSource(
        "https://data.mendeley.com/datasets/rscbjbr9sj/2",
        "ChestXRay2017.zip (Mendeley's download button; the same images are on Kaggle as chest-xray-pneumonia, "
        "which needs a login); extract it so chest_xray/ is in the folder",
        5_856, {"normal": 1_583, "pneumonia": 4_273}),
    "shenzhen": ManualSource(
        "https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets",
        "the Shenzhen set (ChinaSet_AllFiles.zip) from the NLM download page; extract it",
        662, {"normal": 326, "other": 336}),
    "montgomery": ManualSource(
        "https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets",
        "the Montgomery County set (NLM-MontgomeryCXRSet.zip) from the NLM download page; extract it",
        138, {"normal": 80, "other": 58}),
}


def manual_download(source: str, out: str | Path) -> ManualDownloadRequired:
    """The error ``fetch`` raises for a manual source: where to go, what to get, where to put it, how to check."""
    info = MANUAL[source]
    layout = get_source(source).layout
    return ManualDownloadRequired(
        f"{source} cannot be fetched automatically (the site asks for a login or a click-through).\n"
        f"  1. Open {info.url}\n  2. Download {info.what}.\n  3. Put it in {out} so that it reads:\n{layout}\n"
        f"  4. Check it: cxrcurate fetch --source {source} --check {out}")


@dataclass
class CheckResult:
    """What ``check_download`` found: ``ok`` and the lines to show."""

    ok: bool
    lines: list[str]


def check_download(source: str, path: str | Path) -> CheckResult:
    """Verify a manual download: the layout, the image count per label, and files or rows the loader left out.

    Works for any registered source; the counts are compared only where ``MANUAL`` records them.
    """
    cls = get_source(source)
    lines: list[str] = []
    try:
        items = list(cls(path).parse())
    except CxrcurateError as exc:
        return CheckResult(False, [f"{source} at {path}: {exc}"])
    records = [i for i in items if isinstance(i, Record)]
    dropped = [i for i in items if isinstance(i, Dropped)]
    labels = Counter(r.label for r in records)
    lines.append(f"{source} at {path}: {len(records):,} images ("
                 + ", ".join(f"{k} {v:,}" for k, v in sorted(labels.items())) + f"), {len(dropped):,} left out")
    ok = True
    info = MANUAL.get(source)
    if info is not None:
        if len(records) != info.images:
            ok = False
            lines.append(f"  expected {info.images:,} images, found {len(records):,}"
                         f" ({info.images - len(records):,} missing)" if len(records) < info.images else
                         f"  expected {info.images:,} images, found {len(records):,} (more than published)")
        for label, n in sorted(info.by_label.items()):
            if labels.get(label, 0) != n:
                ok = False
                lines.append(f"  {label}: expected {n:,}, found {labels.get(label, 0):,}")
    by_reason = Counter(d.reason for d in dropped)
    for reason, n in sorted(by_reason.items()):
        examples = [d.detail or d.rel or d.source_record for d in dropped if d.reason == reason][:5]
        lines.append(f"  {reason}: {n:,} (e.g. {'; '.join(str(e) for e in examples)})")
        if reason == "row_without_file":
            ok = False
    lines.append("  OK: complete" if ok else "  INCOMPLETE: see above; the expected layout is:\n" + cls.layout)
    return CheckResult(ok, lines)
