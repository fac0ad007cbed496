"""Sources published as GitHub repositories, fetched at a recorded commit so a manifest names its exact version.

Each repository's root is already the layout its loader reads (``metadata.csv`` + ``images/``, ``data.csv`` +
``png/``, COVID-CXNet's ``metadata.csv`` + ``chest_xray_images/covid19/``), so the archive is extracted into the
output folder as it is, minus GitHub's ``<repo>-<commit>/`` top folder. The default method downloads the
codeload zip through the polite client (resumable, size-capped, members checked); ``method="git"`` makes a
depth-1 fetch of the same commit with the ``git`` command instead, when git is installed. Either way the folder
gets a ``.cxrcurate-source.json`` (source, url, commit, fetched_utc) that ``Source.version()`` reads, and a
re-run at the same commit does nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

from ..errors import CxrcurateError
from ..sources import Repository, fetch_records
from .base import SOURCE_RECORD, FetchOptions, FetchReport, check_layout, write_source_record
from .download import download, extract_archive, file_sha256, remove_tree
from .http import HttpClient

log = logging.getLogger(__name__)

CODELOAD = "https://codeload.github.com"
GITHUB = "https://github.com"
ARCHIVE_MAX_BYTES = 8 * 2**30


def repositories() -> dict[str, Repository]:
    """The sources fetched from GitHub, by name, with the commit cxrcurate fetches (their ``fetch`` records)."""
    return fetch_records(Repository)


def _recorded_commit(out: Path) -> str | None:
    try:
        return json.loads((out / SOURCE_RECORD).read_text()).get("commit")
    except (OSError, ValueError):
        return None


def fetch_repository(source: str, out: str | Path, client: HttpClient, options: FetchOptions, *,
                     base_url: str | None = None, method: str = "archive", commit: str | None = None) -> FetchReport:
    """Bring the repository of ``source`` at its recorded commit (or ``commit``) into ``out``.

    Args:
        source: a name in ``repositories()``.
        out: the source folder to fill (the loader's root).
        client: the polite client (archive method).
        options: ``dry_run`` only says what would be fetched.
        base_url: codeload host for the archive method, git host for the git method (tests point it elsewhere).
        method: ``archive`` (default) or ``git``.
        commit: another commit than the recorded one.

    Raises:
        CxrcurateError: an unknown method, or ``git`` asked for but not installed.
    """
    repo = repositories()[source]
    sha = commit or repo.commit
    out = Path(out)
    report = FetchReport(source, out, dry_run=options.dry_run)
    if method not in ("archive", "git"):
        raise CxrcurateError(f"unknown fetch method {method!r}; use 'archive' or 'git'")
    if method == "git":
        url = f"{(base_url or GITHUB).rstrip('/')}/{repo.repo}.git"
    else:
        url = f"{(base_url or CODELOAD).rstrip('/')}/{repo.repo}/zip/{sha}"
    if _recorded_commit(out) == sha:
        report.skipped[f"already at commit {sha[:12]}"] += 1
        return report
    if options.dry_run:
        report.notes.append(f"would fetch {url} (commit {sha}) into {out}")
        return report
    expected = repo.sha256 if sha == repo.commit else None
    fetched = (_git_fetch(url, sha, out, report) if method == "git"
               else _archive_fetch(client, url, out, report, expected))
    if fetched:  # refused archive members are failures in the report, but the rest is this commit
        digest = {"archive_sha256": fetched} if isinstance(fetched, str) else {}
        write_source_record(out, source, f"{GITHUB}/{repo.repo}", commit=sha, method=method, **digest)
        check_layout(source, out, report)
    return report


def _archive_fetch(client: HttpClient, url: str, out: Path, report: FetchReport, sha256: str | None) -> str | bool:
    """Download and extract the codeload zip; its sha256 (checked when the record has one) or False."""
    tmp = out / ".cxrcurate-download"
    archive = tmp / (url.rstrip("/").rsplit("/", 1)[-1] + ".zip")
    try:
        download(client, url, archive, max_bytes=ARCHIVE_MAX_BYTES, sha256=sha256)
        digest = file_sha256(archive)
        result = extract_archive(archive, out, strip=1)
    except CxrcurateError as exc:
        report.fail(url, str(exc))
        return False
    except OSError as exc:
        report.fail(url, f"could not write into {out}: {exc}")
        return False
    for name, why in result.refused:
        report.fail(f"{url} member {name!r}", f"refused: {why}")
    from ..imageio import is_image_name

    report.images = sum(is_image_name(p.name) for p in result.files)
    report.notes.append(f"{len(result.files)} files extracted; archive sha256 {digest}"
                        + (" (verified)" if sha256 else " (recorded in .cxrcurate-source.json)"))
    remove_tree(tmp)
    return digest


def _git_fetch(url: str, sha: str, out: Path, report: FetchReport) -> bool:
    git = shutil.which("git")
    if git is None:
        raise CxrcurateError("method 'git' needs the git command, which is not installed; use the archive method")
    if out.exists() and any(p.name not in (".cache", "fetch-log.jsonl") for p in out.iterdir()) \
            and not (out / ".git").exists():
        report.fail(str(out), "not empty and not a git checkout; give an empty folder for the git method")
        return False
    out.mkdir(parents=True, exist_ok=True)
    steps = [[git, "init", "-q"], [git, "fetch", "-q", "--depth", "1", url, sha],
             [git, "checkout", "-q", "--detach", "FETCH_HEAD"]]
    for cmd in steps:
        proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
        if proc.returncode != 0:
            report.fail(url, f"`{' '.join(cmd[1:])}` failed: {proc.stderr.strip()[-500:]}")
            return False
    from ..imageio import is_image_name

    report.images = sum(is_image_name(p.name) for p in out.rglob("*") if ".git" not in p.parts)
    return True
