"""Crop-tolerant global descriptors and their nearest-neighbour search: the candidate stage of dedup.

Why: real re-publications of a radiograph are tighter or wider crops, zooms, padded, re-windowed, annotated or
slightly rotated versions of each other, and a global pHash of two such copies is as far apart as two different
patients. So every picture is first brought to a *canonical view* (padding trimmed, histogram equalised), and
described by ``N_CROPS`` (25) small blurred thumbnails of windows of it: across and down independently, the whole
side, 85% of it (at the start, centre or end) or its centred 70%. A copy's whole view then resembles one of the
other picture's windows whatever was cut off, on one side or two, evenly or not. The raw descriptors are whitened
with a PCA fitted on the run's own descriptors (chest X-rays all share one layout; whitening removes that common
part) and each image's whole view is searched for its ``k`` nearest windows among all images with faiss (exact
inner product below ``EXACT_LIMIT`` vectors, IVF beyond). Each image yields at most ``k`` candidate pairs, so the
stage grows linearly with the collection.

Measured (docs/dedup.md): on 1,820 real images of five collections, with ``k=8``, recall 0.994 of the 693
eye-checked copy pairs at precision 1.000; among 20,000 synthetic pictures 96% of planted crop copies are found
(86% with the first design's 16 square windows, 90/80/70% centred or against one edge).
"""

from __future__ import annotations

import numpy as np

from .features import trim_borders

SIDE = 12  # descriptor thumbnail side (SIDE**2 raw dimensions)
WHITE_DIMS = 64  # dimensions kept after whitening
CANON = 128  # side of the canonical view the crops are cut from
# Windows along one axis, as (share of the side kept, where the window sits: 0 start, 0.5 centre, 1 end). A crop is
# one window across and one down, so tighter crops of either side alone, and off-centre ones, are covered.
AXIS_WINDOWS = ((1.0, 0.5), (0.85, 0.0), (0.85, 0.5), (0.85, 1.0), (0.7, 0.5))
EXACT_LIMIT = 200_000  # up to this many indexed vectors the search is exact (faiss flat or numpy)
# IVF lists probed per query beyond EXACT_LIMIT (of sqrt(vectors) lists). Measured on 100,000 synthetic pictures
# (benchmarks/bench_dedup_scale.py): the candidates held 95.0% of the planted crop copies at 16, 97.8% at 64
# (exact search: 99.7% at 20,000), for 65 s against 199 s of search on 2 cores.
NPROBE = 64
N_CROPS = len(AXIS_WINDOWS) ** 2


def canonical_view(pixels: np.ndarray) -> np.ndarray:
    """The picture with black/white padding trimmed, resized to ``CANON`` x ``CANON`` and histogram-equalised."""
    import cv2

    t = cv2.resize(trim_borders(pixels), (CANON, CANON), interpolation=cv2.INTER_AREA)
    return cv2.equalizeHist(t)


def _crops(view: np.ndarray) -> list[np.ndarray]:
    """The ``N_CROPS`` windows of the view, the whole view first (it is what each image queries with)."""
    h, w = view.shape
    out = []
    for sy, fy in AXIS_WINDOWS:
        ch = int(round(h * sy))
        y = int(round((h - ch) * fy))
        for sx, fx in AXIS_WINDOWS:
            cw = int(round(w * sx))
            x = int(round((w - cw) * fx))
            out.append(view[y:y + ch, x:x + cw])
    return out


def raw_descriptors(pixels: np.ndarray) -> np.ndarray:
    """``(N_CROPS, SIDE**2)`` float32: zero-mean, unit-norm blurred thumbnails of the canonical view's crops."""
    import cv2

    out = np.empty((N_CROPS, SIDE * SIDE), np.float32)
    for i, c in enumerate(_crops(canonical_view(pixels))):
        t = cv2.resize(c, (64, 64), interpolation=cv2.INTER_AREA)
        out[i] = cv2.resize(t, (SIDE, SIDE), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    out -= out.mean(axis=1, keepdims=True)
    out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-6
    return out


def fit_whitening(raw: np.ndarray, dims: int = WHITE_DIMS, sample: int = 100_000,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """PCA whitening ``(mean, projection)`` fitted on (a seeded sample of) the ``(n, crops, d)`` descriptors.

    The principal axes come from ``eigh`` of the ``d x d`` covariance (the same axes and scales as an SVD of the
    centred data, up to each axis's sign, which whitened inner products do not see), on one BLAS thread: the SVD
    of the full sample took 0.5 s on one thread and 7-17 s with several on a busy machine (docs/dedup.md).
    """
    from threadpoolctl import threadpool_limits

    x = raw.reshape(-1, raw.shape[-1])
    if len(x) > sample:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), sample, replace=False))]
    with threadpool_limits(limits=1):
        x = x.astype(np.float64)
        mean = x.mean(axis=0)
        x -= mean
        values, vectors = np.linalg.eigh(x.T @ x / len(x))
    order = np.argsort(values)[::-1]
    dims = min(dims, len(values))
    scale = np.sqrt(np.clip(values[order[:dims]], 0.0, None))
    proj = vectors[:, order[:dims]].T / (scale[:, None] + 1e-3)
    return mean.astype(np.float32), proj.astype(np.float32)


