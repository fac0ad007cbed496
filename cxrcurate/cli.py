"""The ``cxrcurate`` command. Subcommands import what they need when they run, so ``--help`` stays light."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import CxrcurateError

log = logging.getLogger("cxrcurate")


def _sample_sources() -> list[tuple[str, Path]]:
    from .sample import sample_sources

    return sample_sources()


def cmd_sources(args: argparse.Namespace) -> int:
    from .sources import list_sources

    for name, cls in list_sources().items():
        print(f"{name:13s} {cls.title}\n{'':13s} {cls.homepage}  [{cls.license}]")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    import pandas as pd

    from .build import build_manifest, parse_source_spec
    from .stats import dropped_summary, label_source_table, render

    specs = [parse_source_spec(s) for s in args.source]
    if args.sample:
        specs += _sample_sources()
    if not specs:
        raise CxrcurateError("give at least one --source NAME=PATH, or --sample for the data shipped with cxrcurate")
    views = [v.strip() for v in args.views.split(",")] if args.views else None
    kwargs = {"views": views} if views else {}
    result = build_manifest(specs, args.out, data_root=args.data_root, workers=args.workers,
                            progress=not args.quiet, **kwargs)
    print(f"wrote {result.manifest} ({result.n_images} images) and {result.dropped} ({result.n_dropped} dropped)")
    print(f"data root: {result.info['data_root']}")
    for name, s in result.info["sources"].items():
        notes = "".join(f"\n    {k}: {v}" for k, v in s.get("notes", {}).items())
        print(f"  {name}: {s['records']} images, {s['dropped']} dropped{notes}")
    from .manifest import read_manifest

    print("\n" + render(label_source_table(read_manifest(result.manifest))))
    if result.n_dropped:
        print("\ndropped (every file or row not in the manifest):")
        print(render(dropped_summary(pd.read_parquet(result.dropped))))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from .manifest import read_manifest
    from .stats import label_source_table, render

    print(render(label_source_table(read_manifest(args.manifest)), args.format))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cxrcurate", description="Honest manifests of public chest X-ray collections.")
    p.add_argument("--version", action="version", version=f"cxrcurate {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("sources", help="list the source loaders")
    s.set_defaults(func=cmd_sources)

    b = sub.add_parser("build-manifest", help="build manifest.parquet + manifest.dropped.parquet from source folders")
    b.add_argument("--source", action="append", default=[], metavar="NAME=PATH",
                   help="a source folder laid out as published (repeatable); see `cxrcurate sources`")
    b.add_argument("--sample", action="store_true", help="add the small real sample shipped inside cxrcurate")
    b.add_argument("--out", required=True, type=Path, help="output folder")
    b.add_argument("--views", help="comma-separated views to keep (default: PA,AP,AP_supine,unknown)")
    b.add_argument("--data-root", type=Path, help="make manifest paths relative to this folder")
    b.add_argument("--workers", type=int, help="decoding processes (default: all cores)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_build)

    st = sub.add_parser("stats", help="label x source table of a manifest")
    st.add_argument("manifest", type=Path)
    st.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    st.set_defaults(func=cmd_stats)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except (CxrcurateError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
