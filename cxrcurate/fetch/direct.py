"""Sources published as one archive behind a plain URL (the NLM TB sets): download, check the sha256, extract.

The archive goes through the polite client (resumable, size-capped). Its sha256 is checked against the publisher's
digest when the source's record has one; when it has none, the digest of the copy fetched is recorded in
``.cxrcurate-source.json`` and a later fetch into the same folder must match it (the file behind the URL is meant
to be stable; a change is reported, not silently accepted). The archive is then extracted member by member (no
absolute paths, ``..`` or links) and the loader is asked whether it can read the result.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CxrcurateError
from ..imageio import is_image_name
from ..sources import DirectDownload, fetch_records
from .base import FetchOptions, FetchReport, check_layout, read_source_record, write_source_record
from .download import download, extract_archive, file_sha256, remove_tree
from .http import HttpClient

ARCHIVE_MAX_BYTES = 16 * 2**30


def direct_sources() -> dict[str, DirectDownload]:
    """The sources fetched as one archive, by name (their ``fetch`` records)."""
    return fetch_records(DirectDownload)


def _recorded(out: Path) -> dict:
    return read_source_record(out)


def fetch_direct(source: str, out: str | Path, client: HttpClient, options: FetchOptions, *,
                 base_url: str | None = None) -> FetchReport:
    """Bring the archive of ``source`` into ``out``, hash-checked, and extract it.

    Args:
        source: a name in ``direct_sources()``.
        out: the source folder (the loader's root).
        client: the polite client.
        options: ``dry_run`` only says what would be fetched.
        base_url: another scheme+host for the archive URL (tests use 127.0.0.1); the path stays the same.
    """
    from urllib.parse import urlsplit

    spec = direct_sources()[source]
    out = Path(out)
    report = FetchReport(source, out, dry_run=options.dry_run)
    url = spec.url if base_url is None else base_url.rstrip("/") + urlsplit(spec.url).path
    previous = _recorded(out)
    # a digest recorded by an earlier fetch binds later ones only when that fetch passed every check
    expected = spec.sha256 or (previous.get("archive_sha256") if previous.get("complete") else None)
    if previous.get("url") == spec.url and previous.get("archive_sha256") and previous.get("complete"):
        report.skipped[f"already fetched (archive sha256 {previous['archive_sha256'][:12]}...)"] += 1
        return report
    if options.dry_run:
        report.notes.append(f"would fetch {url} into {out}"
                            + ("" if spec.sha256 else f" (no published sha256: {spec.sha256_note})"))
        return report
    if spec.terms:
        report.notes.append(f"terms: {spec.terms}")
    tmp = out / ".cxrcurate-download"
    archive = tmp / Path(urlsplit(spec.url).path).name
    try:
        download(client, url, archive, sha256=expected, max_bytes=ARCHIVE_MAX_BYTES)
        digest = file_sha256(archive)
        result = extract_archive(archive, out, strip=spec.strip)
    except CxrcurateError as exc:
        report.fail(url, str(exc) + ("" if spec.sha256 or not expected else
                                     " (the digest recorded by an earlier fetch into this folder)"))
        return report
    for name, why in result.refused:
        report.fail(f"{url} member {name!r}", f"refused: {why}")
    report.notes.append(f"{len(result.files)} files extracted; archive sha256 {digest}"
                        + (" (verified against the published digest)" if spec.sha256 else
                           f" (not verified: {spec.sha256_note})"))
    report.images = sum(is_image_name(p.name) for p in result.files)
    remove_tree(tmp)
    write_source_record(out, source, spec.url, archive_sha256=digest, sha256_verified=bool(spec.sha256),
                        complete=False)
    failures = len(report.failed)
    check_layout(source, out, report)
    if not result.refused and len(report.failed) == failures:  # only a copy that passed every check is complete
        write_source_record(out, source, spec.url, archive_sha256=digest, sha256_verified=bool(spec.sha256),
                            complete=True)
    return report
