"""The ``cxrcurate`` command: one module per command group, one error handler.

Command groups: ``data`` (sources, build-manifest, stats, dedup, split, leakage), ``fetch``, ``preprocess``
(preprocess, show, train-lungs), ``bench`` (models, bench, pretrain-chexnet), ``audit`` (audit, report),
``release`` (release build, verify, materialise).
Subcommands import what they need when they run, so ``--help`` stays light.

Exit codes (``codes``, listed in the README): 0 success; 1 bad input data; 2 a usage error; 3 a check that ran and
failed (leakage found, a release or your files do not match it, the audit says FAIL); 130 interrupted; 141 the
output pipe was closed.
Errors print one line naming the file and the fix; the traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .. import __version__
from ..errors import CxrcurateError, UsageError
from .codes import EXIT_BROKEN_PIPE, EXIT_CHECK_FAILED, EXIT_DATA, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE


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


# Commands that pick up where an interrupted run stopped when run again.
RESUMABLE = {"build-manifest", "preprocess", "fetch", "bench", "pretrain-chexnet"}


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    fresh = _missing_output_folders(args)
    code = EXIT_DATA
    try:
        code = args.func(args)
        return code
    except UsageError as exc:
        if args.debug:
            raise
        _error(str(exc))
        return EXIT_USAGE
    except (CxrcurateError, FileNotFoundError) as exc:
        if args.debug:
            raise
        _error(str(exc))
        return EXIT_DATA
    except KeyboardInterrupt:
        if args.command in RESUMABLE:
            _error("interrupted; run the same command again to resume", prefix="")
        else:
            _error("interrupted; nothing was written (outputs are replaced atomically only when a command completes)",
                   prefix="")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()  # the reader (head, less) went away: stop quietly, as a shell tool does
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # a disk, permission or file-type problem, reported with the file it concerns
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        _error(f"{where}{exc.strerror or exc}; check that the path exists, is the kind of file expected there and "
               "that you may read/write it")
        return EXIT_DATA
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, the traceback on --debug
        if args.debug:
            raise
        _error(f"unexpected {type(exc).__name__}: {exc}. Run again with --debug for the traceback and report it "
               "at the project's issue tracker")
        return EXIT_DATA
    finally:
        if code != 0:
            _remove_if_empty(fresh)


# The options naming what a command writes (a folder, or a file whose folder may be created for it).
OUTPUT_OPTIONS = ("out", "output")


def _missing_output_folders(args: argparse.Namespace) -> list[Path]:
    """The output paths (and their parents) that do not exist yet, deepest first.

    A command that is refused or fails after creating its ``--out`` must not leave an empty folder behind (a user
    would take it for a result); ``_remove_if_empty`` removes exactly these, and only while they are empty.
    """
    fresh: list[Path] = []
    for name in OUTPUT_OPTIONS:
        value = getattr(args, name, None)
        if not isinstance(value, str | Path) or not str(value):
            continue
        path = Path(value).absolute()
        for p in (path, *path.parents):
            if p.exists() or p.is_symlink():
                break
            fresh.append(p)
    return fresh


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders of ``folders`` (deepest first) that exist and are empty; anything written stays."""
    for p in folders:
        try:
            if p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
                p.rmdir()
        except OSError:
            pass


def _error(message: str, prefix: str = "error: ") -> None:
    try:
        print(f"{prefix}{message}", file=sys.stderr)
    except (BrokenPipeError, OSError):
        pass


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (captured in tests)
        pass


__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_DATA", "EXIT_USAGE", "EXIT_CHECK_FAILED", "EXIT_INTERRUPTED",
           "EXIT_BROKEN_PIPE"]
