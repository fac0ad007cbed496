"""Per-image features computed once and kept on disk, so verification never decodes an image again.

``fingerprint_chunk`` decodes each image of one chunk exactly once and writes, under the store folder, the ORB
keypoints and descriptors and the 320-px grey copy that ``verify_pair`` needs (memory-mappable ``.npy`` files,
one set per chunk), and returns the small candidate descriptors to the caller. ``verify_chunk`` then checks a
batch of candidate pairs from those files. Both are plain functions of (paths, folder), so the same code runs in
a local process pool or on Dask workers; on a cluster the folder must be on a filesystem every worker sees (as
the images are).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..imageio import decode_image
from .descriptors import N_CROPS, SIDE, raw_descriptors
from .features import GATE_KEYPOINTS, MAX_KEYPOINTS, STAGES, Features, Verdict, binary_index, decide, orb_features


def _files(store: Path, chunk: int) -> dict[str, Path]:
    return {k: store / f"c{chunk:06d}.{k}.npy" for k in ("desc", "pts", "nkp", "top", "thumb", "toff", "tshape")}


def fingerprint_chunk(paths: list[str], chunk: int, store: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``paths`` once each; write their verification features; return ``(raw descriptors, ok)``.

    ``ok`` is False for a file that can no longer be decoded (its descriptors are zeros).
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
    for i, p in enumerate(paths):
        try:
            pixels = decode_image(p).pixels
        except Exception:  # noqa: BLE001 - the manifest decoded it once; the caller reports a file changed since
            thumbs.append(np.zeros(0, np.uint8))
            continue
        ok[i] = True
        raw[i] = raw_descriptors(pixels)
        thumb, p, d, strongest = orb_features(pixels, orb)
        if d is not None:
            m = len(d)
            nkp[i] = m
            desc[i, :m] = d
            pts[i, :m] = p
            top[i, :len(strongest)] = strongest
        thumbs.append(thumb.ravel())
        shapes[i] = thumb.shape
    toff = np.concatenate([[0], np.cumsum([len(t) for t in thumbs])]).astype(np.int64)
    f = _files(Path(store), chunk)
    Path(store).mkdir(parents=True, exist_ok=True)
    flat = np.concatenate(thumbs) if thumbs else np.zeros(0, np.uint8)
    arrays = {"desc": desc, "pts": pts, "nkp": nkp, "top": top, "thumb": flat, "toff": toff, "tshape": shapes}
    for k, a in arrays.items():
        tmp = f[k].with_suffix(".tmp.npy")
        np.save(tmp, a)
        tmp.replace(f[k])
    return raw, ok


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
