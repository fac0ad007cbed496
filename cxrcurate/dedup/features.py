"""Verification of a candidate pair: is it one picture (up to resize, re-encoding, crop, pad, rotation, levels)?

Candidates come from hashes and crop-tolerant descriptors (``descriptors``); every one is then *verified*: ORB
keypoints matched between the two pictures, a similarity transform (rotation, scale, shift) fitted with RANSAC,
and a robust normalised correlation of the aligned pixels. Different chest X-rays, even of one patient on
consecutive days, do not survive both. ``store`` computes the features once per image for a whole run.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import numpy as np

from ..imageio import decode_image

VERIFY_SIDE = 320  # long side of the picture ORB runs on
MAX_KEYPOINTS = 800  # ORB keypoints per picture (in the detector's order; ``orb_features``)
GATE_KEYPOINTS = 300  # the strongest keypoints the cheap gate matches before the full match
GATE_MATCHES = 14  # fewer ratio-test matches among those: not a copy, the full match is skipped


@dataclass(frozen=True)
class Verdict:
    """Evidence for one pair: ORB/RANSAC inliers, robust correlation of the aligned pixels, and the decision.

    ``stage`` says how far the pair got, and so what ``inliers`` counts: ``gate`` (stopped by the cheap gate:
    ratio-test matches among the ``GATE_KEYPOINTS`` strongest keypoints of each picture), ``matches`` (too few
    ratio-test matches among all keypoints for RANSAC: their count, an upper bound on inliers) or ``ransac``
    (RANSAC inliers; ``score`` is the correlation when the transform was plausible).
    """

    inliers: int
    score: float
    accepted: bool
    stage: str = "ransac"


Features = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]

STAGES = ("exact", "gate", "matches", "ransac")  # codes of ``Verdict.stage`` in arrays (``store.verify_chunk``)


def trim_borders(pixels: np.ndarray, level: int = 12, share: float = 0.5) -> np.ndarray:
    """Cut off rows and columns that are mostly black or white padding (more than ``share`` of their pixels)."""
    flat = (pixels < level) | (pixels > 255 - level)
    rows = np.flatnonzero(flat.mean(axis=1) < share)
    cols = np.flatnonzero(flat.mean(axis=0) < share)
    if len(rows) < 16 or len(cols) < 16:
        return pixels
    return pixels[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def orb_features(pixels: np.ndarray, orb=None) -> Features:
    """``(320-px grey copy, keypoint xy, ORB descriptors, strongest)`` of a picture.

    Keypoints stay in the detector's order (the order the thresholds were calibrated with: RANSAC's samples,
    and so borderline inlier counts, depend on it); ``strongest`` holds the indices of the ``GATE_KEYPOINTS``
    keypoints of highest response, which the gate of ``decide`` matches.
    """
    import cv2

    h, w = pixels.shape
    s = VERIFY_SIDE / max(h, w)
    thumb = cv2.resize(pixels, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    orb = orb or cv2.ORB_create(nfeatures=MAX_KEYPOINTS, fastThreshold=10)
    keypoints, descriptors = orb.detectAndCompute(cv2.equalizeHist(thumb), None)
    if descriptors is None or not keypoints:
        return thumb, np.zeros((0, 2), np.float32), None, np.zeros(0, np.int16)
    keypoints, descriptors = keypoints[:MAX_KEYPOINTS], descriptors[:MAX_KEYPOINTS]
    strongest = np.argsort([-k.response for k in keypoints], kind="stable")[:GATE_KEYPOINTS].astype(np.int16)
    return thumb, np.float32([k.pt for k in keypoints]), descriptors, strongest


def _orb(path: str) -> Features:
    return orb_features(decode_image(path).pixels)


_orb_cached = functools.lru_cache(maxsize=256)(_orb)


def _moments(x: np.ndarray, y: np.ndarray) -> tuple[int, float, float, float, float, float]:
    """``(n, mean x, std x, mean y, std y, covariance)`` of two integer arrays from exact integer sums, so the result
    does not depend on how a float reduction is ordered (memory alignment, SIMD width, threads)."""
    n = len(x)
    sx, sy = int(x.sum()), int(y.sum())
    sxx, syy, sxy = int((x * x).sum()), int((y * y).sum()), int((x * y).sum())
    nn = n * n
    return (n, sx / n, math.sqrt((n * sxx - sx * sx) / nn), sy / n, math.sqrt((n * syy - sy * sy) / nn),
            (n * sxy - sx * sy) / nn)


def _robust_correlation(a: np.ndarray, b: np.ndarray, keep: float = 0.9) -> float:
    """Correlation of two aligned pixel sets, ignoring the ``1 - keep`` worst residuals (burned-in labels).

    Computed exactly, so the same pictures give the same bits on any machine and run: the grey levels are taken on
    a 1/1024 grid (a linear warp of 8-bit pixels lands on it already: OpenCV interpolates with 5-bit weights per
    axis) and every mean, spread and covariance is a ratio of exact integer sums.
    """
    x = np.rint(np.asarray(a, np.float64) * 1024).astype(np.int64)
    y = np.rint(np.asarray(b, np.float64) * 1024).astype(np.int64)
    _, mx, sx, my, sy, _ = _moments(x, y)
    resid = np.abs((x - mx) / (sx + 1024e-6) - (y - my) / (sy + 1024e-6))  # elementwise: no order to depend on
    mask = resid <= np.quantile(resid, keep)
    _, _, sx, _, sy, cov = _moments(x[mask], y[mask])
    return float(cov / ((sx + 1024e-6) * (sy + 1024e-6)))


def verify_pair(path_a: str, path_b: str, min_inliers: int = 100, min_score: float = 0.99,
                strong_inliers: int = 220, gate: int = GATE_MATCHES) -> Verdict:
    """Decide whether two files show the same picture (up to resize, re-encoding, crop, pad, rotation, levels).

    ORB matches are filtered to those agreeing on one similarity transform (the inliers). The pair is accepted
    when there are at least ``strong_inliers`` of them, or at least ``min_inliers`` and the aligned pictures
    correlate at ``min_score`` or more (robust to a burned-in label). Look-alikes are the hard case. Measured on
    the shared collections: acquisitions of one patient days apart reached 100-219 inliers and correlated at
    0.96-0.98 once aligned; copies reached 227-750 inliers (re-cropped, straightened, annotated or overlaid
    ones at the low end, correlating 0.93-0.99). The margin is thin: a borderline merge joins two pictures of
    the *same patient*, which is harmless for splitting; a miss could leak, so the threshold leans to merging.
    See ``docs/dedup.md`` and ``benchmarks/bench_dedup.py``.

    Before the full match, a *gate* matches only the ``GATE_KEYPOINTS`` strongest keypoints of each picture
    (a tenth of the work) and stops pairs with fewer than ``gate`` ratio-test matches (0 turns it off). Measured
    on the 11,802 candidate pairs of 1,777 real images of five collections plus the eye-checked truth pairs:
    every accepted pair had at least 28 such matches, every pair with 60+ inliers at least 14, and the gate
    stops three in four candidates (docs/dedup.md, "The verification gate").
    """
    return decide(_orb_cached(path_a), _orb_cached(path_b), min_inliers, min_score, strong_inliers, gate)


def binary_index(descriptors: np.ndarray):
    """faiss's exact binary index over ORB descriptors: built once per picture and reused for every pair it is the
    first of (``store.verify_chunk``), instead of once per pair."""
    import faiss

    index = faiss.IndexBinaryFlat(descriptors.shape[1] * 8)
    index.add(np.ascontiguousarray(descriptors))
    return index


def _good_matches(da: np.ndarray, db: np.ndarray, index=None) -> tuple[np.ndarray, np.ndarray]:
    """Lowe's ratio test (0.8) on the two nearest ``da`` descriptors of each ``db`` descriptor (Hamming distance).

    Returns the indices ``(into db, into da)`` of the matches that pass, in ``db`` order. The search is faiss's
    exact binary index (the same matches as OpenCV's brute-force matcher, a third of its CPU time): a tie for the
    nearest fails the test either way, so which of the tied descriptors is reported never matters. ``index``: a
    ``binary_index(da)`` already built.
    """
    index = index if index is not None else binary_index(da)
    dist, idx = index.search(np.ascontiguousarray(db), 2)
    good = dist[:, 0] < 0.8 * dist[:, 1]
    return np.flatnonzero(good), idx[good, 0]


def decide(feat_a: Features, feat_b: Features, min_inliers: int = 100, min_score: float = 0.99,
           strong_inliers: int = 220, gate: int = GATE_MATCHES, index_a: tuple | None = None) -> Verdict:
    """``verify_pair`` on features already computed (``orb_features``: 320-px grey copy, keypoint xy, ORB
    descriptors, indices of the strongest keypoints). ``index_a``: ``binary_index`` of ``feat_a``'s descriptors
    and of its strongest ones, when the caller keeps them for several pairs (built here otherwise).

    ``inliers`` is the RANSAC inlier count; when there are fewer ratio-test matches than ``min_inliers`` the
    pair cannot be accepted, RANSAC is skipped and the match count (an upper bound on inliers) is reported; when
    the gate stops the pair, its match count among the strongest keypoints is reported (``Verdict.stage``).
    """
    import cv2

    ta, pa, da, sa = feat_a
    tb, pb, db, sb = feat_b
    if da is None or db is None or len(da) < 8 or len(db) < 8:
        return Verdict(0, 0.0, False, "matches")
    if gate > 0 and len(sa) == GATE_KEYPOINTS and len(sb) == GATE_KEYPOINTS:
        n = len(_good_matches(da[sa], db[sb], index_a[1] if index_a else None)[0])
        if n < gate:
            return Verdict(n, 0.0, False, "gate")
    query, train = _good_matches(da, db, index_a[0] if index_a else None)
    if len(query) < max(6, min(min_inliers, strong_inliers)):  # inliers <= matches: cannot be accepted, and
        return Verdict(len(query), 0.0, False, "matches")  # RANSAC is skipped; the match count is the evidence
    src = np.ascontiguousarray(pb[query])
    dst = np.ascontiguousarray(pa[train])
    cv2.setRNGSeed(0)  # RANSAC is randomised: the same pair must give the same evidence on every run
    transform, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=4.0,
                                                 maxIters=2000, confidence=0.995)
    if transform is None:
        return Verdict(0, 0.0, False)
    inliers = int(inl.sum())
    scale = float(np.sqrt(abs(np.linalg.det(transform[:, :2]))))
    if not 0.5 < scale < 2.0:
        return Verdict(inliers, 0.0, False)
    size = (ta.shape[1], ta.shape[0])
    warped = cv2.warpAffine(tb.astype(np.float32), transform, size, flags=cv2.INTER_LINEAR)
    valid = cv2.warpAffine(np.ones_like(tb, np.float32), transform, size) > 0.99
    if valid.mean() < 0.3:
        return Verdict(inliers, 0.0, False)
    score = _robust_correlation(ta.astype(np.float32)[valid], warped[valid])
    accepted = inliers >= strong_inliers or (inliers >= min_inliers and score >= min_score)
    return Verdict(inliers, round(score, 4), accepted)


def cpu_workers(workers: int | None) -> int:
    return workers or os.cpu_count() or 1
