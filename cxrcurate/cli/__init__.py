"""The ``cxrcurate`` command: one module per command group, one error handler.

Command groups: ``data`` (sources, build-manifest, stats, dedup, split, leakage), ``fetch``, ``preprocess``
(preprocess, show, train-lungs), ``bench`` (models, bench, pretrain-chexnet), ``audit`` (audit, report),
``release`` (release build, verify, materialise).
Subcommands import what they need when they run, so ``--help`` stays light.

Exit codes: 0 success; 1 a data error or a failed check (leakage found, verification failed); 2 a usage error
(argparse's own, or ``UsageError``); 130 interrupted. Errors print one line naming the file and the fix; the
traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from ..errors import CxrcurateError, UsageError

EXIT_DATA, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    from . import audit, bench, data, fetch, preprocess, release

    p = argparse.ArgumentParser(prog="cxrcurate", description="Honest manifests of public chest X-ray collections.")
    p.add_argument("--version", action="version", version=f"cxrcurate {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data.register(sub)
    bench.register(sub)
    fetch.register(sub)
    audit.register(sub)
    preprocess.register(sub)
    release.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except UsageError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (CxrcurateError, FileNotFoundError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DATA
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


__all__ = ["main", "build_parser"]
