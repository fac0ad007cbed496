"""The picture ``cxrcurate show`` writes: what preprocessing does to one image, step by step.

Top row, at the image's full extent: the original, its CLAHE and BEASF views, and the lung mask (red) with the
crop box (green). Bottom row: each channel of the model's input, then those channels shown as RGB. A user can see
at a glance whether the lungs were found and whether the crop cut anything off.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from ..imageio import decode_image
from .config import PreprocessConfig
from .enhance import beasf, clahe, fit_shape
from .pipeline import Preprocessor, Steps

TILE = 256
_LABEL_H = 18


def _tile(image: np.ndarray, label: str) -> np.ndarray:
    """An RGB ``TILE``-high tile (aspect kept, padded to ``TILE`` wide) with a caption above."""
    rgb = image if image.ndim == 3 else np.dstack([image] * 3)
    h, w = fit_shape(rgb.shape[0], rgb.shape[1], TILE)
    rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((TILE + _LABEL_H, TILE, 3), dtype=np.uint8)
    top, left = _LABEL_H + (TILE - h) // 2, (TILE - w) // 2
    canvas[top:top + h, left:left + w] = rgb
    im = Image.fromarray(canvas)
    ImageDraw.Draw(im).text((4, 3), label, fill=(255, 255, 255))
    return np.asarray(im)


def _overlay(steps: Steps) -> np.ndarray:
    """The original with the mask tinted red and the crop box in green."""
    rgb = np.dstack([steps.original] * 3).astype(np.float32)
    if steps.mask is not None:
        m = steps.mask.astype(bool)
        rgb[m] = 0.55 * rgb[m] + 0.45 * np.array([255, 0, 0], dtype=np.float32)
    rgb = rgb.astype(np.uint8)
    if steps.box is not None:
        top, bottom, left, right = steps.box
        thick = max(1, round(0.008 * max(rgb.shape[:2])))
        cv2.rectangle(rgb, (left, top), (right - 1, bottom - 1), (0, 255, 0), thick)
    return rgb


def make_panel(pixels: np.ndarray, config: PreprocessConfig, title: str = "") -> Image.Image:
    """The panel of one decoded 2-D uint8 image (see the module docstring).

    Raises:
        LungWeightsError: the config names lung weights that cannot be loaded.
    """
    steps = Preprocessor(config).steps(pixels)
    lungs = {"off": "no lung model", "found": "lungs + crop box", "not_found": "lungs NOT found: no crop"}
    top = [_tile(steps.original, f"original {steps.original.shape[1]}x{steps.original.shape[0]}"),
           _tile(clahe(steps.original, config.clahe_clip, config.clahe_grid), f"CLAHE (clip {config.clahe_clip})"),
           _tile(beasf(steps.original, config.beasf_gamma), f"BEASF (gamma {config.beasf_gamma})"),
           _tile(_overlay(steps), lungs[steps.info["lungs"]])]
    out = steps.output
    bottom = [_tile(out[i], f"input ch{i}: {name}") for i, name in enumerate(config.channels)]
    rgb = np.moveaxis(out[:3], 0, -1) if out.shape[0] >= 3 else np.dstack([out[0]] * 3)
    bottom.append(_tile(np.ascontiguousarray(rgb), f"input as RGB {config.size}x{config.size}"))
    width = max(len(top), len(bottom)) * TILE
    rows = [np.hstack(r + [np.zeros_like(r[0])] * ((width // TILE) - len(r))) for r in (top, bottom)]
    header = np.zeros((_LABEL_H + 4, width, 3), dtype=np.uint8)
    panel = Image.fromarray(np.vstack([header] + rows))
    ImageDraw.Draw(panel).text((4, 4), title, fill=(255, 255, 0))
    return panel


def write_panel(path: str | os.PathLike, config: PreprocessConfig, output: str | os.PathLike,
                title: str | None = None) -> Path:
    """Decode ``path``, draw its panel and write it as PNG to ``output``.

    Raises:
        ImageDecodeError: the image cannot be decoded.
        LungWeightsError: the config names lung weights that cannot be loaded.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    make_panel(decode_image(path).pixels, config, title if title is not None else str(path)).save(output, "PNG")
    return output
