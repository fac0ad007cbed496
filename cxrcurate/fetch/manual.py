"""Sources that need a person: a login, a click-through or a terms page stands before the files.

``fetch`` does not script around those; it raises ``ManualDownloadRequired`` with the official location, what to
download, and the folder layout the loader reads. ``check_download`` then verifies what the person put on disk
(``cxrcurate fetch --source kermany --check PATH``): it runs the loader, counts the images per label against the
published counts, and says what is missing or misplaced.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import CxrcurateError, ManualDownloadRequired
from ..sources import DirectDownload, ManualDownload, fetch_records, get_source
from ..sources.base import Dropped, Record


def manual_sources() -> dict[str, ManualDownload]:
    """The sources a person downloads, by name, with where and what (their ``fetch`` records)."""
    return fetch_records(ManualDownload)


def manual_download(source: str, out: str | Path) -> ManualDownloadRequired:
    """The error ``fetch`` raises for a manual source: where to go, what to get, where to put it, how to check."""
    info = manual_sources()[source]
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

    Works for any registered source; counts are compared only where its ``ManualDownload`` or ``DirectDownload``
    records them.
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
    info = manual_sources().get(source) or fetch_records(DirectDownload).get(source)
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
