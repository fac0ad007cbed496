"""The training augmentations of COVID-CXNet, with torchvision transforms v2, reproducible per sample.

The paper augments with rotation, flips, zoom (0.8-1.5), brightness (0.5-1.3) and shifts (up to 0.2 of the side).
Each sample's draw depends only on (``seed``, epoch, index): the transform runs under a forked torch RNG seeded
from those three, so results do not depend on the number of ``DataLoader`` workers or on the order samples are
read, and the global RNG is left as it was.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import CxrcurateError


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation ranges (defaults: the paper's; vertical flips off, they are not anatomical).

    Attributes:
        rotation: maximum rotation in degrees (either direction).
        hflip: probability of a horizontal flip.
        vflip: probability of a vertical flip.
        zoom: range of the scale factor (>1 enlarges).
        brightness: range of the brightness factor.
        shift: maximum translation, as a fraction of width and height.
    """

    rotation: float = 10.0
    hflip: float = 0.5
    vflip: float = 0.0
    zoom: tuple[float, float] = (0.8, 1.5)
    brightness: tuple[float, float] = (0.5, 1.3)
    shift: float = 0.2

    def __post_init__(self) -> None:
        ok = (self.rotation >= 0 and 0 <= self.hflip <= 1 and 0 <= self.vflip <= 1 and 0 < self.zoom[0] <= self.zoom[1]
              and 0 <= self.brightness[0] <= self.brightness[1] and 0 <= self.shift <= 1)
        if not ok:
            raise CxrcurateError(f"invalid augmentation ranges: {self}")

    @classmethod
    def scaled(cls, strength: float) -> AugmentConfig:
        """The paper's ranges scaled by ``strength`` (1: the paper's; 0.5: half the rotation, zoom, brightness and
        shift; 0: no geometric or brightness change, flips kept off too)."""
        if not 0 <= strength <= 2:
            raise CxrcurateError(f"augmentation strength {strength} must be in [0, 2] (1 is the paper's ranges)")
        p = cls()
        return cls(rotation=p.rotation * strength, hflip=p.hflip if strength > 0 else 0.0, vflip=p.vflip,
                   zoom=(max(0.05, 1 - (1 - p.zoom[0]) * strength), 1 + (p.zoom[1] - 1) * strength),
                   brightness=(max(0.0, 1 - (1 - p.brightness[0]) * strength), 1 + (p.brightness[1] - 1) * strength),
                   shift=min(1.0, p.shift * strength))


class PaperAugment:
    """Call as ``augment(image, index)`` on a float ``(C, H, W)`` tensor in [0, 1]; ``set_epoch`` between epochs.

    Args:
        config: the ranges.
        seed: base seed of every draw.
    """

    def __init__(self, config: AugmentConfig | None = None, seed: int = 0) -> None:
        from torchvision.transforms import v2

        c = config or AugmentConfig()
        self.config, self.seed, self.epoch = c, int(seed), 0
        self._transform = v2.Compose([
            v2.RandomHorizontalFlip(c.hflip),
            v2.RandomVerticalFlip(c.vflip),
            v2.RandomAffine(degrees=c.rotation, translate=(c.shift, c.shift), scale=c.zoom),
            v2.ColorJitter(brightness=c.brightness),
        ])

    def set_epoch(self, epoch: int) -> None:
        """Draw new augmentations for ``epoch`` (same epoch and index: same draw)."""
        self.epoch = int(epoch)

    def sample_seed(self, index: int) -> int:
        """The seed of one sample's draw, mixed from (seed, epoch, index)."""
        digest = hashlib.blake2b(f"{self.seed}:{self.epoch}:{int(index)}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") & (2**63 - 1)

    def __call__(self, image: torch.Tensor, index: int) -> Any:
        """The augmented image (same shape and dtype)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.sample_seed(index))
            return self._transform(image)
