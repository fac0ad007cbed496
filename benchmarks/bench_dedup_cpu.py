"""CPU seconds of one dedup run on a manifest, and whether its pairs table equals another run's.

    PYTHONPATH=<checkout> python benchmarks/bench_dedup_cpu.py MANIFEST [--data-root DIR] [--workers 2] [--repeats 1]
        [--feature-cache off|cold|warm] [--save pairs.parquet] [--compare other.parquet] [--profile 25]

The checkout on ``PYTHONPATH`` is the one measured, so two versions can be compared on the same machine in one
session (e.g. an exported older commit against the working tree): run each with ``--save``, then the second with
``--compare`` the first's file. CPU seconds are this process's plus its finished worker processes' (user + system,
``getrusage``): on a shared machine wall time mostly measures the neighbours. ``--repeats`` keeps the lowest.
``--profile N`` runs once more in one process under cProfile and prints the N largest cumulative entries.
``--feature-cache`` says where each picture's features come from (``dedup.featcache``): ``off`` decodes every file
and stores nothing (the only mode of code older than the cache); ``cold`` starts each repeat with an empty cache
folder, so it measures a first run that also stores; ``warm`` fills a folder once, untimed, and then measures runs
that read it, as ``dedup`` does after ``build-manifest --dedup`` stored the features from its own decode.
The pairs table is compared on every column (pair order, kinds, evidence, decision), floats exactly; a difference
is printed per column (rows, largest float difference) and the exit status is 1.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cxrcurate.dedup.engine import DedupOptions, dedup
from cxrcurate.manifest import read_manifest, resolve_data_root


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--data-root", type=Path, help="the folder the manifest's paths are relative to "
                    "(default: the manifest's own folder)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--save", type=Path, help="write the pairs table here (Parquet)")
    ap.add_argument("--compare", type=Path, help="a pairs table saved by another run: must be equal")
    ap.add_argument("--profile", type=int, default=0, help="print this many cProfile entries (one in-process run)")
    ap.add_argument("--feature-cache", choices=("off", "cold", "warm"), default="off",
                    help="where per-picture features come from (see the module docstring; default off)")
    args = ap.parse_args()
    import cxrcurate

    df = read_manifest(args.manifest)
    root = resolve_data_root(df, args.data_root)
    has_cache = "feature_cache" in {f.name for f in dataclasses.fields(DedupOptions)}
    if args.feature_cache != "off" and not has_cache:
        sys.exit(f"--feature-cache {args.feature_cache}: the cxrcurate measured here has no feature cache; use off")
    scratch = tempfile.TemporaryDirectory(prefix="bench-dedup-features-")

    def options(folder: str | None) -> DedupOptions:
        if not has_cache:
            return DedupOptions(workers=args.workers)
        return DedupOptions(workers=args.workers, feature_cache=folder is not None, feature_dir=folder)

    if args.feature_cache == "warm":
        warm = str(Path(scratch.name) / "warm")
        c0 = cpu_seconds()
        dedup(df, root, options(warm), progress=False)
        print(f"feature cache filled (untimed run: {cpu_seconds() - c0:.1f} CPU-s)")
    best = None
    for r in range(args.repeats):
        folder = {"off": None, "warm": warm if args.feature_cache == "warm" else None,
                  "cold": str(Path(scratch.name) / f"cold{r}")}[args.feature_cache]
        c0, w0 = cpu_seconds(), time.perf_counter()
        result = dedup(df, root, options(folder), progress=False)
        cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
        best = cpu if best is None else min(best, cpu)
        how = getattr(result, "features", {})
        print(f"dedup of {len(df)} images, {args.workers} workers, feature cache {args.feature_cache}: {cpu:.1f} "
              f"CPU-s, {wall:.1f} s wall ({len(result.pairs)} candidate pairs, {int(result.pairs['accepted'].sum())}"
              f" accepted; features reused {how.get('features_reused', 0)}, computed "
              f"{how.get('features_computed', len(df))})")
    print(f"cpu: {best:.2f} CPU-s (lowest of {args.repeats}; cxrcurate from {Path(cxrcurate.__file__).parent})")
    scratch.cleanup()
    pairs = result.pairs.reset_index(drop=True)
    if args.save:
        pairs.to_parquet(args.save, index=False)  # TABLES: a scratch copy for --compare, not a project table
    if args.compare and not compare(pairs, pd.read_parquet(args.compare), args.compare):
        sys.exit(1)
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        dedup(df, root, DedupOptions(workers=1), progress=False)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(args.profile)


def compare(pairs: pd.DataFrame, other: pd.DataFrame, where: Path) -> bool:
    """Print whether ``pairs`` equals ``other`` on every column, else which columns differ and how much."""
    if list(pairs.columns) != list(other.columns) or len(pairs) != len(other):
        print(f"pairs table differs from {where}: {len(pairs)} rows x {list(pairs.columns)} against "
              f"{len(other)} x {list(other.columns)}")
        return False
    diffs = []
    for col in pairs.columns:
        a, b = pairs[col].to_numpy(), other[col].to_numpy()
        same = (a == b) | (pd.isna(a) & pd.isna(b))
        if not same.all():
            gap = ""
            if a.dtype.kind == "f" and b.dtype.kind == "f":
                gap = f", largest |difference| {np.nanmax(np.abs(a[~same] - b[~same])):.6g}"
            diffs.append(f"{col}: {int((~same).sum())} rows{gap}")
    if diffs:
        print(f"pairs table differs from {where} ({len(pairs)} rows): " + "; ".join(diffs))
        return False
    print(f"pairs table equal to {where} ({len(pairs)} rows, every column)")
    return True


if __name__ == "__main__":
    main()
