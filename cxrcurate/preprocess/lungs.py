"""Lung segmentation: a U-Net, the paper's post-processing, and weight files with their JSON card.

COVID-CXNet crops every radiograph to the lungs before classifying it, so that text, markers, the abdomen and
the arms (which differ between sources far more than between diagnoses) leave the picture. The U-Net is the
classic shape (two 3x3 convolutions per level, max-pool down, transposed-convolution up, skip connections) with
a configurable ``width`` (channels of the first level, 64 in the original) so a model can be small.

Post-processing (``lung_mask`` then ``lung_box``): threshold the probability map, keep the two largest connected
components (the two lungs; a component smaller than a tenth of the largest is noise), dilate, take the bounding
box, add a margin. A mask covering too little of the image means "lungs not found", and the image is not cropped.

Weights are a safetensors file (or a ``torch.save`` state dict, read with ``weights_only=True``) beside a JSON
file of the same stem: architecture, input size, normalisation, training data and held-out Dice.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from .config import LungWeightsError, missing_weights_message

__all__ = ["LungWeightsError", "LungResult", "LungSegmenter", "UNet", "load_weights", "lung_box", "lung_mask",
           "normalise", "save_weights", "to_input"]

log = logging.getLogger(__name__)

WEIGHTS_FORMAT = "cxrcurate-lungs-unet"
NORMALISATION = "per-image standardisation: (x - mean(x)) / max(std(x), 1e-3) of x = pixels / 255"
MIN_COMPONENT_RATIO = 0.1  # a component below this fraction of the largest one is noise, not a lung
MIN_SIDE = 32  # a smaller image holds no lungs to find (per-image standardisation would amplify noise)
MIN_CONTRAST = 16  # grey levels between the 1st and 99th percentile: below it the image is blank, no lungs


def too_plain(pixels: np.ndarray) -> str | None:
    """Why an image cannot show lungs (too small, or blank: nearly one grey level), or None."""
    h, w = pixels.shape[:2]
    if min(h, w) < MIN_SIDE:
        return f"{w}x{h} is smaller than {MIN_SIDE} px"
    lo, hi = np.percentile(pixels, (1, 99))
    if hi - lo < MIN_CONTRAST:
        return f"blank: 98% of the pixels within {hi - lo:.0f} grey levels"
    return None


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """The classic U-Net (same-padded convolutions + batch norm), one logit map out.

    Args:
        in_channels: input channels (1 for grayscale).
        width: channels of the first level, doubled at each level down (64 in the original paper).
        depth: number of down-sampling steps (4 in the original); input sides must be multiples of ``2**depth``.
    """

    def __init__(self, in_channels: int = 1, width: int = 8, depth: int = 4) -> None:
        super().__init__()
        self.in_channels, self.width, self.depth = in_channels, width, depth
        chans = [width * 2**i for i in range(depth + 1)]
        ups = list(reversed(range(depth)))
        downs = [_block(in_channels, chans[0])] + [_block(chans[i], chans[i + 1]) for i in range(depth)]
        self.down = nn.ModuleList(downs)
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in ups])
        self.merge = nn.ModuleList([_block(2 * chans[i], chans[i]) for i in ups])
        self.head = nn.Conv2d(chans[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, 1, H, W)`` of an input ``(N, in_channels, H, W)``."""
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


def normalise(batch: torch.Tensor) -> torch.Tensor:
    """Per-image standardisation of a ``(N, 1, H, W)`` batch of values in [0, 1] (see ``NORMALISATION``).

    Per image, not per data set: sources differ in exposure and windowing, and the mask must not depend on that.
    """
    mean = batch.mean(dim=(1, 2, 3), keepdim=True)
    std = batch.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
    return (batch - mean) / std


def to_input(pixels: np.ndarray, size: int) -> torch.Tensor:
    """A 2-D uint8 image as the model's ``(1, 1, size, size)`` float input (stretched, then normalised)."""
    small = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA)
    return normalise(torch.from_numpy(small).float().div_(255.0)[None, None])


def lung_mask(prob: np.ndarray, threshold: float = 0.5, dilate: float = 0.02) -> np.ndarray:
    """Binary lung mask (uint8 0/1) from a probability map: threshold, two largest components, dilation.

    Args:
        prob: probabilities ``(H, W)``.
        threshold: lung when above it.
        dilate: dilation radius as a fraction of the map's shorter side (0: none).
    """
    binary = (np.asarray(prob) > threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        return binary
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = np.argsort(areas)[::-1][:2]
    keep = [i + 1 for i in order if areas[i] >= MIN_COMPONENT_RATIO * areas[order[0]]]
    mask = np.isin(labels, keep).astype(np.uint8)
    radius = int(round(dilate * min(mask.shape)))
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.dilate(mask, kernel)
    return mask


def lung_box(mask: np.ndarray, margin: float = 0.05, min_fraction: float = 0.05) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)`` (end-exclusive) of the mask's bounding box plus ``margin``, or None.

    Args:
        mask: binary ``(H, W)``.
        margin: added on each side, as a fraction of the box's height (top/bottom) and width (left/right).
        min_fraction: None when the mask covers less than this fraction of the image (lungs not found).
    """
    mask = np.asarray(mask) > 0
    if mask.mean() < max(min_fraction, 1e-12):
        return None
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    dy, dx = round(margin * (bottom - top)), round(margin * (right - left))
    h, w = mask.shape
    return max(0, top - dy), min(h, bottom + dy), max(0, left - dx), min(w, right + dx)


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def save_weights(model: UNet, path: str | os.PathLike, card: dict[str, Any]) -> Path:
    """Write ``model`` to ``path`` (``.safetensors``, else a ``torch.save`` state dict) and its card beside it.

    The card (JSON, same stem) gets the architecture and format added; the safetensors metadata holds it too, so
    the weights file alone is enough to load.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    card = {"format": WEIGHTS_FORMAT, "version": 1, "normalisation": NORMALISATION, **card,
            "arch": {"in_channels": model.in_channels, "width": model.width, "depth": model.depth}}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(tmp), metadata={"cxrcurate": json.dumps(card, sort_keys=True)})
    else:
        torch.save(state, tmp)
    os.replace(tmp, path)
    os.chmod(path, 0o644)  # safetensors writes 0600; weights are meant to be shared and packaged
    _sidecar(path).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return path


