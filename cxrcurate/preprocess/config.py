"""``PreprocessConfig``: every choice that changes the pixels a model sees, and a stable hash of them.

The hash is the second half of the cache key (the first is the image's ``pixel_sha256``): change any field, the
lung model's weights or the histogram reference's pixels, and the cache starts a fresh folder instead of serving
stale tensors. File paths never enter the hash, only the content they point at, so moving a weights file or a
cache between machines keeps it valid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import CxrcurateError, LungWeightsError
from ..imageio import decode_image, pixel_sha256

# Bump when the pipeline's code changes the pixels it writes for the same config (invalidates every cache).
PIPELINE_VERSION = 1
LUNG_VERSION = 1  # bump when the lung post-processing changes the box it gives for the same weights and fields
CHANNELS = ("original", "clahe", "beasf")
RESIZE_MODES = ("pad", "stretch")
MAX_SIZE = 4096  # output side; 3 x 4096^2 bytes per cached image, far past any model input in use
SHIPPED_LUNGS = "default"  # ``lungs`` value naming the weights shipped inside the package
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED_WEIGHTS = WEIGHTS_DIR / "lungs-unet-w8-160.safetensors"
# The histogram reference of the multiclass rungs: an adult PA radiograph with no finding (NIH ChestX-ray14
# 00027426_000.png, public domain, shipped in the sample).
HISTOGRAM_REFERENCE = Path(__file__).resolve().parents[1] / "sample" / "nih-cxr14" / "images" / "00027426_000.png"


@dataclass(frozen=True)
class PreprocessConfig:
    """What turns a decoded 8-bit grayscale image into the model's ``(C, size, size)`` uint8 input.

    Attributes:
        size: side of the square output (the paper uses 320).
        resize: ``pad`` keeps the aspect ratio and pads the short side with ``pad_value``; ``stretch`` resizes
            straight to ``size x size``.
        channels: output channels in order, each one of ``original``, ``clahe``, ``beasf`` (repeats allowed).
        clahe_clip: OpenCV CLAHE ``clipLimit``.
        clahe_grid: OpenCV CLAHE ``tileGridSize`` (columns, rows).
        beasf_gamma: BEASF sigmoid steepness (the paper uses 1.5).
        lungs: lung U-Net weights: ``"default"`` (shipped with the package), a file path, or None / ``"none"``
            (no crop).
        mask_threshold: probability above which a pixel is lung.
        mask_dilate: dilation of the lung mask, as a fraction of the mask's shorter side.
        crop_margin: margin added on each side of the lung box, as a fraction of the box's width / height.
        min_lung_fraction: a mask covering less of the image than this is "lungs not found": no crop.
        histogram_reference: an image whose histogram every image is matched to first (multiclass setup), or None.
        pad_value: gray level of the padding in ``pad`` mode.
    """

    size: int = 320
    resize: str = "pad"
    channels: tuple[str, ...] = CHANNELS
    clahe_clip: float = 2.0
    clahe_grid: tuple[int, int] = (8, 8)
    beasf_gamma: float = 1.5
    lungs: str | None = SHIPPED_LUNGS
    mask_threshold: float = 0.5
    mask_dilate: float = 0.02
    crop_margin: float = 0.05
    min_lung_fraction: float = 0.05
    histogram_reference: str | None = None
    pad_value: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "clahe_grid", tuple(int(v) for v in self.clahe_grid))
        if self.lungs is not None:
            lungs = str(self.lungs)
            object.__setattr__(self, "lungs", None if lungs.lower() == "none" else lungs)
        if self.histogram_reference is not None:
            object.__setattr__(self, "histogram_reference", str(self.histogram_reference))
        problems = []
        if not isinstance(self.size, int) or not 8 <= self.size <= MAX_SIZE:
            problems.append(f"size={self.size!r} must be an int in 8..{MAX_SIZE}")
        if self.resize not in RESIZE_MODES:
            problems.append(f"resize={self.resize!r} must be one of {list(RESIZE_MODES)}")
        bad = [c for c in self.channels if c not in CHANNELS]
        if bad or not self.channels:
            problems.append(f"channels={list(self.channels)} must be a non-empty list of {list(CHANNELS)}")
        if self.clahe_clip <= 0 or len(self.clahe_grid) != 2 or min(self.clahe_grid) < 1:
            problems.append(f"clahe_clip={self.clahe_clip} must be > 0 and clahe_grid={self.clahe_grid} two ints >= 1")
        if self.beasf_gamma < 0:
            problems.append(f"beasf_gamma={self.beasf_gamma} must be >= 0")
        for name in ("mask_threshold", "mask_dilate", "crop_margin", "min_lung_fraction"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be in [0, 1)")
        if not 0 <= self.pad_value <= 255:
            problems.append(f"pad_value={self.pad_value} must be in 0..255")
        if problems:
            raise CxrcurateError("invalid preprocessing config: " + "; ".join(problems))

    @property
    def lungs_path(self) -> Path | None:
        """The lung weights file this config names (the shipped one for ``"default"``), or None for no crop."""
        if self.lungs is None:
            return None
        return SHIPPED_WEIGHTS if self.lungs == SHIPPED_LUNGS else Path(self.lungs)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (what ``config.json`` in a cache folder holds)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        """The config ``to_dict`` wrote (unknown keys are an error, so a typo never goes unnoticed).

        Raises:
            CxrcurateError: a key is not a field, or a value is invalid.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise CxrcurateError(f"unknown preprocessing option(s) {unknown}; known: {sorted(names)}")
        return cls(**data)

    def hash_payload(self) -> dict[str, Any]:
        """What the hash covers: the fields, with files replaced by digests of their content.

        Raises:
            LungWeightsError: the lung weights file named here does not exist.
            ImageDecodeError: the histogram reference cannot be decoded.
        """
        payload = self.to_dict()
        payload["pipeline_version"] = PIPELINE_VERSION
        lungs = self.lungs_path
        if lungs is not None:
            if not lungs.is_file():
                raise LungWeightsError(missing_weights_message(lungs))
            payload["lungs"] = "sha256:" + _file_digest(str(lungs.resolve()), os.stat(lungs).st_mtime_ns)
        else:
            for name in ("lungs", "mask_threshold", "mask_dilate", "crop_margin", "min_lung_fraction"):
                payload[name] = None  # irrelevant without a crop: equal configs share a cache
        if self.histogram_reference is not None:
            payload["histogram_reference"] = "pixels:" + pixel_sha256(decode_image(self.histogram_reference).pixels)
        if self.resize != "pad":
            payload["pad_value"] = None
        return payload

    def lung_hash(self) -> str | None:
        """A 16-hex-digit digest of what decides a picture's lung box (the weights' content and the post-processing
        fields), or None without a crop. Sizes, channels and histogram matching do not enter it: one box per
        picture serves every one of them (``preprocess.lungstore``).

        Raises:
            LungWeightsError: the lung weights file named here does not exist.
        """
        lungs = self.lungs_path
        if lungs is None:
            return None
        if not lungs.is_file():
            raise LungWeightsError(missing_weights_message(lungs))
        fields = ("mask_threshold", "mask_dilate", "crop_margin", "min_lung_fraction")
        payload = {"lungs": _file_digest(str(lungs.resolve()), os.stat(lungs).st_mtime_ns), "version": LUNG_VERSION,
                   **{k: getattr(self, k) for k in fields}}
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def config_hash(self) -> str:
        """A 16-hex-digit digest of ``hash_payload()``: equal for configs that write the same pixels.

        Raises:
            LungWeightsError: the lung weights file named here does not exist.
            ImageDecodeError: the histogram reference cannot be decoded.
        """
        blob = json.dumps(self.hash_payload(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def missing_weights_message(path: str | os.PathLike) -> str:
    """What to tell a user whose lung weights file is missing."""
    return (f"no lung-segmentation weights at {path}. Train some with `cxrcurate train-lungs MANIFEST --size 160 "
            f"--epochs 60 --out {path}` (MANIFEST: a manifest whose rows have mask_paths, e.g. built from the "
            f"Cohen dataset with its lung-masks/ folder), put a weights file there, or pass --lungs none "
            f"(no lung crop). The package's own weights live at {SHIPPED_WEIGHTS}.")


@lru_cache(maxsize=16)
def _file_digest(path: str, mtime_ns: int) -> str:
    """sha256 of a file (memoised by path and modification time)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
