"""Which approximate-nearest-neighbour library for dedup candidates: recall and speed on 2 cores.

Usage:
    python benchmarks/bench_ann.py [--n 200000] [--crops 25] [--dim 64] [--k 10] [--threads 2]

The dedup candidate stage indexes ``crops`` whitened, unit-norm descriptors per image (``dim`` floats) and
queries each image's full view for its ``k`` nearest crops. Whitened descriptors are close to isotropic, so
the bulk is drawn as random unit vectors; one image in ten gets a planted copy (its descriptor plus noise at
cosine ~0.9, as measured for real re-publications). Printed per library: build and query time, recall of the
exact k nearest neighbours (faiss ``IndexFlatIP`` as reference) and recall of the planted copies.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def data(n: int, crops: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n * crops, dim), dtype=np.float32)
    owner = np.repeat(np.arange(n), crops)
    src = rng.choice(n, n // 10, replace=False)
    dst = rng.choice(np.setdiff1d(np.arange(n), src), n // 10, replace=False)
    base[dst * crops] = base[src * crops + rng.integers(crops)] + 0.35 * rng.standard_normal((len(src), dim))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    return base, owner, np.stack([src, dst], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--crops", type=int, default=25)  # descriptors.N_CROPS
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--exact-queries", type=int, default=2000)
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    x, owner, planted = data(args.n, args.crops, args.dim)
    q_ids = np.arange(args.n)
    queries = np.ascontiguousarray(x[q_ids * args.crops])
    sub = np.random.default_rng(1).choice(args.n, args.exact_queries, replace=False)
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(x)
    t0 = time.perf_counter()
    _, exact = flat.search(queries[sub], args.k)
    t_flat = (time.perf_counter() - t0) * args.n / len(sub)
    print(f"{args.n:,} images x {args.crops} crops = {len(x):,} vectors of {args.dim} floats, k={args.k}, "
          f"{args.threads} threads; brute force (faiss flat) ~{t_flat:.0f} s for all queries (extrapolated)")

    def score(name: str, t_build: float, t_query: float, labels: np.ndarray) -> None:
        knn = np.mean([len(set(labels[s]) & set(exact[i])) / args.k for i, s in enumerate(sub)])
        found = {(int(q), int(owner[v])) for q, row in zip(q_ids, labels, strict=True) for v in row if v >= 0}
        hit = np.mean([(int(d), int(s)) in found for s, d in planted])
        print(f"{name:22s} build {t_build:6.1f} s  query {t_query:6.1f} s  kNN recall {knn:.3f}  "
              f"planted-copy recall {hit:.4f}")

    from cxrcurate.dedup.descriptors import build_index

    t0 = time.perf_counter()
    ivf = build_index(x, threads=args.threads)  # what dedup uses: IVF-Flat beyond EXACT_LIMIT vectors
    t1 = time.perf_counter()
    _, lab = ivf.search(queries, args.k)
    score(f"faiss {type(ivf).__name__[5:]} nprobe {getattr(ivf, 'nprobe', '-')}", t1 - t0, time.perf_counter() - t1,
          lab)
    if hasattr(ivf, "nprobe"):  # the recall/speed trade of the IVF probes, on the same index
        default = ivf.nprobe
        for nprobe in (default // 2, default * 2, default * 4):
            ivf.nprobe = nprobe
            t1 = time.perf_counter()
            _, lab = ivf.search(queries, args.k)
            score(f"faiss IVFFlat nprobe {nprobe}", 0.0, time.perf_counter() - t1, lab)
        ivf.nprobe = default

    t0 = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(args.dim, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 80
    hnsw.add(x)
    t1 = time.perf_counter()
    hnsw.hnsw.efSearch = 64
    _, lab = hnsw.search(queries, args.k)
    score("faiss HNSW32 ef64", t1 - t0, time.perf_counter() - t1, lab)
    try:
        import hnswlib
    except ImportError:
        print("hnswlib not installed")
    else:
        t0 = time.perf_counter()
        h = hnswlib.Index(space="ip", dim=args.dim)
        h.init_index(max_elements=len(x), ef_construction=80, M=16)
        h.set_num_threads(args.threads)
        h.add_items(x)
        t1 = time.perf_counter()
        h.set_ef(64)
        lab, _ = h.knn_query(queries, k=args.k)
        score("hnswlib M16 ef64", t1 - t0, time.perf_counter() - t1, lab.astype(np.int64))
    try:
        from usearch.index import Index
    except ImportError:
        print("usearch not installed")
    else:
        t0 = time.perf_counter()
        u = Index(ndim=args.dim, metric="ip", dtype="f32", connectivity=16, expansion_add=80, expansion_search=64)
        u.add(np.arange(len(x)), x, threads=args.threads)
        t1 = time.perf_counter()
        m = u.search(queries, args.k, threads=args.threads)
        score("usearch M16 ef64", t1 - t0, time.perf_counter() - t1, np.asarray(m.keys).astype(np.int64))


if __name__ == "__main__":
    main()
