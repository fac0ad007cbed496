"""Benchmark the near-duplicate hash index against brute force, or calibrate the radius on real pHashes.

Synthetic mode (default)::

    python benchmarks/bench_hashindex.py --sizes 10000 100000 1000000 --radius 4 --brute-max 100000

Each N is N uint64 hashes: random ones plus planted near copies at every distance 0..r (``--planted``
pairs per distance, a random hash copied with exactly d distinct bits flipped).  The index is timed with
``time.perf_counter``; its peak memory is measured in a second, separate run under ``tracemalloc``
(numpy reports its buffers to tracemalloc), so tracing does not slow the timed run.  The growth of the
process high-water mark (``resource.getrusage().ru_maxrss``) over the whole N is printed as well.
Brute force runs only for N <= ``--brute-max``; beyond that its time is extrapolated quadratically from
the largest measured N.

Calibration mode::

    python benchmarks/bench_hashindex.py --phash-manifest manifest.parquet

reads the ``phash`` column and prints the nearest-neighbour Hamming distance distribution and the number
of pairs within each radius 0..12 (found with the index).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cxrcurate.dedup.hashindex import bands, brute_force_pairs, hamming, pairs_within  # noqa: E402

CALIBRATION_RADIUS = 12


def make_hashes(n: int, radius: int, per_distance: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """N hashes with ``per_distance`` planted pairs at each distance 0..radius.

    Returns:
        ``(hashes, planted_i, planted_j)``; planted pairs have ``i < j`` and distinct source hashes.
    """
    rng = np.random.default_rng(seed)
    per_distance = min(per_distance, n // (2 * (radius + 1)))
    n_planted = per_distance * (radius + 1)
    base = rng.integers(0, 2**64, size=n - n_planted, dtype=np.uint64)
    src = rng.choice(base.size, size=n_planted, replace=False)
    d = np.repeat(np.arange(radius + 1), per_distance)
    bit_order = np.argsort(rng.random((n_planted, 64)), axis=1)  # a random permutation of bits per copy
    flip = np.where(np.arange(64) < d[:, None], np.left_shift(np.uint64(1), bit_order.astype(np.uint64)), 0)
    copies = base[src] ^ np.bitwise_or.reduce(flip.astype(np.uint64), axis=1)
    hashes = np.concatenate([base, copies])
    planted_i, planted_j = src.astype(np.int64), np.arange(base.size, n, dtype=np.int64)
    assert np.array_equal(hamming(hashes[planted_i], hashes[planted_j]), d.astype(np.uint8))
    return hashes, planted_i, planted_j


def maxrss_mb() -> float:
    """Process high-water mark in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_synthetic(args: argparse.Namespace) -> None:
    """All index runs first (ascending N, so ru_maxrss growth is the index's), then brute force."""
    r = args.radius
    print(f"radius {r}: {r + 1} bands of widths {[w for _, w in bands(r)]}; max_candidates {args.max_candidates:,}")
    rows = []
    for n in sorted(args.sizes):
        h, pi, pj = make_hashes(n, r, args.planted, args.seed)
        rss0 = maxrss_mb()
        t0 = time.perf_counter()
        found = pairs_within(h, r, max_candidates=args.max_candidates)
        t_index = time.perf_counter() - t0
        peak = float("nan")
        if not args.no_tracemalloc:
            tracemalloc.start()
            pairs_within(h, r, max_candidates=args.max_candidates)
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        recall = np.isin(pi * n + pj, found[0] * n + found[1]).mean() if pi.size else float("nan")
        rows.append([n, t_index, found, recall, peak, maxrss_mb() - rss0])
    brute_ref: tuple[int, float] | None = None
    for row in rows:
        n, found = row[0], row[2]
        if n <= args.brute_max:
            h = make_hashes(n, r, args.planted, args.seed)[0]
            t0 = time.perf_counter()
            brute = brute_force_pairs(h, r)
            t_brute = time.perf_counter() - t0
            if not all(np.array_equal(a, b) for a, b in zip(found, brute, strict=True)):
                print(f"  MISMATCH at N={n}: index {found[0].size} pairs, brute force {brute[0].size}")
            brute_ref = (n, t_brute)
            row.append((t_brute, f"{t_brute:.2f}"))
        elif brute_ref is not None:
            t_brute = brute_ref[1] * (n / brute_ref[0]) ** 2
            row.append((t_brute, f"~{t_brute:.0f} extrapolated"))
        else:
            row.append((float("nan"), "n/a"))
    header = (
        f"{'N':>10} {'r':>3} {'index s':>9} {'brute s':>18} {'speed-up':>9} {'pairs':>8} "
        f"{'recall':>8} {'peak MB':>8} {'rss+ MB':>8}"
    )
    print(header)
    print("-" * len(header))
    for n, t_index, found, recall, peak, rss_growth, (t_brute, brute_txt) in rows:
        print(
            f"{n:>10,} {r:>3} {t_index:>9.2f} {brute_txt:>18} {t_brute / t_index:>8.0f}x {found[0].size:>8,} "
            f"{recall:>8.2%} {peak:>8.0f} {rss_growth:>8.0f}"
        )
    print(
        "index s / brute s: perf_counter wall time; brute s '~X extrapolated' = measured time at the largest N "
        "<= --brute-max scaled by (N / that N)**2.\npeak MB: tracemalloc peak of a second, traced index run "
        "(numpy buffers included, input hashes excluded); rss+ MB: growth of ru_maxrss (process high-water "
        "mark) during this N's index runs, 0 when a smaller N had already set a higher mark.\n"
        "recall: share of the planted pairs (distance 0..r) found; pairs: all pairs the index found."
    )


