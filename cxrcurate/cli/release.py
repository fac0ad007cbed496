"""Release commands: ``release build`` (write ``manifests/v<N>``), ``verify`` (your files against a release),
``materialise`` (the release over your files as a full manifest for ``bench --split-policy manifest``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from .codes import EXIT_CHECK_FAILED


def cmd_release_build(args: argparse.Namespace) -> int:
    from ..release.build import build_release

    out = build_release(args.data, args.out, workers=args.workers, progress=not args.quiet, nih=not args.no_nih)
    print(f"wrote release {out} (card: {out / 'README.md'})")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from ..release.diagnose import diagnose
    from ..release.verify import verify_release

    report = verify_release(args.release, args.root)
    diagnosis = None if report.ok and not report.missing else diagnose(args.release, args.root, report)
    if args.format == "json":
        doc = {"ok": report.ok, **dataclasses.asdict(report),
               "diagnosis": diagnosis.to_dict() if diagnosis else None}
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(report.to_text())
        for line in diagnosis.lines() if diagnosis else []:
            print(line)
    return 0 if report.ok else EXIT_CHECK_FAILED


def cmd_materialise(args: argparse.Namespace) -> int:
    from ..release.verify import materialise

    if not str(args.out).endswith(".parquet"):
        raise UsageError(f"--out {args.out}: give a .parquet file, e.g. --out manifest.parquet")
    df = materialise(args.release, args.root, args.out, allow_missing=args.allow_missing, workers=args.workers,
                     progress=not args.quiet)
    sides = df["split"].value_counts().to_dict()
    beside = Path(args.out).resolve().parent == Path(args.root).resolve()
    root = "" if beside else f" --data-root {args.root}"  # the data root is never read from the file itself
    print(f"wrote {args.out}: {len(df):,} images ({', '.join(f'{k} {v:,}' for k, v in sorted(sides.items()))}); "
          f"train on it with `cxrcurate bench --manifest {args.out}{root} --split-policy manifest`")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``release build``, ``verify`` and ``materialise`` to the ``cxrcurate`` subcommands."""
    rel = sub.add_parser("release", help="build a published release (manifests/v<N>)")
    rsub = rel.add_subparsers(dest="release_command", required=True, metavar="SUBCOMMAND")
    b = rsub.add_parser("build", help="build a release from a data root with ORIGINALS.csv (deterministic)")
    b.add_argument("--data", required=True, help="data root holding the five open sources and ORIGINALS.csv")
    b.add_argument("--out", required=True, help="release folder, e.g. manifests/v1 (its quality-truth.csv is scored)")
    b.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    b.add_argument("--no-nih", action="store_true", help="skip the ChestX-ray14 metadata table")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=cmd_release_build)

    v = sub.add_parser("verify", help="check a release's own files (release.json digests), then your downloaded "
                       "sources against it by sha256 (exit 3 on a mismatch or a tampered release)")
    v.add_argument("--release", default="manifests/v1", help="release folder (default manifests/v1)")
    v.add_argument("--root", required=True, help="folder holding one folder per source (ROOT/cohen, ROOT/hannover..)")
    v.add_argument("--format", choices=["text", "json"], default="text",
                   help="text report with the likely cause and the way forward (default), or JSON (every path, and "
                        "the diagnosis: another layout, resized or re-encoded copies)")
    v.set_defaults(func=cmd_verify)

    m = sub.add_parser("materialise", help="the release over your files as a full manifest (for bench)")
    m.add_argument("--release", default="manifests/v1", help="release folder (default manifests/v1)")
    m.add_argument("--root", required=True, help="folder holding one folder per source")
    m.add_argument("--out", required=True, help="manifest to write (.parquet)")
    m.add_argument("--allow-missing", action="store_true", help="leave out rows whose file is missing")
    m.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    m.set_defaults(func=cmd_materialise)
