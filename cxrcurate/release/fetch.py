"""Fetch what a release needs: every repository at the commit the release names, into the layout it names.

A release row names its file three ways: ``path`` (``<source>/<repo_path>``, relative to the user's data root),
``repository`` (``owner/name`` on GitHub) and ``commit``. ``fetch_release`` reads those columns from the release
table itself (the card's "pinned commits" table is rendered from the same columns), fetches each repository at its
commit into ``ROOT/<source>`` with the same code as ``cxrcurate fetch --source`` (codeload zip or git, resumable,
members checked), and then checks every file against the release's ``file_sha256`` (``verify_release``). The
repository a release names wins over the one a source's record pins: release v1's Cohen rows come from the fork
``s-mostafa-a/covid-chestxray-dataset`` at ``173779df`` (see docs/sources.md, "The Cohen record").
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CxrcurateError, UnknownNameError, did_you_mean
from ..fetch.base import FetchOptions, FetchReport, read_source_record
from ..fetch.github import fetch_repository, repositories
from ..fetch.http import HttpClient, HttpConfig
from .verify import VerifyReport, _table, verify_release

COLUMNS = ("source", "path", "repository", "commit", "repo_path")


@dataclass(frozen=True)
class ReleaseRepository:
    """One repository a release needs: which source folder it fills, from where, at which commit, how many files."""

    source: str
    repository: str
    commit: str
    files: int


@dataclass
class ReleaseFetch:
    """What ``fetch_release`` did: one ``FetchReport`` per repository, then the check against the release."""

    root: Path
    repositories: list[ReleaseRepository]
    reports: list[FetchReport] = field(default_factory=list)
    verify: VerifyReport | None = None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports) and (self.verify is None or self.verify.ok)

    def summary(self) -> str:
        """The lines the CLI prints: each fetch, then the verification (or what to run when it was skipped)."""
        lines = [r.summary() for r in self.reports]
        if self.verify is not None:
            lines.append(self.verify.to_text())
        return "\n".join(lines)


def release_repositories(release: str | os.PathLike) -> list[ReleaseRepository]:
    """The repositories a release's rows come from, one per source, read from the release table.

    Raises:
        CxrcurateError: the release lacks the columns, names two commits for one source, or lays a file out other
            than ``<source>/<repo_path>``; or a source is not one cxrcurate fetches from GitHub.
    """
    df = _table(release)
    missing = [c for c in COLUMNS if c not in df.columns or df[c].isna().all()]  # a foreign table: absent = null
    if missing:
        raise CxrcurateError(f"release {release}: its table has no column(s) {missing}; it does not name where its "
                             "files come from, so it cannot be fetched (fetch each source with `cxrcurate fetch "
                             "--source NAME`)")
    odd = df[df["path"] != df["source"] + "/" + df["repo_path"]]
    if len(odd):
        row = odd.iloc[0]
        raise CxrcurateError(f"release {release}: row {row['path']} is not laid out as <source>/<repo_path> "
                             f"({row['source']}/{row['repo_path']}); fetch --release only fills that layout")
    known = repositories()
    out = []
    for source, rows in df.groupby("source", sort=True):
        pins = rows[["repository", "commit"]].drop_duplicates()
        if len(pins) != 1:
            raise CxrcurateError(f"release {release}: source {source} names {len(pins)} repository/commit pairs "
                                 f"({pins.to_dict('records')}); one folder holds one commit")
        if source not in known:
            raise CxrcurateError(f"release {release}: source {source} is not fetched from GitHub by cxrcurate "
                                 f"(repository sources: {', '.join(known)})")
        out.append(ReleaseRepository(str(source), str(pins["repository"].iloc[0]), str(pins["commit"].iloc[0]),
                                     len(rows)))
    return out


def fetch_release(release: str | os.PathLike, root: str | os.PathLike, *, sources: list[str] | None = None,
                  base_url: str | None = None, method: str = "archive", config: HttpConfig | None = None,
                  progress: bool = True, dry_run: bool = False) -> ReleaseFetch:
    """Fetch every repository ``release`` needs into ``root/<source>`` at the release's commits, then verify.

    Args:
        release: a release folder (``manifests/v1``).
        root: the data root to fill (one folder per source); then ``cxrcurate materialise --root ROOT`` works.
        sources: only these sources (default: all the release names).
        base_url: codeload (or git) host; tests point it at 127.0.0.1.
        method: ``archive`` (default) or ``git``, as ``cxrcurate fetch --method``.
        config: the polite client's settings (default ``HttpConfig()``).
        progress: show progress bars.
        dry_run: say what would be fetched; fetch and verify nothing.

    Raises:
        CxrcurateError: the release cannot be read or fetched (see ``release_repositories``).
        UnknownNameError: a name in ``sources`` is not a source of the release.
    """
    root = Path(root)
    needed = release_repositories(release)
    if sources:
        names = [r.source for r in needed]
        for s in sources:
            if s not in names:
                raise UnknownNameError(f"release {release}: {did_you_mean(s, names, 'source')}")
        needed = [r for r in needed if r.source in sources]
    result = ReleaseFetch(root, needed)
    cfg = dataclasses.replace(config or HttpConfig())
    cfg.cache_dir = cfg.cache_dir or root / ".cache" / "http"
    cfg.log_path = cfg.log_path or root / "fetch-log.jsonl"
    options = FetchOptions(dry_run=dry_run, progress=progress)
    with HttpClient(cfg) as client:
        for need in needed:
            out = root / need.source
            clash = _other_copy(out, need)
            if clash:
                report = FetchReport(need.source, out, dry_run=dry_run)
                report.fail(str(out), clash)
            else:
                report = fetch_repository(need.source, out, client, options, base_url=base_url, method=method,
                                          commit=need.commit, repository=need.repository)
            result.reports.append(report)
    if not dry_run:
        result.verify = _only(verify_release(release, root), {r.source for r in needed}, release)
    return result


def _other_copy(out: Path, need: ReleaseRepository) -> str | None:
    """Why ``out`` cannot be filled for ``need``: it holds another repository or commit (None when it can)."""
    record = read_source_record(out)
    if not record or not record.get("commit"):
        return None
    have_repo = str(record.get("url", "")).rstrip("/").split("github.com/")[-1]
    if record["commit"] == need.commit and have_repo in (need.repository, ""):
        return None
    return (f"holds {have_repo or record.get('source')} at {str(record['commit'])[:12]} (its .cxrcurate-source.json), "
            f"but the release needs {need.repository} at {need.commit[:12]}; move the folder away (or give another "
            "--out) and run again: files of two commits must not mix")


def _only(report: VerifyReport, sources: set[str], release: Any) -> VerifyReport:
    """``report`` restricted to the rows of ``sources`` (a fetch of some sources checks only those)."""
    kept = {kind: [p for p in getattr(report, kind) if p.split("/", 1)[0] in sources]
            for kind in ("missing", "changed", "extra")}
    checked = int(_table(release)["source"].isin(sources).sum())
    return dataclasses.replace(report, checked=checked, **kept,
                               sources_absent=[s for s in report.sources_absent if s in sources])
