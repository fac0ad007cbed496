"""The ``cxrcurate fetch`` subcommand: ``register(subparsers)`` adds it to the CLI; nothing heavy is imported here.

Exit codes: 0 when everything asked for is on disk (or, with ``--check``, complete), 1 when anything failed (each
failure is listed with its reason), 2 for a usage error or a source that needs a manual download (the message
says where to get it), 3 when ``--check`` finds a file that does not match.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from .codes import EXIT_CHECK_FAILED


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date like 2020-03-01") from exc


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _commit(value: str) -> str:
    from ..errors import UsageError
    from ..fetch import check_commit

    try:
        return check_commit(value)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--commit ")) from exc


def cmd_fetch(args: argparse.Namespace) -> int:
    """Run ``fetch`` (or ``fetch --check``) and print the summary; see the module docstring for exit codes."""
    from ..fetch import check_source, fetch_source

    if args.release is not None:
        return _fetch_release(args)
    if args.source is None:
        from ..errors import UsageError

        raise UsageError("give --source NAME (see `cxrcurate sources`) or --release FOLDER (every repository a "
                         "release names, e.g. --release manifests/v1)")
    if args.check is not None:
        result = check_source(args.source, args.check)
        print("\n".join(result.lines))
        return 0 if result.ok else EXIT_CHECK_FAILED
    if args.write_digests is not None:
        from ..fetch.github import write_repository_digests

        path, n = write_repository_digests(args.source, args.write_digests, args.out, args.commit)
        print(f"wrote the sha256 of {n:,} image files of {args.write_digests} to {path}; copy it into "
              "cxrcurate/sources/digests/ to have every fetch of that commit checked against it")
        return 0
    if args.out is None:
        from ..errors import CxrcurateError

        raise CxrcurateError("fetch needs --out DIR (or --check PATH to verify a manual download)")
    config = _http_config(args)
    report = fetch_source(args.source, args.out, limit=args.limit, since=args.since, dry_run=args.dry_run,
                          base_url=args.base_url, config=config, progress=not args.quiet, method=args.method,
                          commit=args.commit, accept_terms=tuple(n.strip().lower() for n in args.accept_terms or ()))
    print(report.summary())
    print(f"request log: {Path(args.out) / 'fetch-log.jsonl'}")
    return 0 if report.ok else 1


def _http_config(args: argparse.Namespace):
    """The polite client's settings from ``--refresh`` and ``--delay`` (below 1 s only for a local copy)."""
    from ..fetch.http import HttpConfig

    config = HttpConfig(refresh=args.refresh)
    if args.delay is not None:
        from urllib.parse import urlsplit

        local = args.base_url and urlsplit(args.base_url).hostname in ("127.0.0.1", "localhost", "::1")
        if args.delay < 1.0 and not local:
            from ..errors import CxrcurateError

            raise CxrcurateError("--delay below 1 second is only for a local copy of a site (--base-url on "
                                 "127.0.0.1); public sites get at least 1 s")
        config.delay = max(args.delay, 0.0)
    return config


def _fetch_release(args: argparse.Namespace) -> int:
    """``fetch --release FOLDER --out ROOT``: every repository the release names, at its commits, then verify."""
    from ..errors import UsageError
    from ..release.fetch import fetch_release

    if args.out is None:
        raise UsageError("fetch --release needs --out ROOT, the data root to fill (one folder per source)")
    for flag in ("check", "write_digests", "limit", "since", "commit"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag.replace('_', '-')} does not apply with --release: the release names each "
                             "repository and commit")
    result = fetch_release(args.release, args.out, sources=[args.source] if args.source else None,
                           base_url=args.base_url, method=args.method, config=_http_config(args),
                           progress=not args.quiet, dry_run=args.dry_run)
    print(result.summary())
    if result.verify is not None and result.verify.ok:
        print(f"next: cxrcurate materialise --release {args.release} --root {args.out} --out manifest.parquet")
    return 0 if result.ok else 1


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``fetch`` subcommand to the CLI's subparsers and return its parser."""
    f = subparsers.add_parser(
        "fetch", help="download a source into the layout its loader reads (politely, resumably)",
        description="Download a source into the layout its loader reads. Web sites are fetched case by case "
                    "(robots.txt obeyed, one request at a time per host, a delay between requests, pages cached "
                    "so a re-run replays them); GitHub sources at a recorded commit; sources behind a login "
                    "explain how to get them, and --check verifies the result.")
    f.add_argument("--source", metavar="NAME",
                   help="the source to fetch (with --release: only this one of the release's sources): radiopaedia "
                        "(needs --accept-terms radiopaedia), sirm, eurorad, cohen, hannover, covid-cxnet, figure1, "
                        "actualmed, shenzhen, montgomery, nih-cxr14, kermany")
    f.add_argument("--out", type=Path, metavar="DIR",
                   help="the source folder to fill (e.g. raw/sirm); with --release, the data root to fill (one folder "
                        "per source); with --write-digests, the list file to write")
    f.add_argument("--release", type=Path, metavar="FOLDER",
                   help="fetch every repository a release names (e.g. manifests/v1) at the commit it names into "
                        "--out ROOT/<source>, then verify the files against the release")
    f.add_argument("--limit", type=_positive, metavar="N", help="stop after N cases (web sites)")
    f.add_argument("--since", type=_date, metavar="DATE", help="only cases published on or after DATE (YYYY-MM-DD)")
    f.add_argument("--dry-run", action="store_true",
                   help="read listing and case pages, say what would be downloaded, download no image")
    f.add_argument("--check", type=Path, metavar="PATH",
                   help="verify a manual download at PATH (counts, names) and say what is missing")
    f.add_argument("--write-digests", type=Path, metavar="DIR",
                   help="GitHub sources: hash the image files of DIR (fetched at a known commit) into a digest list "
                        "(written to --out FILE, default ./<source>-<commit>.csv.gz)")
    f.add_argument("--delay", type=float, metavar="SECONDS",
                   help="seconds between requests to a host (default 1; web sites have their own minimum: "
                        "radiopaedia 4, eurorad 5, sirm 2, which --delay can raise but not lower)")
    f.add_argument("--accept-terms", action="append", metavar="NAME",
                   help="say that you have read the terms of use of source NAME and take responsibility for following "
                        "them; needed for radiopaedia, whose terms restrict automated download")
    f.add_argument("--refresh", action="store_true", help="ignore cached pages and ask the site again")
    f.add_argument("--method", choices=["archive", "git"], default="archive",
                   help="GitHub sources: the codeload zip (default) or a depth-1 git fetch of the same commit")
    f.add_argument("--commit", type=_commit, metavar="SHA",
                   help="GitHub sources: a commit other than the recorded one (the full 40-digit id)")
    f.add_argument("--base-url", help=argparse.SUPPRESS)  # a local copy of the site (tests, mirrors)
    f.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=cmd_fetch)
    return f
