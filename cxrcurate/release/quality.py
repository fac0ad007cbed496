"""Quality flags of one image, computed from its decoded 8-bit grayscale pixels; a flag never drops a row.

Each flag is a plain threshold on one or two measurements, so a reader can see why an image was flagged (the
measurements travel with the release in ``quality``). Thresholds were set on the eye-checked truth set
``manifests/v1/quality-truth.csv`` and their precision/recall on it is in the release's card; they are
heuristics, not a classifier:

- ``flag_inverted``: a negative radiograph (bones dark, lungs bright). In a frontal chest film the spine column is
  brighter than the lungs beside it; here it is clearly darker while the image is left-right symmetric enough to
  be frontal.
- ``flag_lateral``: looks like a lateral or oblique view although it is filed as frontal or unknown: the image is
  far from mirror-symmetric and shows no bright spine column between darker lungs.
- ``flag_low_information``: near-blank or washed out: little contrast (grey-level spread) or few grey levels used.
- ``flag_figure``: a figure crop with panels or heavy burnt-in text: many small saturated-white components shaped
  like characters, or interior rows/columns of one flat colour (panel separators).
- ``flag_small``: the ORIGINAL file's shorter side is under ``SMALL_SIDE`` pixels (from its recorded dimensions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SMALL_SIDE = 300
FLAGS = ("flag_inverted", "flag_lateral", "flag_low_information", "flag_figure", "flag_small")


@dataclass(frozen=True)
class Thresholds:
    """The cut-offs of the flags (see the module docstring); every one is written into the release metadata."""

    inverted_spine: float = -20.0  # spine column minus lungs, grey levels (0..255), below -> inverted
    inverted_min_symmetry: float = 0.4  # and the image is at least this mirror-symmetric
    lateral_symmetry: float = 0.5  # mirror correlation below ...
    lateral_spine: float = 0.0  # ... and spine column minus lungs below -> lateral/oblique
    low_std: float = 15.5  # grey-level standard deviation below -> low information
    low_entropy: float = 3.0  # or histogram entropy (bits) below
    figure_text_components: int = 20  # character-like saturated-white components, at or above -> figure/text
    figure_flat_lines: int = 3  # interior rows or columns of one flat colour, at or above -> panels
    small_side: int = SMALL_SIDE


def _resize(pixels: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.BILINEAR), dtype=np.float32)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _text_components(pixels: np.ndarray) -> int:
    """Connected saturated-white blobs the size and shape of burnt-in characters."""
    from scipy import ndimage

    labels, n = ndimage.label(pixels >= 235)
    if n == 0:
        return 0
    areas = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    count = 0
    for box, area in zip(ndimage.find_objects(labels), areas, strict=True):
        h, w = box[0].stop - box[0].start, box[1].stop - box[1].start
        count += 8 <= area <= 400 and 4 <= h <= 30 and w <= 40
    return int(count)


def _flat_lines(pixels: np.ndarray) -> int:
    """Interior rows plus columns (10% margins cut) whose grey levels barely vary: panel borders."""
    g = pixels.astype(np.float32)
    total = 0
    for a in (g, g.T):
        m = int(len(a) * 0.1)
        total += int((a[m:len(a) - m].std(axis=1) < 3).sum())
    return total


def measure(pixels: np.ndarray) -> dict[str, float]:
    """The measurements the flags threshold (rounded, so a release is byte-stable across platforms)."""
    s = _resize(pixels, 64)
    cols = s[16:48].mean(axis=0)
    spine = cols[28:36].mean() - (cols[8:20].mean() + cols[44:56].mean()) / 2
    c = _resize(pixels, 128)[8:120, 8:120]
    hist = np.bincount(pixels.ravel(), minlength=256) / pixels.size
    nz = hist[hist > 0]
    return {
        "spine_minus_lungs": round(float(spine), 2),
        "symmetry": round(_corr(c, c[:, ::-1]), 3),
        "std": round(float(pixels.std()), 2),
        "entropy": round(float(-(nz * np.log2(nz)).sum()), 3),
        "text_components": _text_components(pixels),
        "flat_lines": _flat_lines(pixels),
    }


def flags(m: dict[str, float], original_width: int | None, original_height: int | None, view: str,
          t: Thresholds = Thresholds()) -> dict[str, bool | None]:
    """The five flags of one image from its measurements, its original dimensions and its filed view."""
    small = None if original_width is None or original_height is None else \
        min(original_width, original_height) < t.small_side
    return {
        "flag_inverted": bool(m["spine_minus_lungs"] < t.inverted_spine and m["symmetry"] >= t.inverted_min_symmetry),
        "flag_lateral": bool(view != "L" and m["symmetry"] < t.lateral_symmetry
                             and m["spine_minus_lungs"] < t.lateral_spine),
        "flag_low_information": bool(m["std"] < t.low_std or m["entropy"] < t.low_entropy),
        "flag_figure": bool(m["text_components"] >= t.figure_text_components
                            or m["flat_lines"] >= t.figure_flat_lines),
        "flag_small": small,
    }