def load_weights(path: str | os.PathLike, device: str = "cpu") -> tuple[UNet, dict[str, Any]]:
    """The U-Net stored at ``path`` (in eval mode) and its card.

    Raises:
        LungWeightsError: the file is missing, unreadable, or not cxrcurate lung weights.
    """
    path = Path(path)
    if not path.is_file():
        raise LungWeightsError(missing_weights_message(path))
    card: dict[str, Any] = {}
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), framework="pt") as fh:
                card = json.loads((fh.metadata() or {}).get("cxrcurate", "{}"))
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        if _sidecar(path).is_file() and not card:
            card = json.loads(_sidecar(path).read_text())
        if card.get("format") != WEIGHTS_FORMAT:
            raise LungWeightsError(f"{path}: no {WEIGHTS_FORMAT} card (in the file or in {_sidecar(path).name}); "
                                   "was it written by `cxrcurate train-lungs`?")
        model = UNet(**card["arch"])
        model.load_state_dict(state)
    except LungWeightsError:
        raise
    except Exception as exc:  # safetensors, torch and json raise many types for a damaged file
        raise LungWeightsError(f"{path}: cannot load lung weights ({exc}); re-train or re-download them") from exc
    return model.to(device).eval(), card


@dataclass
class LungResult:
    """One image's segmentation: mask at the image's size (uint8 0/1) and crop box (None: lungs not found)."""

    mask: np.ndarray
    box: tuple[int, int, int, int] | None

    def crop(self, pixels: np.ndarray) -> np.ndarray:
        """``pixels`` cut to the box (the whole image when no lungs were found)."""
        if self.box is None:
            return pixels
        top, bottom, left, right = self.box
        return pixels[top:bottom, left:right]


class LungSegmenter:
    """A loaded U-Net with its post-processing parameters; call ``segment(pixels)`` per image.

    Args:
        path: weights file (see ``load_weights``).
        threshold, dilate, margin, min_fraction: post-processing (see ``lung_mask`` and ``lung_box``).
        device: torch device for inference.

    Raises:
        LungWeightsError: the weights cannot be loaded.
    """

    def __init__(self, path: str | os.PathLike, threshold: float = 0.5, dilate: float = 0.02, margin: float = 0.05,
                 min_fraction: float = 0.05, device: str = "cpu") -> None:
        self.model, self.card = load_weights(path, device)
        self.size = int(self.card["input_size"])
        self.threshold, self.dilate, self.margin, self.min_fraction = threshold, dilate, margin, min_fraction
        self.device = device

    @torch.inference_mode()
    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """Lung probability at the model's input size, ``(size, size)`` float32."""
        logits = self.model(to_input(pixels, self.size).to(self.device))
        return torch.sigmoid(logits)[0, 0].float().cpu().numpy()

    @torch.inference_mode()
    def probabilities_batch(self, images: list[np.ndarray], batch_size: int = 64) -> list[np.ndarray]:
        """``probabilities`` of many images, ``batch_size`` at a time on the model's device (a GPU's way; on a CPU
        batching does not pay, docs/bench.md). An image already at the model's ``(size, size)`` is not resized, so
        workers can send the small input instead of the picture."""
        out: list[np.ndarray] = []
        for start in range(0, len(images), batch_size):
            x = torch.cat([to_input(p, self.size) for p in images[start:start + batch_size]])
            probs = torch.sigmoid(self.model(x.to(self.device, non_blocking=True)))[:, 0].float().cpu().numpy()
            out.extend(probs)
        return out

    def box_from_probabilities(self, prob: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, tuple | None]:
        """The mask at the model's size and the crop box in the image's coordinates (``shape`` = (h, w))."""
        small = lung_mask(prob, self.threshold, self.dilate)
        h, w = shape
        box = lung_box(small, self.margin, self.min_fraction)
        if box is not None:  # scale the box from the model's square grid back to the image
            top, bottom, left, right = box
            box = (int(np.floor(top * h / self.size)), int(np.ceil(bottom * h / self.size)),
                   int(np.floor(left * w / self.size)), int(np.ceil(right * w / self.size)))
        return small, box

    def segment(self, pixels: np.ndarray) -> LungResult:
        """Mask (image size) and crop box of one 2-D uint8 image; no lungs (empty mask, no box) on a tiny or blank
        image, whatever the network says (standardising a blank image turns noise into a confident mask)."""
        if too_plain(pixels):
            return LungResult(np.zeros(pixels.shape[:2], dtype=np.uint8), None)
        h, w = pixels.shape
        small, box = self.box_from_probabilities(self.probabilities(pixels), (h, w))
        mask = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        return LungResult(mask, box)
