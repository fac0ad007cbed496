"""``cxrcurate fetch``: bring a source to disk in the layout its loader reads, politely and resumably.

Three kinds of source: web sites scraped case by case (``radiopaedia``, ``sirm``, ``eurorad``; one module each),
GitHub repositories fetched at a recorded commit, and sources behind a login or click-through that a person
downloads (``fetch`` explains how, ``check`` verifies the result). Which is which, and the commit or the published
counts, is each source's ``fetch`` record (``cxrcurate.sources``).
This module stays light: the HTTP stack is imported when a fetch runs.
"""

from __future__ import annotations

import datetime as dt
import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import TermsNotAccepted, UnknownSourceError, did_you_mean
from ..sources import DirectDownload, ManualDownload, Repository, Scraped, fetch_records
from .commits import check_commit

if TYPE_CHECKING:
    from .base import FetchReport
    from .http import HttpConfig
    from .manual import CheckResult

KINDS = {"scraped": Scraped, "repository": Repository, "manual": ManualDownload, "direct": DirectDownload}
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
def fetchable() -> tuple[str, ...]:
    """Every source with a ``fetch`` record."""
    return tuple(name for kind in KINDS.values() for name in fetch_records(kind))


def fetch_kind(name: str) -> str:
    """``scraped``, ``repository``, ``manual`` or ``direct`` for a source name.

    Raises:
        UnknownSourceError: with the closest names ("did you mean ...?").
    """
    key = name.strip().lower().replace("_", "-")
    for kind, record in KINDS.items():
        if key in fetch_records(record):
            return kind
    raise UnknownSourceError(did_you_mean(name, fetchable(), "fetchable source"))


def is_local(base_url: str | None) -> bool:
    """True when ``base_url`` points at this machine (a local copy of a site: tests, mirrors)."""
    from urllib.parse import urlsplit

    return bool(base_url) and urlsplit(base_url).hostname in LOCAL_HOSTS


def terms_notice(name: str) -> str | None:
    """What a scraped source's terms say about automated download, its alternative and how to acknowledge them;
    None when its terms ask for no acknowledgement."""
    spec = fetch_records(Scraped).get(name)
    if spec is None or not spec.requires_ack:
        return None
    return (f"{name}: {spec.terms} ({spec.terms_url}).\n"
            + (f"  Consider {spec.alternative}.\n" if spec.alternative else "")
            + f"  To fetch anyway, slowly (at least {spec.delay:g} s between requests), add --accept-terms {name} "
              f"to say that you have read the terms and take responsibility for following them.")


def site_delay(spec: Scraped, requested: float | None, base_url: str | None) -> float:
    """Seconds between requests for a scraped site: at least the site's own minimum, unless it is a local copy."""
    if requested is not None and is_local(base_url):
        return requested
    return max(requested or 0.0, spec.delay)


def fetch_source(name: str, out: str | Path, *, limit: int | None = None, since: dt.date | None = None,
                 dry_run: bool = False, base_url: str | None = None, config: HttpConfig | None = None,
                 progress: bool = True, method: str = "archive", commit: str | None = None,
                 accept_terms: tuple[str, ...] = ()) -> FetchReport:
    """Fetch source ``name`` into ``out`` and report what happened (failures included, never silently dropped).

    Args:
        name: a fetchable source (``fetchable()``).
        out: the source folder (the loader's root); created.
        limit: stop after this many cases (scraped sources).
        since: skip cases published before this date (scraped sources; cases with no date are kept).
        dry_run: discover and parse pages, download no image or archive, write no case.
        base_url: the site's (or codeload's / git host's) base URL instead of the real one; tests use 127.0.0.1.
        config: HTTP settings (delay, retries ...); the defaults are the polite ones. ``cache_dir`` and
            ``log_path`` default to ``<out>/.cache/http`` and ``<out>/fetch-log.jsonl``.
        progress: show a progress bar.
        method: ``archive`` or ``git`` for repository sources.
        commit: a commit other than the recorded one, for repository sources.
        accept_terms: source names whose restrictive terms the user has read and accepts (``--accept-terms``);
            a scraped source whose record ``requires_ack`` is refused without its name here.

    Raises:
        ManualDownloadRequired: the source needs a person (the message says where and how).
        TermsNotAccepted: the site's terms restrict automated download and ``accept_terms`` does not name it.
        UnknownSourceError: not a fetchable source.
        UsageError: ``commit`` is not a full commit id.
    """
    # lazy: the HTTP stack loads only when a fetch runs (this module stays light for --help)
    import dataclasses

    from .base import FetchOptions, run_scraper
    from .http import HttpClient, HttpConfig

    kind = fetch_kind(name)
    key = name.strip().lower().replace("_", "-")
    commit = check_commit(commit) if commit is not None else None  # before anything is created or requested
    out = Path(out)
    if kind == "manual":
        # lazy: the HTTP stack loads only when a fetch runs (this module stays light for --help)
        from .manual import manual_download

        raise manual_download(key, out)
    if kind == "scraped" and (notice := terms_notice(key)) and key not in accept_terms:
        raise TermsNotAccepted(notice)
    cfg = dataclasses.replace(config or HttpConfig())
    if kind == "scraped":
        cfg.delay = site_delay(fetch_records(Scraped)[key], cfg.delay if config is not None else None, base_url)
    cfg.cache_dir = cfg.cache_dir or out / ".cache" / "http"
    cfg.log_path = cfg.log_path or out / "fetch-log.jsonl"
    options = FetchOptions(limit=limit, since=since, dry_run=dry_run, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    with HttpClient(cfg) as client:
        if kind == "repository":
            # lazy: the HTTP stack loads only when a fetch runs (this module stays light for --help)
            from .github import fetch_repository

            report = fetch_repository(key, out, client, options, base_url=base_url, method=method, commit=commit)
            if limit is not None or since is not None:
                report.notes.append("--limit and --since apply to web sites only; the whole repository is fetched")
            return report
        if kind == "direct":
            # lazy: the HTTP stack loads only when a fetch runs (this module stays light for --help)
            from .direct import fetch_direct

            return fetch_direct(key, out, client, options, base_url=base_url)
        module, cls_name = fetch_records(Scraped)[key].scraper.split(":")
        scraper_cls = getattr(importlib.import_module(f"{__name__}.sites.{module}"), cls_name)
        return run_scraper(scraper_cls(client, base_url), out, options)


def check_source(name: str, path: str | Path) -> CheckResult:
    """Verify a (manual) download of ``name`` at ``path``; see ``manual.check_download``."""
    # lazy: the HTTP stack loads only when a fetch runs (this module stays light for --help)
    from .manual import check_download

    return check_download(name, path)
