"""Sources that need a person: a login, a click-through or a terms page stands before the files.

``fetch`` does not script around those; it raises ``ManualDownloadRequired`` with the official location, what to
download, and the folder layout the loader reads. ``check_download`` then verifies what the person put on disk
(``cxrcurate fetch --source kermany --check PATH``): it hashes the downloaded archives found in ``PATH`` against the
publisher's digests (NIH's MD5s) or, where none is published, against the sha256 the first check recorded in
``.cxrcurate-source.json`` ("first copy pinned", as for the NLM archives); it runs the loader, counts the images
per label against the published counts, and says what is missing or misplaced.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import CxrcurateError, ManualDownloadRequired, UsageError
from ..sources import DirectDownload, ManualDownload, Repository, fetch_records, get_source
from ..sources.base import Dropped, Record
from .base import read_source_record, update_source_record
from .commits import check_commit
from .digests import digest_list_name, load_digest_list, verify_files
from .download import file_digests


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
    records them, archives are hashed where its ``ManualDownload`` names them, and a repository source's image
    files are checked against the digest list of the commit its folder records, when cxrcurate ships one.
    """
    cls = get_source(source)
    lines: list[str] = []
    spec = manual_sources().get(source)
    try:
        items = list(cls(path).parse())
    except CxrcurateError as exc:
        _, archive_lines = check_archives(source, path, spec, pin=False) if spec else check_repository(source, path)
        return CheckResult(False, [f"{source} at {path}: {exc}", *archive_lines])
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
    # an archive without a published digest is pinned only from a copy that passed every other check: a truncated
    # first download must not lock out the complete one
    archives_ok, archive_lines = check_archives(source, path, spec, pin=ok) if spec else check_repository(source, path)
    lines += archive_lines
    ok = ok and archives_ok
    lines.append("  OK: complete" if ok else "  INCOMPLETE: see above; the expected layout is:\n" + cls.layout)
    return CheckResult(ok, lines)


def check_archives(source: str, path: str | Path, spec: ManualDownload, pin: bool = True) -> tuple[bool, list[str]]:
    """Hash the archives of ``spec`` found in ``path``: ``(ok, lines)``.

    An archive with a published digest must match it; every archive's sha256 is recorded in the folder's
    ``.cxrcurate-source.json`` the first time it is checked, and a later check must match that record. With
    ``pin=False`` (the rest of the check failed: images missing, the layout wrong) an archive without a published
    digest is hashed and shown but not recorded, so the next, complete copy is not refused. A mismatch
    names the file, both digests and the fix. An archive not in ``path`` is listed as not checked (the person may
    have deleted it after extracting), which is not a failure.
    """
    path = Path(path)
    if not spec.archives or not path.is_dir():
        return True, []
    record = read_source_record(path)
    pinned: dict = record.get("archives") if isinstance(record.get("archives"), dict) else {}
    ok, lines, absent, changed = True, [], [], False
    for name, published in spec.archives.items():
        file = path / name
        if not file.is_file():
            absent.append(name)
            continue
        algorithm, _, want = (published or "").partition(":")
        got = file_digests(file, ["sha256", *([algorithm] if published else [])])
        before = pinned.get(name) if isinstance(pinned.get(name), dict) else {}
        fix = f"download it again from {spec.url} and run the check again"
        if published and got[algorithm] != want.lower():
            ok = False
            lines.append(f"  {file}: {algorithm} {got[algorithm]} but the publisher's is {want} ({spec.digest_note}):"
                         f" the file is incomplete or damaged; {fix}")
        elif before.get("sha256") and before["sha256"] != got["sha256"]:
            ok = False
            lines.append(f"  {file}: sha256 {got['sha256']} but {before['sha256']} when first checked "
                         f"({before.get('checked_utc', 'earlier')}): the file changed; {fix}")
        else:
            how = (f"{algorithm} matches the published digest" if published else
                   "matches the sha256 recorded by the first check" if before.get("sha256") else
                   "recorded in .cxrcurate-source.json (no published digest; later checks must match it)")
            if not before.get("sha256") and not published and not pin:
                how = ("not recorded: the copy is incomplete (see above); the archive of a complete copy is recorded "
                       "by the check that finds it complete")
            lines.append(f"  {name}: sha256 {got['sha256']} ({how})")
            if not before.get("sha256") and (published or pin):
                pinned[name] = {"sha256": got["sha256"], "size": file.stat().st_size,
                                "verified": f"{algorithm} (published)" if published else False,
                                "checked_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                changed = True
    if changed:
        fields = {} if record else {"source": source, "url": spec.url}
        update_source_record(path, **fields, archives=pinned)
    if absent:
        lines.append(f"  not in {path}, so not hashed: {', '.join(absent)} (keep the downloaded archives there to "
                     "have them checked)")
    return ok, lines


def check_repository(source: str, path: str | Path) -> tuple[bool, list[str]]:
    """Check a repository source's image files against the digest list of its recorded commit: ``(ok, lines)``."""
    if source not in fetch_records(Repository):
        return True, []
    commit = read_source_record(Path(path)).get("commit")
    if commit is not None:
        try:
            commit = check_commit(str(commit), f"{Path(path) / '.cxrcurate-source.json'}: the recorded commit")
        except UsageError as exc:
            return False, [f"  {exc}; the record was edited or damaged: fetch the source again"]
    digests = load_digest_list(source, commit) if commit else None
    if digests is None:
        return True, [f"  files not hash-checked: no digest list for {source} at "
                      f"{commit[:12] if commit else 'an unrecorded commit'}"]
    check = verify_files(path, digests.files)
    lines = [f"  {check.verified} of {len(digests.files)} image files match {digest_list_name(source, commit)}"
             + (f" ({len(check.unlisted)} not listed, not verified)" if check.unlisted else "")]
    lines += [f"  {Path(path) / rel}: sha256 {got}, but {digests.repo} at {commit[:12]} has {want}; fetch again"
              for rel, want, got in check.mismatched]
    if check.missing:
        lines.append(f"  {len(check.missing)} listed files missing (e.g. {'; '.join(check.missing[:5])}); fetch again")
    return check.ok, lines