def whiten(raw: np.ndarray, mean: np.ndarray, proj: np.ndarray) -> np.ndarray:
    """Whitened, unit-norm descriptors, same leading shape as ``raw``."""
    w = (raw - mean) @ proj.T
    w /= np.linalg.norm(w, axis=-1, keepdims=True) + 1e-6
    return np.ascontiguousarray(w, dtype=np.float32)


def build_index(vectors: np.ndarray, threads: int = 1):
    """A faiss inner-product index over ``(m, d)`` vectors (exact up to ``EXACT_LIMIT``, IVF-Flat beyond).

    The IVF quantiser is trained with a fixed seed, so the same vectors give the same index on any machine:
    the local and the distributed engine find the same candidates. None when faiss is not installed.
    """
    try:
        import faiss
    except ImportError:
        if len(vectors) > EXACT_LIMIT:
            import logging

            logging.getLogger(__name__).warning("faiss is not installed: searching %d descriptors by brute force "
                                                "(quadratic time); pip install faiss-cpu", len(vectors))
        return None
    faiss.omp_set_num_threads(max(1, threads))
    m, d = vectors.shape
    if m <= EXACT_LIMIT:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(np.sqrt(m))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 1234
        train = vectors[np.sort(np.random.default_rng(0).choice(m, min(m, 40 * nlist), replace=False))]
        index.train(train)
        index.nprobe = NPROBE
    index.add(vectors)
    return index


def search(index, vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row ids of the ``k`` best inner products for each query (-1 where fewer); numpy when ``index`` is None."""
    if index is not None:
        return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)[1]
    out = np.empty((len(queries), k), np.int64)
    for s in range(0, len(queries), 1024):
        sims = queries[s:s + 1024] @ vectors.T
        kk = min(k, sims.shape[1])
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        order = np.take_along_axis(sims, top, 1).argsort(axis=1)[:, ::-1]
        out[s:s + 1024, :kk] = np.take_along_axis(top, order, 1)
        out[s:s + 1024, kk:] = -1
    return out


def neighbour_pairs(owner_rows: np.ndarray, labels: np.ndarray, query_owner: np.ndarray, k: int) -> np.ndarray:
    """``(m, 2)`` sorted image pairs: each query image with the first ``k`` other images among its hits."""
    rows = []
    for q, hits in zip(query_owner, labels, strict=True):
        seen: list[int] = []
        for v in hits:
            if v < 0:
                break
            o = int(owner_rows[v])
            if o != q and o not in seen:
                seen.append(o)
                if len(seen) == k:
                    break
        rows += [(min(q, o), max(q, o)) for o in seen]
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def candidate_pairs(white: np.ndarray, k: int, threads: int = 1, query_chunk: int | None = None) -> np.ndarray:
    """Unique ``(a, b)`` image pairs, ``a < b``: every image's whole view against all crops of all images.

    ``white`` is ``(n, N_CROPS, d)``; the search asks for ``3 * k`` crops so that ``k`` distinct other images
    remain after dropping the image's own crops and repeats.
    """
    n, c, d = white.shape
    if n < 2 or k <= 0:
        return np.zeros((0, 2), np.int64)
    flat = white.reshape(-1, d)
    owner = np.repeat(np.arange(n), c)
    index = build_index(flat, threads)
    labels = search(index, flat, white[:, 0], min(3 * k + c, len(flat)))
    pairs = neighbour_pairs(owner, labels, np.arange(n), k)
    return np.unique(pairs, axis=0) if len(pairs) else pairs
