"""CPU seconds of ``cxrcurate build-manifest --dedup`` on the five shared collections: build and dedup together.

    PYTHONPATH=<checkout> python benchmarks/bench_dedup_pipeline.py DATA [--workers 2] [--repeats 1]
        [--save pairs.parquet] [--compare other.parquet]

``DATA`` is the shared data folder (``cohen``, ``covid-cxnet``, ``hannover``, ``figure1`` and ``actualmed`` under
it). Each repeat runs the command users run, ``cxrcurate build-manifest --source ... --out NEW --workers W
--dedup``, in a child process of the checkout on ``PYTHONPATH`` (run in a scratch folder, so a checkout in the
current folder is not imported instead), with a new output folder (so the build decodes
every file) and a new, empty dedup feature cache (``CXRCURATE_DEDUP_CACHE``; older code ignores it), and prints
the CPU seconds of the child and all its workers (user + system, ``getrusage(RUSAGE_CHILDREN)``) and the
``features:`` line the command prints, which says where dedup took each picture's features from. This is the
whole cost a user pays for a deduplicated manifest; ``bench_dedup_cpu.py`` measures the dedup step alone.
``--save`` / ``--compare`` keep and check the pairs table the command wrote (as ``bench_dedup_cpu.py`` does).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from bench_dedup_cpu import compare  # this folder is on sys.path when a script in it runs

SOURCES = ("cohen", "covid-cxnet", "hannover", "figure1", "actualmed")


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="the shared data folder")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--save", type=Path, help="copy the pairs table of the last run here")
    ap.add_argument("--compare", type=Path, help="a pairs table saved by another run: must be equal")
    args = ap.parse_args()
    missing = [s for s in SOURCES if not (args.data / s).is_dir()]
    if missing:
        sys.exit(f"{args.data}: no {', '.join(missing)} folder; give the shared data folder (../shared/data)")
    code = "import sys; from cxrcurate.cli import main; sys.exit(main())"
    best, pairs = None, None
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-dedup-pipeline-") as tmp:
            out = Path(tmp) / "m"
            cmd = [sys.executable, "-c", code, "build-manifest", "--out", str(out), "--workers", str(args.workers),
                   "-q", "--dedup"]
            for s in SOURCES:
                cmd += ["--source", f"{s}={args.data / s}"]
            env = dict(os.environ, CXRCURATE_DEDUP_CACHE=str(Path(tmp) / "features"))
            c0, w0 = child_cpu(), time.perf_counter()
            run = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, check=False)
            cpu, wall = child_cpu() - c0, time.perf_counter() - w0
            if run.returncode:
                sys.exit(f"build-manifest --dedup failed ({run.returncode}):\n{run.stderr[-3000:]}")
            said = [ln.strip() for ln in run.stdout.splitlines() if ln.strip().startswith("features:")]
            found = sorted(out.glob("*pairs*.parquet"))
            if not found:
                sys.exit(f"no pairs table in {out}: {sorted(p.name for p in out.iterdir())}")
            pairs = pd.read_parquet(found[0])
            best = cpu if best is None else min(best, cpu)
            print(f"repeat {r + 1}: {cpu:.1f} CPU-s, {wall:.1f} s wall; {len(pairs)} candidate pairs, "
                  f"{int(pairs['accepted'].sum())} accepted; " + " | ".join(said))
    import cxrcurate

    print(f"cpu: {best:.2f} CPU-s (lowest of {args.repeats}; build-manifest --dedup, cxrcurate from "
          f"{Path(cxrcurate.__file__).parent})")
    if args.save:
        pairs.to_parquet(args.save, index=False)  # TABLES: a scratch copy for --compare, not a project table
    if args.compare and not compare(pairs.reset_index(drop=True), pd.read_parquet(args.compare), args.compare):
        sys.exit(1)


if __name__ == "__main__":
    main()
