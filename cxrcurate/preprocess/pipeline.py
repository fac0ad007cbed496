"""``Preprocessor``: one decoded image to the model's ``(C, size, size)`` uint8 input, step by step.

Order: lung crop (when the config names weights) -> histogram matching (when it names a reference) -> resize ->
channel stack (original, CLAHE, BEASF) -> pad. Cropping first means the histogram steps see the lungs and not the
labels, markers and black borders around them. The steps are kept (``Steps``) so ``cxrcurate show`` can draw them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..imageio import decode_image
from .config import PreprocessConfig
from .enhance import _as_gray, match_histogram, render

log = logging.getLogger(__name__)


@dataclass
class Steps:
    """The intermediate images of one run (all 2-D uint8 except ``output``, which is ``(C, size, size)``)."""

    original: np.ndarray
    mask: np.ndarray | None
    box: tuple[int, int, int, int] | None
    cropped: np.ndarray
    matched: np.ndarray
    output: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


class Preprocessor:
    """Applies a ``PreprocessConfig``; loads the lung model and the histogram reference once, on first use.

    Args:
        config: what to do.
        device: torch device of the lung model.

    Raises:
        LungWeightsError: (on first use) the config names lung weights that cannot be loaded.
        ImageDecodeError: (on first use) the histogram reference cannot be decoded.
    """

    def __init__(self, config: PreprocessConfig, device: str = "cpu") -> None:
        self.config = config
        self.device = device
        self._segmenter: Any = None
        self._reference: np.ndarray | None = None

    @property
    def segmenter(self) -> Any:
        """The ``LungSegmenter`` of the config (None without lung weights)."""
        path = self.config.lungs_path
        if path is not None and self._segmenter is None:
            # torch: loaded only when lungs are segmented
            from .lungs import LungSegmenter

            c = self.config
            self._segmenter = LungSegmenter(path, threshold=c.mask_threshold, dilate=c.mask_dilate,
                                            margin=c.crop_margin, min_fraction=c.min_lung_fraction, device=self.device)
        return self._segmenter

    @property
    def reference(self) -> np.ndarray | None:
        """The decoded histogram reference (None when the config has none)."""
        if self.config.histogram_reference is not None and self._reference is None:
            self._reference = decode_image(self.config.histogram_reference).pixels
        return self._reference

    def steps(self, pixels: np.ndarray, lungs: dict[str, Any] | None = None) -> Steps:
        """Run every step on a 2-D uint8 image and keep the intermediates.

        ``lungs`` is the picture's box as a ``LungStore`` holds it (``{"lungs", "box", "shape"}``): when given, the
        crop uses it and the U-Net does not run (``mask`` is then None).

        Raises:
            ValueError: ``pixels`` is not a 2-D uint8 array, or ``lungs`` was computed on another shape.
        """
        pixels = _as_gray(pixels)
        mask, box, status = None, None, "off"
        if lungs is not None and self.config.lungs_path is not None:
            if list(lungs.get("shape") or []) != list(pixels.shape):
                raise ValueError(f"stored lung box is of a {lungs.get('shape')} picture, this one is "
                                 f"{list(pixels.shape)}")
            status = lungs["lungs"]
            box = tuple(int(v) for v in lungs["box"]) if lungs.get("box") is not None else None
            cropped = pixels if box is None else pixels[box[0]:box[1], box[2]:box[3]]
        elif self.segmenter is not None:
            result = self.segmenter.segment(pixels)
            mask, box = result.mask, result.box
            status = "found" if box is not None else "not_found"
            cropped = result.crop(pixels)
        else:
            cropped = pixels
        matched = cropped if self.reference is None else match_histogram(cropped, self.reference)
        info = {"lungs": status, "box": list(box) if box is not None else None, "shape": list(pixels.shape)}
        return Steps(pixels, mask, box, cropped, matched, render(matched, self.config), info)

    def __call__(self, pixels: np.ndarray, lungs: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """``(output (C, size, size) uint8, info)``; info holds the lung status (found / not_found / off) and box.
        ``lungs``: a stored box to crop with instead of segmenting (see ``steps``).

        Raises:
            ValueError: ``pixels`` is not a 2-D uint8 array.
        """
        s = self.steps(pixels, lungs)
        return s.output, s.info
