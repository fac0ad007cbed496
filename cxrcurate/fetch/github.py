"""Sources published as GitHub repositories, fetched at a recorded commit so a manifest names its exact version.

Each repository's root is already the layout its loader reads (``metadata.csv`` + ``images/``, ``data.csv`` +
``png/``, COVID-CXNet's ``metadata.csv`` + ``chest_xray_images/covid19/``), so the archive is extracted into the
output folder as it is, minus GitHub's ``<repo>-<commit>/`` top folder. The default method downloads the
codeload zip through the polite client (resumable, size-capped, members checked); ``method="git"`` makes a
depth-1 fetch of the same commit with the ``git`` command instead, when git is installed. Either way the folder
gets a ``.cxrcurate-source.json`` (source, url, commit, fetched_utc) that ``Source.version()`` reads, and a
re-run at the same commit does nothing.

The archive itself cannot be pinned by its sha256 (codeload zips are generated on request and not promised to be
byte-stable), so the files are: when cxrcurate ships a digest list for the commit (``digests.py``), every image
file it names is checked after extraction. A file whose sha256 differs is moved to ``.cxrcurate-rejected/`` (so
the loader lists its metadata row as ``row_without_file`` instead of reading a file that is not the commit's) and,
like a listed file the archive lacks, is a failure in the report; a re-run then fetches the commit again.
``write_repository_digests`` makes a list from a folder fetched at a known commit.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from .. import __version__
from ..errors import CxrcurateError
from ..imageio import is_image_name
from ..sources import Repository, fetch_records, get_source
from .base import FetchOptions, FetchReport, check_layout, read_source_record, write_source_record
from .commits import check_commit
from .digests import digest_list_name, load_digest_list, verify_files, write_folder_digests
from .download import download, extract_archive, file_sha256, remove_tree, safe_join
from .http import HttpClient

log = logging.getLogger(__name__)

CODELOAD = "https://codeload.github.com"
GITHUB = "https://github.com"
ARCHIVE_MAX_BYTES = 8 * 2**30
REJECTED = ".cxrcurate-rejected"


def repositories() -> dict[str, Repository]:
    """The sources fetched from GitHub, by name, with the commit cxrcurate fetches (their ``fetch`` records)."""
    return fetch_records(Repository)


def _recorded_commit(out: Path) -> str | None:
    """The commit a complete earlier fetch recorded (None when none did, or its files failed their digests)."""
    record = read_source_record(out)
    return None if record.get("files_failed") else record.get("commit")


def fetch_repository(source: str, out: str | Path, client: HttpClient, options: FetchOptions, *,
                     base_url: str | None = None, method: str = "archive", commit: str | None = None,
                     repository: str | None = None) -> FetchReport:
    """Bring the repository of ``source`` at its recorded commit (or ``commit``) into ``out``.

    Args:
        source: a name in ``repositories()``.
        out: the source folder to fill (the loader's root).
        client: the polite client (archive method).
        options: ``dry_run`` only says what would be fetched.
        base_url: codeload host for the archive method, git host for the git method (tests point it elsewhere).
        method: ``archive`` (default) or ``git``.
        commit: another commit than the recorded one.
        repository: another ``owner/name`` than the recorded one (a fork a release was built from), with ``commit``.

    Raises:
        CxrcurateError: an unknown method, or ``git`` asked for but not installed.
    """
    repo = repositories()[source]
    if repository is not None and repository != repo.repo:
        if commit is None:
            raise CxrcurateError(f"fetching {source} from {repository} needs the commit to fetch; the recorded one "
                                 f"is {repo.repo}'s")
        repo = Repository(repository, check_commit(commit), repo.note)
    sha = check_commit(commit) if commit else repo.commit
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
        digest.update(check_repository_files(source, sha, out, report))
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
    report.images = sum(is_image_name(p.name) for p in out.rglob("*") if ".git" not in p.parts)
    return True


def check_repository_files(source: str, commit: str, out: Path, report: FetchReport) -> dict:
    """Check the image files in ``out`` against the digest list of ``source`` at ``commit``, if one is shipped.

    Mismatching files are moved to ``.cxrcurate-rejected/`` and reported with both digests; listed files that are
    absent are reported too. Returns the fields for ``.cxrcurate-source.json``.
    """
    digests = load_digest_list(source, commit)
    if digests is None:
        report.notes.append(f"no digest list for {source} at {commit[:12]}: image files not hash-checked (the commit "
                            "pins them; `cxrcurate fetch --source NAME --write-digests DIR` makes a list)")
        return {}
    check = verify_files(out, digests.files)
    for rel, want, got in check.mismatched:
        dest = safe_join(out, REJECTED, *rel.split("/"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        (out / rel).replace(dest)
        report.fail(str(out / rel), f"sha256 {got}, but {digests.repo} at {commit[:12]} has {want} (digest list "
                                    f"{digest_list_name(source, commit)}): not the commit's file, moved to {REJECTED}/"
                                    " so the loader lists it as missing; fetch again, and report it if it persists")
    for rel in check.missing:
        report.fail(str(out / rel), f"listed in the digest list of {digests.repo} at {commit[:12]} but not fetched; "
                                    "fetch again, and report it if it persists")
    report.notes.append(f"{check.verified} of {len(digests.files)} image files match the digest list for "
                        f"{commit[:12]} ({digests.origin})"
                        + (f"; {len(check.unlisted)} image files it does not list are not verified"
                           if check.unlisted else ""))
    return {"digest_list": digest_list_name(source, commit), "files_verified": check.verified,
            "files_failed": len(check.mismatched) + len(check.missing)}


def write_repository_digests(source: str, folder: str | Path, dest: str | Path | None = None,
                             commit: str | None = None) -> tuple[Path, int]:
    """Hash the image files of ``folder`` (``source`` fetched at a known commit) into a digest list.

    The commit is ``commit`` or the one ``.cxrcurate-source.json`` (or the folder's git checkout) records; the list
    goes to ``dest`` (default ``./<source>-<commit[:12]>.csv.gz``). Returns its path and the number of files.

    Raises:
        CxrcurateError: not a repository source, or no commit known for the folder.
    """
    import time

    if source not in repositories():
        raise CxrcurateError(f"{source} is not fetched from GitHub; digest lists are for {', '.join(repositories())}")
    folder = Path(folder)
    recorded = read_source_record(folder).get("commit") or get_source(source)(folder).version().get("commit")
    sha = check_commit(commit) if commit else check_commit(recorded, f"the commit {folder} records") if recorded \
        else None
    if not sha:
        raise CxrcurateError(f"{folder} records no commit (no .cxrcurate-source.json from `cxrcurate fetch` and no "
                             "git checkout); pass --commit SHA, the commit these files are from")
    if recorded and commit and recorded != sha:
        raise CxrcurateError(f"{folder} was fetched at {recorded}, not {commit}; a list must name the files' commit")
    repo = repositories()[source].repo
    out = Path(dest) if dest is not None else Path(digest_list_name(source, sha))
    origin = (f"sha256 of the files of a fetch of {repo} at {sha[:12]}, listed "
              f"{time.strftime('%Y-%m-%d', time.gmtime())} by cxrcurate {__version__}")
    digests = write_folder_digests(source, repo, sha, folder, out, origin)
    return out, len(digests.files)
