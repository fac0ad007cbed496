"""The training augmentations of COVID-CXNet, per sample (torchvision transforms v2) or per batch on a device.

The paper augments with rotation, flips, zoom (0.8-1.5), brightness (0.5-1.3) and shifts (up to 0.2 of the side).
Each sample's draw depends only on (``seed``, epoch, index): the transform runs under a forked torch RNG seeded
from those three, so results do not depend on the number of ``DataLoader`` workers or on the order samples are
read, and the global RNG is left as it was.

``PaperAugment`` runs in the ``DataLoader`` workers, one CPU image at a time; it caps a cached feed at a few
hundred images/s per core (docs/bench.md). ``BatchAugment`` draws the same parameters from the same distributions
(flips Bernoulli(p); angle, scale and brightness uniform; shifts rounded uniform pixels, as torchvision's
``RandomAffine.make_params``) and applies them to a whole ``(N, C, H, W)`` batch on its device with one
``grid_sample``, reproducing torchvision's affine kernel (nearest neighbour, zero fill) for the same parameters;
``tests/test_augment.py`` checks both claims. Its draw is seeded per (seed, epoch, index) too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
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


def sample_seed(seed: int, epoch: int, index: int | str) -> int:
    """The seed of one sample's draw, mixed from (seed, epoch, index) (shared by both augmenters); ``index`` may
    be an image id (the key a batch carries)."""
    key = index if isinstance(index, str) else int(index)
    digest = hashlib.blake2b(f"{int(seed)}:{int(epoch)}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


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
        return sample_seed(self.seed, self.epoch, index)

    def __call__(self, image: torch.Tensor, index: int) -> Any:
        """The augmented image (same shape and dtype)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.sample_seed(index))
            return self._transform(image)


class BatchAugment:
    """Call as ``augment(batch, indices)`` on a float ``(N, C, H, W)`` batch in [0, 1] on any device.

    The draw of each sample depends only on (``seed``, epoch, index), as ``PaperAugment``'s, but it is drawn with
    numpy, not torch's RNG, so the two augmenters give different images for one index (same distributions).
    ``mean``/``std`` (per channel) normalise the augmented batch, the step the dataset does after ``PaperAugment``.

    Args:
        config: the ranges.
        seed: base seed of every draw.
        mean, std: normalisation applied after augmenting (None: none).
    """

    def __init__(self, config: AugmentConfig | None = None, seed: int = 0, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        self.config, self.seed, self.epoch = config or AugmentConfig(), int(seed), 0
        self.mean, self.std = mean, std

    def set_epoch(self, epoch: int) -> None:
        """Draw new augmentations for ``epoch`` (same epoch and index: same draw)."""
        self.epoch = int(epoch)

    def params(self, indices: Sequence[int | str], height: int, width: int) -> dict[str, np.ndarray]:
        """Each sample's parameters: ``hflip``, ``vflip`` (bool), ``angle`` (degrees), ``tx``, ``ty`` (pixels,
        integers), ``scale``, ``brightness``; one row per index, in the distributions of ``PaperAugment``."""
        c = self.config
        rows = []
        for index in indices:
            rng = np.random.default_rng(sample_seed(self.seed, self.epoch, index))
            u = rng.random(7)
            max_dx, max_dy = c.shift * width, c.shift * height
            rows.append((u[0] < c.hflip, u[1] < c.vflip, -c.rotation + 2 * c.rotation * u[2],
                         round(-max_dx + 2 * max_dx * u[3]), round(-max_dy + 2 * max_dy * u[4]),
                         c.zoom[0] + (c.zoom[1] - c.zoom[0]) * u[5],
                         c.brightness[0] + (c.brightness[1] - c.brightness[0]) * u[6]))
        cols = list(zip(*rows, strict=True)) if rows else [()] * 7
        names = ("hflip", "vflip", "angle", "tx", "ty", "scale", "brightness")
        types = (bool, bool, np.float64, np.int64, np.int64, np.float64, np.float64)
        return {n: np.asarray(v, dtype=t) for n, v, t in zip(names, cols, types, strict=True)}

    def apply(self, batch: torch.Tensor, params: dict[str, np.ndarray]) -> torch.Tensor:
        """``batch`` flipped, moved by the affine map (nearest neighbour, zero fill) and brightened per sample:
        what torchvision's kernels give for the same parameters, in one pass for the whole batch."""
        n, _, h, w = batch.shape
        dev, dt = batch.device, batch.dtype
        as_t = lambda name: torch.as_tensor(params[name], device=dev)  # noqa: E731
        x = torch.where(as_t("hflip").view(n, 1, 1, 1), batch.flip(-1), batch)
        x = torch.where(as_t("vflip").view(n, 1, 1, 1), x.flip(-2), x)
        # torchvision's inverse affine matrix (no shear, centre of the image), in pixel units around the centre
        rot = np.radians(params["angle"])
        cos, sin = np.cos(rot) / params["scale"], np.sin(rot) / params["scale"]
        tx, ty = params["tx"].astype(np.float64), params["ty"].astype(np.float64)
        theta = np.zeros((n, 2, 3))
        theta[:, 0, 0], theta[:, 0, 1] = cos, sin
        theta[:, 1, 0], theta[:, 1, 1] = -sin, cos
        theta[:, 0, 2] = cos * -tx + sin * -ty
        theta[:, 1, 2] = -sin * -tx + cos * -ty
        theta_t = torch.as_tensor(theta, dtype=torch.float32, device=dev)
        xs = torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, w, device=dev)
        ys = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, h, device=dev)
        base = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w), torch.ones(h, w, device=dev)], dim=-1)
        scale_xy = torch.tensor([0.5 * w, 0.5 * h], device=dev)
        grid = (base.view(1, h * w, 3) @ theta_t.transpose(1, 2).div(scale_xy)).view(n, h, w, 2)
        x = torch.nn.functional.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros",
                                            align_corners=False).to(dt)
        x = (x * as_t("brightness").to(dt).view(n, 1, 1, 1)).clamp_(0.0, 1.0)
        if self.mean is not None and self.std is not None:
            mean = torch.as_tensor(self.mean, dtype=dt, device=dev).view(1, -1, 1, 1)
            std = torch.as_tensor(self.std, dtype=dt, device=dev).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x

    def __call__(self, batch: torch.Tensor, indices: Sequence[int | str]) -> torch.Tensor:
        """The augmented (and, with ``mean``/``std``, normalised) batch, same shape, on the batch's device;
        ``indices`` are the samples' indices or image ids (one seed each)."""
        if batch.ndim != 4 or len(indices) != batch.shape[0]:
            raise ValueError(f"BatchAugment wants an (N, C, H, W) batch and N indices, got {tuple(batch.shape)} and "
                             f"{len(indices)}")
        return self.apply(batch, self.params(list(indices), batch.shape[-2], batch.shape[-1]))
