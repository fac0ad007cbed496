"""Tests of ``cxrcurate.preprocess.enhance``, ``config`` and ``augment``: BEASF from its definition, CLAHE, the
channel stack and resizing on real sample images and on edge cases (constant, tiny, 16-bit, non-square)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cxrcurate.errors import CxrcurateError
from cxrcurate.imageio import decode_image
from cxrcurate.preprocess.config import PreprocessConfig
from cxrcurate.preprocess.enhance import (
    beasf,
    beasf_lut,
    beasf_lut_from_histogram,
    channel_stack,
    clahe,
    fit_shape,
    match_histogram,
    render,
    resize,
)

NO_LUNGS = PreprocessConfig(lungs=None)


@pytest.fixture(scope="module")
def hannover(sample_root) -> np.ndarray:
    return decode_image(sample_root / "hannover" / "png" / "006f3a8a.png").pixels


@pytest.fixture(scope="module")
def nih(sample_root) -> np.ndarray:
    return decode_image(sample_root / "nih-cxr14" / "images" / "00000001_000.png").pixels


def reference_lut(hist: np.ndarray, gamma: float) -> list[int]:
    """BEASF written out level by level from the definition, as independently of the module as possible."""
    total = sum(hist)
    m = int(sum(i * c for i, c in enumerate(hist)) // total)

    def half(levels: list[int], lo: int, hi: int) -> list[float]:
        counts = [hist[t] for t in levels]
        if hi == lo or sum(counts) == 0 or gamma == 0:  # the sigmoid's limit as gamma -> 0 is linear
            return [float(t) for t in levels]
        acc, median = 0, levels[-1]
        for t, c in zip(levels, counts, strict=True):
            acc += c
            if acc / sum(counts) >= 0.5:
                median = t
                break
        w = hi - lo

        def s(t: float) -> float:
            return 1.0 / (1.0 + math.exp(-gamma * 5.0 * (t - median) / w))

        return [lo + (s(t) - s(lo)) / (s(hi) - s(lo)) * w for t in levels]

    lut = half(list(range(m + 1)), 0, m) + half(list(range(m + 1, 256)), m, 255)
    return [int(round(v)) for v in lut]


histograms = st.lists(st.integers(0, 50), min_size=256, max_size=256).filter(lambda h: sum(h) > 0)


@settings(max_examples=60, deadline=None)
@given(hist=histograms, gamma=st.sampled_from([0.0, 0.3, 1.5, 4.0, 20.0]))
def test_beasf_lut_properties(hist, gamma):
    hist = np.array(hist)
    lut = beasf_lut_from_histogram(hist, gamma).astype(int)
    m = int(np.floor((hist * np.arange(256)).sum() / hist.sum()))
    assert lut.shape == (256,) and np.all(np.diff(lut) >= 0)  # monotone
    assert lut[0] == 0 and lut[255] == 255  # range preserved
    assert np.all(lut[: m + 1] <= m) and np.all(lut[m + 1:] >= m)  # each half maps into its own range
    assert lut[m] == m  # the split point stays put
    assert np.abs(lut - reference_lut(list(hist), gamma)).max() <= 1  # rounding of x.5 may differ by one level


def test_beasf_matches_the_definition_on_real_images(hannover, nih):
    for pixels in (hannover, nih):
        hist = np.bincount(pixels.ravel(), minlength=256)
        assert np.array_equal(beasf_lut(pixels, 1.5), np.array(reference_lut(list(hist), 1.5), dtype=np.uint8))
        assert np.array_equal(beasf(pixels, 1.5), beasf_lut(pixels, 1.5)[pixels])


def test_beasf_tends_to_a_linear_stretch_as_gamma_vanishes(hannover):
    identity = np.arange(256)
    assert np.array_equal(beasf_lut(hannover, 0.0), identity)
    assert np.abs(beasf_lut(hannover, 1e-3).astype(int) - identity).max() <= 1
    errors = [np.abs(beasf_lut(hannover, g).astype(int) - identity).mean() for g in (2.0, 0.5, 0.1, 0.01)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.5


def test_beasf_steeper_gamma_spreads_levels_around_the_medians():
    levels = np.concatenate([np.arange(0, 101), np.arange(150, 256)])  # lower median ~50, upper ~202
    pixels = np.repeat(levels, 3).astype(np.uint8).reshape(1, -1)
    spread = [int(beasf_lut(pixels, g)[60]) - int(beasf_lut(pixels, g)[40]) for g in (0.2, 1.0, 1.5, 3.0)]
    assert spread == sorted(spread) and spread[-1] > 20  # a linear map would give 20


@pytest.mark.parametrize("value", [0, 1, 77, 128, 254, 255])
def test_beasf_constant_image_is_unchanged(value):
    pixels = np.full((9, 13), value, dtype=np.uint8)
    out = beasf(pixels, 1.5)
    assert out.dtype == np.uint8 and np.all(out == value)
    lut = beasf_lut(pixels, 1.5).astype(int)
    assert lut[0] == 0 and lut[255] == 255 and np.all(np.diff(lut) >= 0)


def test_beasf_two_level_image_flat_halves():
    pixels = np.array([[10] * 8 + [200] * 8], dtype=np.uint8)  # each half holds one level only
    lut = beasf_lut(pixels, 1.5).astype(int)
    m = int(pixels.mean())
    assert np.all(np.diff(lut) >= 0) and lut[m] == m and lut[10] <= m <= lut[200]


def test_beasf_rejects_bad_input():
    with pytest.raises(ValueError, match="256"):
        beasf_lut_from_histogram(np.ones(255))
    with pytest.raises(ValueError, match="non-negative"):
        beasf_lut_from_histogram(-np.ones(256))
    with pytest.raises(ValueError, match="gamma"):
        beasf_lut_from_histogram(np.ones(256), -0.1)
    with pytest.raises(ValueError, match="2-D uint8"):
        beasf(np.zeros((4, 4), dtype=np.uint16))


def test_clahe_raises_local_contrast(hannover):
    out = clahe(hannover)
    assert out.shape == hannover.shape and out.dtype == np.uint8
    assert out.std() > hannover.std()
    assert not np.array_equal(clahe(hannover, clip_limit=4.0), out)


def test_render_stacks_channels_in_the_order_asked(hannover):
    out = render(hannover, NO_LUNGS)
    assert out.shape == (3, 320, 320) and out.dtype == np.uint8
    h, w = fit_shape(*hannover.shape, 320)
    top, left = (320 - h) // 2, (320 - w) // 2
    content = resize(hannover, (h, w))
    assert np.array_equal(out[0, top:top + h, left:left + w], content)
    assert np.array_equal(out[1, top:top + h, left:left + w], clahe(content))
    assert np.array_equal(out[2, top:top + h, left:left + w], beasf(content, 1.5))
    swapped = render(hannover, PreprocessConfig(lungs=None, channels=("beasf", "original")))
    assert np.array_equal(swapped[0], out[2]) and np.array_equal(swapped[1], out[0])
    assert channel_stack(content, ["clahe", "clahe"]).shape == (2, h, w)


def test_render_non_square_pad_and_stretch(nih):
    tall = nih[:, 100:300]  # 512 high, 200 wide
    padded = render(tall, PreprocessConfig(size=64, lungs=None, pad_value=7))
    h, w = fit_shape(*tall.shape, 64)
    assert (h, w) == (64, 25)
    left = (64 - w) // 2
    assert np.all(padded[:, :, :left] == 7) and np.all(padded[:, :, left + w:] == 7)
    stretched = render(tall, PreprocessConfig(size=64, lungs=None, resize="stretch"))
    assert stretched.shape == (3, 64, 64) and (stretched[0] != 7).mean() > 0.9


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (7, 5)])
def test_render_tiny_images(shape):
    pixels = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape) * 30
    out = render(pixels, PreprocessConfig(size=32, lungs=None))
    assert out.shape == (3, 32, 32) and out.dtype == np.uint8


def test_render_constant_image():
    out = render(np.full((50, 40), 90, dtype=np.uint8), PreprocessConfig(size=32, lungs=None, resize="stretch"))
    assert np.all(out[0] == 90) and np.all(out[2] == 90) and len(np.unique(out[1])) == 1


def test_16_bit_input_is_windowed_then_enhanced(tmp_path):
    ramp = (np.linspace(1000, 4000, 60 * 80).reshape(60, 80)).astype(np.uint16)
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    pixels = decode_image(path).pixels
    assert pixels.dtype == np.uint8 and pixels.min() == 0 and pixels.max() == 255
    out = render(pixels, PreprocessConfig(size=40, lungs=None))
    assert out.shape == (3, 40, 40) and out[0].max() > 200


def test_match_histogram_moves_towards_the_reference(hannover, nih):
    matched = match_histogram(hannover, nih)
    assert matched.dtype == np.uint8 and matched.shape == hannover.shape
    assert abs(float(matched.mean()) - float(nih.mean())) < abs(float(hannover.mean()) - float(nih.mean()))
    assert abs(float(matched.mean()) - float(nih.mean())) < 3
    assert np.array_equal(match_histogram(nih, nih), nih)


def test_config_hash_is_stable_and_content_based(tmp_path, sample_root):
    a = PreprocessConfig(lungs=None)
    assert a.config_hash() == PreprocessConfig(lungs=None).config_hash()
    code = "from cxrcurate.preprocess.config import PreprocessConfig as C; print(C(lungs=None).config_hash())"
    other_process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other_process.stdout.strip() == a.config_hash()
    changed = [PreprocessConfig(lungs=None, size=256), PreprocessConfig(lungs=None, resize="stretch"),
               PreprocessConfig(lungs=None, channels=("clahe", "original", "beasf")),
               PreprocessConfig(lungs=None, beasf_gamma=1.0), PreprocessConfig(lungs=None, clahe_clip=3.0)]
    assert len({a.config_hash()} | {c.config_hash() for c in changed}) == 1 + len(changed)
    # without a lung model the crop options cannot change the pixels, so they do not change the hash
    assert PreprocessConfig(lungs=None, crop_margin=0.2).config_hash() == a.config_hash()
    ref = sample_root / "nih-cxr14" / "images" / "00000001_000.png"
    copy = tmp_path / "ref.png"
    copy.write_bytes(ref.read_bytes())
    assert (PreprocessConfig(lungs=None, histogram_reference=str(ref)).config_hash()
            == PreprocessConfig(lungs=None, histogram_reference=str(copy)).config_hash() != a.config_hash())
    assert PreprocessConfig.from_dict(a.to_dict()) == a


def test_config_rejects_bad_values():
    with pytest.raises(CxrcurateError, match="resize"):
        PreprocessConfig(resize="crop")
    with pytest.raises(CxrcurateError, match="channels"):
        PreprocessConfig(channels=("original", "sobel"))
    with pytest.raises(CxrcurateError, match="unknown preprocessing option"):
        PreprocessConfig.from_dict({"sise": 320})
    with pytest.raises(CxrcurateError, match="train-lungs"):
        PreprocessConfig(lungs="/nonexistent/lungs.safetensors").config_hash()
    assert PreprocessConfig(lungs="None").lungs is None and PreprocessConfig(lungs="none").lungs_path is None


def test_augment_is_seeded_per_sample_and_keeps_the_global_rng():
    import torch

    from cxrcurate.preprocess.augment import AugmentConfig, PaperAugment

    image = torch.rand(3, 48, 48)
    aug = PaperAugment(seed=3)
    before = torch.get_rng_state()
    a, b, c = aug(image, 5), aug(image, 5), aug(image, 6)
    assert torch.equal(torch.get_rng_state(), before)
    assert a.shape == image.shape and a.dtype == image.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    aug.set_epoch(1)
    assert not torch.equal(aug(image, 5), a)
    assert torch.equal(PaperAugment(seed=3)(image, 5), a)
    with pytest.raises(CxrcurateError):
        AugmentConfig(zoom=(1.5, 0.8))