def nearest_neighbour(h: np.ndarray, block: int = 2048) -> np.ndarray:
    """Exact nearest-neighbour Hamming distance of each hash (blocked brute force, O(n**2))."""
    nn = np.full(h.size, 255, dtype=np.uint8)
    for a in range(0, h.size, block):
        d = hamming(h[a : a + block, None], h[None, :])
        d[np.arange(d.shape[0]), np.arange(a, a + d.shape[0])] = 255  # not oneself
        nn[a : a + block] = d.min(axis=1)
    return nn


def run_manifest(path: Path, exact_nn_max: int) -> None:
    import pyarrow.parquet as pq

    h = pq.read_table(path, columns=["phash"]).column("phash").to_numpy().astype(np.uint64)
    n = h.size
    print(f"{path}: {n:,} phashes, {np.unique(h).size:,} distinct")
    if n:
        w = hamming(h, np.uint64(0))
        parity = "all even" if not (w % 2).any() else "mixed"
        print(
            f"bits set per hash: min {w.min()}, median {int(np.median(w))}, max {w.max()}; "
            f"{(w == 32).mean():.1%} have exactly 32 (weight parity {parity}: pairwise distances then are even)"
        )
    t0 = time.perf_counter()
    i, j, d = pairs_within(h, CALIBRATION_RADIUS)
    print(f"index at radius {CALIBRATION_RADIUS}: {i.size:,} pairs in {time.perf_counter() - t0:.2f} s")
    if n <= exact_nn_max:
        nn, how = nearest_neighbour(h), "exact, all distances"
    else:  # censored: hashes without a neighbour within 12 bits show as '>12'
        nn = np.full(n, 255, dtype=np.uint8)
        np.minimum.at(nn, i, d)
        np.minimum.at(nn, j, d)
        how = f"from the index, censored at {CALIBRATION_RADIUS}"
    print(f"\nnearest-neighbour Hamming distance ({how}):")
    print(f"{'dist':>6} {'images':>8} {'cum %':>7}")
    counts = np.bincount(nn[nn <= 64], minlength=65) if n > 1 else np.zeros(65, dtype=int)
    cum = 0
    for dist in range(65):
        if counts[dist] or dist <= CALIBRATION_RADIUS:
            cum += int(counts[dist])
            print(f"{dist:>6} {counts[dist]:>8,} {cum / max(n, 1):>7.1%}")
    if (nn > 64).any():
        print(f"{'>' + str(CALIBRATION_RADIUS):>6} {int((nn > 64).sum()):>8,}")
    print("\npairs within each radius (index run per radius; 'in pairs' = images with a neighbour that close):")
    print(f"{'radius':>6} {'pairs':>9} {'at dist':>8} {'in pairs':>9} {'seconds':>8}")
    at = np.bincount(d, minlength=CALIBRATION_RADIUS + 1)
    for r in range(CALIBRATION_RADIUS + 1):
        t0 = time.perf_counter()
        ri, rj, _ = pairs_within(h, r)
        secs = time.perf_counter() - t0
        assert ri.size == int(at[: r + 1].sum()), "index at radius r disagrees with the radius-12 run"
        images = np.unique(np.concatenate([ri, rj])).size
        print(f"{r:>6} {ri.size:>9,} {int(at[r]):>8,} {images:>9,} {secs:>8.3f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="values of N")
    p.add_argument("--radius", type=int, default=4, help="Hamming radius (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--brute-max", type=int, default=100_000, help="run brute force only up to this N")
    p.add_argument("--planted", type=int, default=1000, help="planted pairs per distance 0..r")
    p.add_argument("--max-candidates", type=int, default=10_000_000, help="index chunk size")
    p.add_argument("--no-tracemalloc", action="store_true", help="skip the second, traced index run")
    p.add_argument("--phash-manifest", type=Path, help="Parquet file with a uint64 'phash' column: calibrate")
    p.add_argument("--exact-nn-max", type=int, default=50_000, help="exact nearest neighbours up to this N")
    args = p.parse_args(argv)
    if args.phash_manifest is not None:
        run_manifest(args.phash_manifest, args.exact_nn_max)
    else:
        run_synthetic(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
