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
from .features import VERIFY_SIDE, Verdict, decide

MAX_KEYPOINTS = 800


def _files(store: Path, chunk: int) -> dict[str, Path]:
    return {k: store / f"c{chunk:06d}.{k}.npy" for k in ("desc", "pts", "nkp", "thumb", "toff", "tshape")}


def fingerprint_chunk(paths: list[str], chunk: int, store: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``paths`` once each; write their verification features; return ``(raw descriptors, ok)``.

    ``ok`` is False for a file that can no longer be decoded (its descriptors are zeros).
    """
    import cv2

    from .descriptors import N_CROPS, SIDE, raw_descriptors

    n = len(paths)
    raw = np.zeros((n, N_CROPS, SIDE * SIDE), np.float32)
    ok = np.zeros(n, bool)
    desc = np.zeros((n, MAX_KEYPOINTS, 32), np.uint8)
    pts = np.zeros((n, MAX_KEYPOINTS, 2), np.float32)
    nkp = np.zeros(n, np.int32)
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
        h, w = pixels.shape
        s = VERIFY_SIDE / max(h, w)
        thumb = cv2.resize(pixels, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        kps, d = orb.detectAndCompute(cv2.equalizeHist(thumb), None)
        if d is not None:
            m = min(len(kps), MAX_KEYPOINTS)
            nkp[i] = m
            desc[i, :m] = d[:m]
            pts[i, :m] = [k.pt for k in kps[:m]]
        thumbs.append(thumb.ravel())
        shapes[i] = thumb.shape
    toff = np.concatenate([[0], np.cumsum([len(t) for t in thumbs])]).astype(np.int64)
    f = _files(Path(store), chunk)
    Path(store).mkdir(parents=True, exist_ok=True)
    flat = np.concatenate(thumbs) if thumbs else np.zeros(0, np.uint8)
    arrays = {"desc": desc, "pts": pts, "nkp": nkp, "thumb": flat, "toff": toff, "tshape": shapes}
    for k, a in arrays.items():
        tmp = f[k].with_suffix(".tmp.npy")
        np.save(tmp, a)
        tmp.replace(f[k])
    return raw, ok


@functools.lru_cache(maxsize=64)
def _open(store: str, chunk: int) -> dict[str, np.ndarray]:
    return {k: np.load(p, mmap_mode="r") for k, p in _files(Path(store), chunk).items()}


def _features(store: str, chunk_size: int, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = _open(store, i // chunk_size)
    j = i % chunk_size
    m = int(a["nkp"][j])
    h, w = (int(v) for v in a["tshape"][j])
    thumb = np.asarray(a["thumb"][a["toff"][j]:a["toff"][j + 1]]).reshape(h, w)
    return thumb, np.asarray(a["pts"][j, :m]), np.asarray(a["desc"][j, :m])


def verify_chunk(pairs: np.ndarray, store: str, chunk_size: int, min_inliers: int, min_score: float,
                 strong_inliers: int) -> np.ndarray:
    """``(m, 3)`` float64 ``(inliers, score, accepted)`` for image-index pairs ``(m, 2)`` read from the store."""
    out = np.zeros((len(pairs), 3))
    for r, (a, b) in enumerate(pairs):
        v: Verdict = decide(_features(store, chunk_size, int(a)), _features(store, chunk_size, int(b)),
                            min_inliers, min_score, strong_inliers)
        out[r] = (v.inliers, v.score, v.accepted)
    return out
