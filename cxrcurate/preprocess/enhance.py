"""Contrast enhancement and geometry for 8-bit grayscale chest X-rays: CLAHE, BEASF, histogram matching, resizing.

COVID-CXNet feeds its model three views of one radiograph: the image itself, a CLAHE-enhanced copy (local contrast,
so faint opacities stand out) and a BEASF-enhanced copy (global contrast around each half's median, so the lung
fields and the mediastinum both keep detail). ``render`` builds that stack at the model's size.

Every function takes and returns 2-D ``uint8`` arrays (the ``imageio.decode_image`` output); ``render`` returns
``(C, size, size)`` ``uint8``. Enhancement runs on the resized image, before any padding: padding would shift the
histogram (BEASF's mean and medians) and CLAHE's tiles, and enhancing at full resolution would cost several times
more for an output that is downsampled anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

from .config import PreprocessConfig

_LEVELS = np.arange(256, dtype=np.float64)
_LINEAR_LIMIT = 1e-6  # below this sigmoid slope (gamma * 5) a half's mapping is its linear limit, the identity


def _as_gray(pixels: np.ndarray, what: str = "image") -> np.ndarray:
    """``pixels`` as a C-contiguous 2-D uint8 array.

    Raises:
        ValueError: not 2-D, not uint8, or empty.
    """
    arr = np.asarray(pixels)
    if arr.ndim != 2 or arr.dtype != np.uint8 or arr.size == 0:
        raise ValueError(f"{what} must be a non-empty 2-D uint8 array (imageio.decode_image output), "
                         f"got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)


def clahe(pixels: np.ndarray, clip_limit: float = 2.0, tile_grid: tuple[int, int] = (8, 8)) -> np.ndarray:
    """Contrast-limited adaptive histogram equalization (OpenCV), the paper's second channel.

    Raises:
        ValueError: ``pixels`` is not a 2-D uint8 array.
    """
    return _clahe_op(float(clip_limit), int(tile_grid[0]), int(tile_grid[1])).apply(_as_gray(pixels))


@lru_cache(maxsize=8)
def _clahe_op(clip_limit: float, columns: int, rows: int) -> cv2.CLAHE:
    """One OpenCV CLAHE object per parameter set and process (creating one per image costs as much as using it)."""
    return cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(columns, rows))


def histogram(pixels: np.ndarray) -> np.ndarray:
    """The 256-bin gray-level histogram of a 2-D uint8 image (float64 counts).

    Raises:
        ValueError: ``pixels`` is not a 2-D uint8 array.
    """
    return cv2.calcHist([_as_gray(pixels)], [0], None, [256], [0, 256]).ravel().astype(np.float64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # 1 / (1 + exp(-x)) without overflow


def _half_median(levels: np.ndarray, counts: np.ndarray) -> float:
    """The median level of one half: the first level where the half's own CDF reaches 1/2."""
    cdf = np.cumsum(counts) / counts.sum()
    return float(levels[int(np.searchsorted(cdf, 0.5))])


def _half_map(levels: np.ndarray, counts: np.ndarray, lo: int, hi: int, gamma: float) -> np.ndarray:
    """Map the ``levels`` of one half onto ``[lo, hi]`` with a sigmoid centred on the half's median.

    ``s(t) = 1 / (1 + exp(-gamma * 5 * (t - h) / w))`` with ``w = hi - lo``, rescaled so that ``s(lo)`` maps to
    ``lo`` and ``s(hi)`` to ``hi``. A half with no pixels, no width or a vanishing slope maps linearly (the
    identity), which is also the sigmoid's limit as ``gamma`` goes to 0.
    """
    width = hi - lo
    if levels.size == 0 or width == 0 or counts.sum() == 0 or gamma * 5.0 < _LINEAR_LIMIT:
        return levels.astype(np.float64)
    median = _half_median(levels, counts)
    k = gamma * 5.0 / width
    s_lo, s_hi = _sigmoid(k * (lo - median)), _sigmoid(k * (hi - median))
    span = s_hi - s_lo
    if span <= 1e-12:  # numerically flat sigmoid: its limit is linear
        return levels.astype(np.float64)
    return lo + (_sigmoid(k * (levels - median)) - s_lo) / span * width


def beasf_lut_from_histogram(hist: np.ndarray, gamma: float = 1.5) -> np.ndarray:
    """The BEASF lookup table (256 ``uint8`` entries) of a 256-bin histogram.

    Bi-histogram Equalization with Adaptive Sigmoid Functions (Arriaga-Garcia et al., 2014): the histogram is split
    at its integer mean ``m`` (the integer part of the mean level); levels ``0..m`` map onto ``[0, m]`` and levels
    ``m+1..255`` onto ``[m, 255]``, each half through a sigmoid centred on that half's median, so contrast grows
    around each median while the mean's place and the range's ends stay put. The table is non-decreasing.

    Args:
        hist: pixel counts per gray level (length 256, non-negative).
        gamma: sigmoid steepness; 0 gives the identity, larger values a steeper S around each median.

    Raises:
        ValueError: ``hist`` is not 256 non-negative counts, or ``gamma`` is negative.
    """
    hist = np.asarray(hist, dtype=np.float64)
    if hist.shape != (256,) or np.any(hist < 0) or not np.all(np.isfinite(hist)):
        raise ValueError(f"hist must hold 256 non-negative counts, got shape {hist.shape}")
    if not gamma >= 0:
        raise ValueError(f"gamma={gamma} must be >= 0")
    total = hist.sum()
    if total == 0:
        return np.arange(256, dtype=np.uint8)
    m = int(np.floor(float(hist @ _LEVELS) / total + 1e-9))  # tolerance: an exact integer mean must not drop by one
    lut = np.concatenate([
        _half_map(_LEVELS[: m + 1], hist[: m + 1], 0, m, gamma),
        _half_map(_LEVELS[m + 1:], hist[m + 1:], m, 255, gamma),
    ])
    lut = np.maximum.accumulate(np.clip(np.rint(lut), 0, 255))  # rounding keeps order; accumulate guards it
    return lut.astype(np.uint8)


