"""Batched augmentation (``BatchAugment``) against the per-sample path (``PaperAugment``): same parameter
distributions (two-sample KS and binomial tests on draws recorded from torchvision's own transforms) and, for the
same parameters, the same pixels as torchvision's kernels. Runs on CPU tensors: the code is device-agnostic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from cxrcurate.preprocess.augment import AugmentConfig, BatchAugment, PaperAugment

N = 600
H, W = 48, 40


def _recorded_params(aug: PaperAugment, n: int) -> dict[str, np.ndarray]:
    """The parameters today's per-sample path draws, read off torchvision's transforms as they run."""
    hflip, vflip, affine, jitter = aug._transform.transforms
    seen: dict[str, list] = {"hflip": [], "vflip": [], "angle": [], "tx": [], "ty": [], "scale": [], "brightness": []}
    applied: dict[str, bool] = {}

    def spy(name, fn):
        def wrapped(inpt, params):
            applied[name] = True
            return fn(inpt, params)
        return wrapped

    def record_affine(flat):
        p = type(affine).make_params(affine, flat)
        seen["angle"].append(p["angle"])
        seen["tx"].append(p["translate"][0])
        seen["ty"].append(p["translate"][1])
        seen["scale"].append(p["scale"])
        return p

    def record_jitter(flat):
        p = type(jitter).make_params(jitter, flat)
        seen["brightness"].append(p["brightness_factor"])
        return p

    hflip.transform = spy("hflip", hflip.transform)
    vflip.transform = spy("vflip", vflip.transform)
    affine.make_params = record_affine
    jitter.make_params = record_jitter
    image = torch.rand(1, H, W)
    for i in range(n):
        applied.clear()
        aug(image, i)
        seen["hflip"].append(applied.get("hflip", False))
        seen["vflip"].append(applied.get("vflip", False))
    return {k: np.asarray(v) for k, v in seen.items()}


@pytest.mark.parametrize("config", [AugmentConfig.scaled(0.5), AugmentConfig(vflip=0.3)])
def test_batch_draws_follow_the_per_sample_distributions(config):
    old = _recorded_params(PaperAugment(config, seed=3), N)
    new = BatchAugment(config, seed=11).params(range(N), H, W)
    for name in ("angle", "scale", "brightness", "tx", "ty"):
        assert stats.ks_2samp(old[name], new[name]).pvalue > 1e-3, name
        lo, hi = min(old[name].min(), new[name].min()), max(old[name].max(), new[name].max())
        assert new[name].min() >= lo and new[name].max() <= hi
    assert np.issubdtype(new["tx"].dtype, np.integer)
    for name, p in (("hflip", config.hflip), ("vflip", config.vflip)):
        for draws in (old[name], new[name]):
            assert stats.binomtest(int(draws.sum()), N, p).pvalue > 1e-3, name


def test_batch_draws_differ_from_a_wrong_distribution():
    """The KS test above can fail: half the rotation range is told apart."""
    wide = BatchAugment(AugmentConfig(rotation=10.0)).params(range(N), H, W)["angle"]
    narrow = BatchAugment(AugmentConfig(rotation=5.0)).params(range(N), H, W)["angle"]
    assert stats.ks_2samp(wide, narrow).pvalue < 1e-6


def test_same_parameters_give_torchvisions_pixels():
    from torchvision.transforms.v2 import functional as F

    aug = BatchAugment(AugmentConfig(vflip=0.5), seed=1)
    gen = torch.Generator().manual_seed(0)
    batch = torch.rand(16, 3, H, W, generator=gen)
    idx = list(range(100, 116))
    params = aug.params(idx, H, W)
    out = aug(batch, idx)
    for k in range(len(idx)):
        x = batch[k]
        if params["hflip"][k]:
            x = F.horizontal_flip(x)
        if params["vflip"][k]:
            x = F.vertical_flip(x)
        x = F.affine(x, angle=float(params["angle"][k]), translate=[int(params["tx"][k]), int(params["ty"][k])],
                     scale=float(params["scale"][k]), shear=[0.0, 0.0], fill=0)
        x = F.adjust_brightness(x, float(params["brightness"][k]))
        differ = (out[k] - x).abs() > 1e-5
        assert differ.float().mean() < 0.002, k  # nearest-neighbour ties at a float rounding edge, at most
    assert not torch.equal(out, batch)


def test_draws_are_reproducible_and_normalised():
    aug = BatchAugment(AugmentConfig(), seed=5, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    batch = torch.rand(4, 3, H, W)
    first = aug(batch, [7, 8, 9, 10])
    assert torch.equal(first[1:], aug(batch[1:], [8, 9, 10]))  # a sample's draw ignores its batch
    aug.set_epoch(1)
    assert not torch.equal(first, aug(batch, [7, 8, 9, 10]))
    assert first.min() >= -2.0 - 1e-6 and first.max() <= 2.0 + 1e-6
    with pytest.raises(ValueError, match="N indices"):
        aug(batch, [1, 2])
