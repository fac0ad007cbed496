"""Per-image features computed once and kept on disk, so verification never decodes an image again.

``fingerprint_chunk`` takes each image's features from the per-picture cache (``featcache``) or decodes the image
once, writes under the store folder the ORB keypoints and descriptors and the 320-px grey copy that ``verify_pair``
needs (memory-mappable ``.npy`` files, one set per chunk), and returns the small candidate descriptors to the
caller. ``verify_chunk`` then checks a batch of candidate pairs from those files. Both are plain functions of
(paths, folder), so the same code runs in a local process pool or on Dask workers; on a cluster the folder must be
on a filesystem every worker sees (as the images are).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..imageio import decode_image
from .descriptors import N_CROPS, SIDE
from .featcache import FeatureCache, is_key, picture_features
from .features import GATE_KEYPOINTS, MAX_KEYPOINTS, STAGES, Features, Verdict, binary_index, decide


def _files(store: Path, chunk: int) -> dict[str, Path]:
    return {k: store / f"c{chunk:06d}.{k}.npy" for k in ("desc", "pts", "nkp", "top", "thumb", "toff", "tshape")}


def fingerprint_chunk(paths: list[str], chunk: int, store: str, keys: list[str] | None = None,
                      cache: str | None = None, tag: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of ``paths`` into the run's store; return ``(raw descriptors, ok, counts)``.

    With ``cache`` (a ``featcache`` folder) and ``keys`` (the pictures' ``pixel_sha256``), stored features are
    read instead of decoding, and what had to be computed is stored; otherwise each image is decoded once here.
    ``ok`` is False for a file that can no longer be decoded (its descriptors are zeros); ``counts`` is
    ``(reused, computed, unreadable cache entries)``.
    """
    import cv2

    n = len(paths)
    raw = np.zeros((n, N_CROPS, SIDE * SIDE), np.float32)
    ok = np.zeros(n, bool)
    desc = np.zeros((n, MAX_KEYPOINTS, 32), np.uint8)
    pts = np.zeros((n, MAX_KEYPOINTS, 2), np.float32)
    nkp = np.zeros(n, np.int32)
    top = np.full((n, GATE_KEYPOINTS), -1, np.int16)
    thumbs, shapes = [], np.zeros((n, 2), np.int32)
    orb = cv2.ORB_create(nfeatures=MAX_KEYPOINTS, fastThreshold=10)
    fc = FeatureCache(cache, tag) if cache is not None and keys is not None else None
    computed = 0
    for i, p in enumerate(paths):
        key = keys[i] if fc is not None and is_key(keys[i]) else None
        f = fc.get(key) if key is not None else None
        if f is None:
            try:
                pixels = decode_image(p).pixels
            except Exception:  # noqa: BLE001 - the manifest decoded it once; the caller reports a file changed since
                thumbs.append(np.zeros(0, np.uint8))
                continue
            f = picture_features(pixels, orb)
            computed += 1
            if key is not None:
                fc.put(key, f)
        ok[i] = True
        raw[i] = f["raw"]
        m = len(f["desc"])
        nkp[i] = m
        desc[i, :m] = f["desc"]
        pts[i, :m] = f["pts"]
        top[i, :len(f["top"])] = f["top"]
        thumbs.append(f["thumb"].ravel())
        shapes[i] = f["thumb"].shape
    toff = np.concatenate([[0], np.cumsum([len(t) for t in thumbs])]).astype(np.int64)
    f = _files(Path(store), chunk)
    Path(store).mkdir(parents=True, exist_ok=True)
    flat = np.concatenate(thumbs) if thumbs else np.zeros(0, np.uint8)
    arrays = {"desc": desc, "pts": pts, "nkp": nkp, "top": top, "thumb": flat, "toff": toff, "tshape": shapes}
    for k, a in arrays.items():
        tmp = f[k].with_suffix(".tmp.npy")
        np.save(tmp, a)
        tmp.replace(f[k])
    counts = np.array([fc.hits if fc else 0, computed, fc.bad if fc else 0], np.int64)
    return raw, ok, counts


@functools.lru_cache(maxsize=64)
def _open(store: str, chunk: int) -> dict[str, np.ndarray]:
    return {k: np.load(p, mmap_mode="r") for k, p in _files(Path(store), chunk).items()}


def _features(store: str, chunk_size: int, i: int) -> Features:
    a = _open(store, i // chunk_size)
    j = i % chunk_size
    m = int(a["nkp"][j])
    h, w = (int(v) for v in a["tshape"][j])
    thumb = np.asarray(a["thumb"][a["toff"][j]:a["toff"][j + 1]]).reshape(h, w)
    strongest = np.asarray(a["top"][j])
    return thumb, np.asarray(a["pts"][j, :m]), np.asarray(a["desc"][j, :m]), strongest[strongest >= 0]


def _indexes(feat: Features) -> tuple | None:
    """The binary indexes ``decide`` matches against for a picture: all its descriptors, its strongest ones."""
    _, _, desc, strongest = feat
    if desc is None or len(desc) < 8:
        return None
    return binary_index(desc), binary_index(desc[strongest]) if len(strongest) == GATE_KEYPOINTS else None


def verify_chunk(pairs: np.ndarray, store: str, chunk_size: int, min_inliers: int, min_score: float,
                 strong_inliers: int, gate: int) -> np.ndarray:
    """``(m, 4)`` float64 ``(inliers, score, accepted, stage code)`` for image-index pairs ``(m, 2)`` read from the
    store (the stage code indexes ``features.STAGES``)."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # one pair at a time per worker: threads would only compete with other workers
    out = np.zeros((len(pairs), 4))
    current, feat_a, index_a = -1, None, None
    try:
        for r, (a, b) in enumerate(pairs):
            if int(a) != current:  # pairs come sorted by their first image: its indexes serve a run of pairs
                current, feat_a = int(a), _features(store, chunk_size, int(a))
                index_a = _indexes(feat_a)
            v: Verdict = decide(feat_a, _features(store, chunk_size, int(b)), min_inliers, min_score, strong_inliers,
                                gate, index_a)
            out[r] = (v.inliers, v.score, v.accepted, STAGES.index(v.stage))
    finally:
        faiss.omp_set_num_threads(threads)  # in-process runs (one worker) leave the caller's setting as it was
    return out