def beasf_lut(pixels: np.ndarray, gamma: float = 1.5) -> np.ndarray:
    """The BEASF lookup table of an image (see ``beasf_lut_from_histogram``).

    Raises:
        ValueError: ``pixels`` is not a 2-D uint8 array, or ``gamma`` is negative.
    """
    return beasf_lut_from_histogram(histogram(pixels), gamma)


def beasf(pixels: np.ndarray, gamma: float = 1.5) -> np.ndarray:
    """BEASF-enhanced copy of an image, the paper's third channel (gamma 1.5 there).

    Raises:
        ValueError: ``pixels`` is not a 2-D uint8 array, or ``gamma`` is negative.
    """
    pixels = _as_gray(pixels)
    return cv2.LUT(pixels, beasf_lut(pixels, gamma))


def match_histogram(pixels: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``pixels`` with its gray-level distribution matched to ``reference`` (scikit-image ``match_histograms``).

    Used in the multiclass setup so that images from sources with different exposure habits look alike, and the
    model cannot tell the class from the source's look.

    Raises:
        ValueError: either array is not 2-D uint8.
    """
    from skimage.exposure import match_histograms

    out = match_histograms(_as_gray(pixels), _as_gray(reference, "reference"))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def fit_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """``(h, w)`` of an image scaled so that its longer side is ``size`` (aspect ratio kept, each side >= 1)."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``pixels`` resized to ``shape = (h, w)``: area averaging when shrinking (no aliasing), bilinear otherwise.

    Raises:
        ValueError: ``pixels`` is not a 2-D uint8 array.
    """
    pixels = _as_gray(pixels)
    h, w = int(shape[0]), int(shape[1])
    if (h, w) == pixels.shape:
        return pixels.copy()
    shrink = h <= pixels.shape[0] and w <= pixels.shape[1]
    return cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def pad_square(pixels: np.ndarray, size: int, value: int = 0) -> np.ndarray:
    """``pixels`` centred on a ``size x size`` canvas of ``value`` (sides longer than ``size`` are an error).

    Raises:
        ValueError: the image does not fit.
    """
    h, w = pixels.shape[-2:]
    if h > size or w > size:
        raise ValueError(f"a {w}x{h} image does not fit a {size}x{size} canvas")
    top, left = (size - h) // 2, (size - w) // 2
    out = np.full(pixels.shape[:-2] + (size, size), value, dtype=pixels.dtype)
    out[..., top:top + h, left:left + w] = pixels
    return out


def _views(pixels: np.ndarray, channels: Sequence[str], clahe_clip: float, clahe_grid: tuple[int, int],
           beasf_gamma: float) -> dict[str, np.ndarray]:
    """Each distinct view among ``channels``, computed once."""
    makers = {"original": lambda: pixels, "clahe": lambda: clahe(pixels, clahe_clip, clahe_grid),
              "beasf": lambda: beasf(pixels, beasf_gamma)}
    unknown = [c for c in channels if c not in makers]
    if unknown or not channels:
        raise ValueError(f"channels {list(channels)} must be a non-empty list of {list(makers)}")
    return {name: makers[name]() for name in dict.fromkeys(channels)}


def channel_stack(pixels: np.ndarray, channels: Sequence[str], clahe_clip: float = 2.0,
                  clahe_grid: tuple[int, int] = (8, 8), beasf_gamma: float = 1.5) -> np.ndarray:
    """``(C, H, W)`` uint8: the image's ``original``, ``clahe`` and ``beasf`` views in the order asked for.

    Each distinct view is computed once, whatever the number of times it is asked for.

    Raises:
        ValueError: an unknown channel name, or ``pixels`` is not a 2-D uint8 array.
    """
    views = _views(_as_gray(pixels), channels, clahe_clip, clahe_grid, beasf_gamma)
    return np.stack([views[c] for c in channels])


def render(pixels: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """The model input of an (already cropped) image: resized, enhanced, stacked, padded: ``(C, size, size)`` uint8.

    Raises:
        ValueError: ``pixels`` is not a 2-D uint8 array.
    """
    pixels = _as_gray(pixels)
    size = config.size
    h, w = (size, size) if config.resize == "stretch" else fit_shape(*pixels.shape, size)
    views = _views(resize(pixels, (h, w)), config.channels, config.clahe_clip, config.clahe_grid, config.beasf_gamma)
    out = np.full((len(config.channels), size, size), config.pad_value, dtype=np.uint8)
    top, left = (size - h) // 2, (size - w) // 2  # the same placement as pad_square
    for i, name in enumerate(config.channels):
        out[i, top:top + h, left:left + w] = views[name]
    return out
