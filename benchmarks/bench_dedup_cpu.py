"""CPU seconds of one dedup run on a manifest, and whether its pairs table equals another run's.

    PYTHONPATH=<checkout> python benchmarks/bench_dedup_cpu.py MANIFEST [--data-root DIR] [--workers 2] [--repeats 1]
        [--save pairs.parquet] [--compare other.parquet] [--profile 25]

The checkout on ``PYTHONPATH`` is the one measured, so two versions can be compared on the same machine in one
session (e.g. an exported older commit against the working tree): run each with ``--save``, then the second with
``--compare`` the first's file. CPU seconds are this process's plus its finished worker processes' (user + system,
``getrusage``): on a shared machine wall time mostly measures the neighbours. ``--repeats`` keeps the lowest.
``--profile N`` runs once more in one process under cProfile and prints the N largest cumulative entries.
The pairs table is compared on every column (pair order, kinds, evidence, decision); floats exactly.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import time
from pathlib import Path

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
    args = ap.parse_args()
    import cxrcurate

    df = read_manifest(args.manifest)
    root = resolve_data_root(df, args.data_root)
    options = DedupOptions(workers=args.workers)
    best = None
    for _ in range(args.repeats):
        c0, w0 = cpu_seconds(), time.perf_counter()
        result = dedup(df, root, options, progress=False)
        cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
        best = cpu if best is None else min(best, cpu)
        print(f"dedup of {len(df)} images, {args.workers} workers: {cpu:.1f} CPU-s, {wall:.1f} s wall "
              f"({len(result.pairs)} candidate pairs, {int(result.pairs['accepted'].sum())} accepted)")
    print(f"cpu: {best:.2f} CPU-s (lowest of {args.repeats}; cxrcurate from {Path(cxrcurate.__file__).parent})")
    pairs = result.pairs.reset_index(drop=True)
    if args.save:
        pairs.to_parquet(args.save, index=False)  # TABLES: a scratch copy for --compare, not a project table
    if args.compare:
        other = pd.read_parquet(args.compare)
        pd.testing.assert_frame_equal(pairs, other, check_dtype=False, check_exact=True)
        print(f"pairs table equal to {args.compare} ({len(pairs)} rows, every column)")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        dedup(df, root, DedupOptions(workers=1), progress=False)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(args.profile)


if __name__ == "__main__":
    main()
