"""Tests of ``cxrcurate.preprocess.lungs`` and ``train_lungs``: the U-Net, post-processing, toy training on the
shipped sample's real Cohen masks, weight files, and the errors a user meets without weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrcurate.imageio import decode_image
from cxrcurate.manifest import read_manifest
from cxrcurate.preprocess.config import SHIPPED_WEIGHTS, PreprocessConfig
from cxrcurate.preprocess.lungs import LungSegmenter, LungWeightsError, UNet, load_weights, lung_box, lung_mask
from cxrcurate.preprocess.train_lungs import TrainOptions, dice, mask_rows, read_mask, train_lungs

TOY = TrainOptions(size=32, width=4, depth=2, epochs=2, batch_size=4, test=0.5, device="cpu")


@pytest.mark.parametrize("width,depth,size", [(4, 2, 32), (4, 3, 48), (8, 4, 64)])
def test_unet_output_shape(width, depth, size):
    model = UNet(1, width, depth).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, size, size))
    assert out.shape == (2, 1, size, size)


def test_unet_width_controls_size():
    counts = [sum(p.numel() for p in UNet(1, w, 4).parameters()) for w in (4, 8, 16)]
    assert counts[0] < counts[1] < counts[2]
    assert counts[1] * 4 < 10_000_000  # width 8 fits the 10 MB budget for shipped weights


def test_lung_mask_keeps_the_two_largest_components_and_dilates():
    prob = np.zeros((100, 100), dtype=np.float32)
    prob[20:80, 10:40] = 0.9  # left lung
    prob[20:75, 60:90] = 0.8  # right lung
    prob[90:95, 45:50] = 0.95  # a small blob: noise
    mask = lung_mask(prob, dilate=0.0)
    assert mask[50, 20] and mask[50, 70] and not mask[92, 47]
    dilated = lung_mask(prob, dilate=0.05)
    assert dilated.sum() > mask.sum() and dilated[50, 42]  # grows by 5 px into the gap
    assert lung_mask(np.zeros((10, 10)), dilate=0.1).sum() == 0


def test_lung_box_margin_and_not_found():
    mask = np.zeros((100, 200), dtype=np.uint8)
    mask[20:60, 50:150] = 1
    assert lung_box(mask, margin=0.0) == (20, 60, 50, 150)
    assert lung_box(mask, margin=0.1) == (16, 64, 40, 160)
    assert lung_box(mask, margin=1.0) == (0, 100, 0, 200)  # clipped to the image
    tiny = np.zeros((100, 200), dtype=np.uint8)
    tiny[0:2, 0:2] = 1
    assert lung_box(tiny, min_fraction=0.05) is None


def test_read_mask_ors_several_files(tmp_path):
    from PIL import Image

    left, right = np.zeros((20, 30), np.uint8), np.zeros((20, 30), np.uint8)
    left[5:15, 2:10], right[5:15, 20:28] = 255, 255
    Image.fromarray(left).save(tmp_path / "left.png")
    Image.fromarray(right[:, ::2].repeat(2, axis=1)).save(tmp_path / "right.png")
    Image.fromarray(np.zeros((10, 15), np.uint8)).save(tmp_path / "small.png")  # another size: resized
    mask = read_mask(tmp_path, ["left.png", "right.png", "small.png"], (20, 30))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert mask[10, 5] and mask[10, 24] and not mask[10, 15]
    assert dice(mask, mask) == 1.0 and dice(np.zeros(3), np.zeros(3)) == 1.0 and dice(mask, 1 - mask) == 0.0


def test_toy_training_round_trips_save_and_load(sample_build, tmp_path):
    df = read_manifest(sample_build.manifest)
    assert len(mask_rows(df)) >= 4
    out = tmp_path / "toy.safetensors"
    before = torch.get_rng_state()
    card = train_lungs(df, out, options=TOY, progress=False, command="test")
    assert torch.equal(torch.get_rng_state(), before)
    assert out.exists() and out.with_suffix(".json").exists()
    assert card["held_out"]["images"] >= 1 and 0.0 <= card["held_out"]["dice_mean"] <= 1.0
    assert card["training"]["steps"] >= 2 and card["training"]["command"] == "test"
    patients = mask_rows(df)["patient_id"].nunique()
    assert card["training"]["patients"] + card["held_out"]["patients"] == patients  # no patient on both sides
    model, loaded_card = load_weights(out)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert loaded_card == sidecar and loaded_card["arch"] == {"in_channels": 1, "width": 4, "depth": 2}
    again = train_lungs(df, tmp_path / "again.pt", options=TOY, progress=False)
    assert again["held_out"] == card["held_out"]  # same seed, same result
    pt_model, _ = load_weights(tmp_path / "again.pt")
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), pt_model(x), atol=1e-6)
    seg = LungSegmenter(out)
    pixels = decode_image(Path(sample_build.info["data_root"]) / df["path"].iloc[0]).pixels
    result = seg.segment(pixels)
    assert result.mask.shape == pixels.shape


def test_training_with_a_time_budget_stops(sample_build, tmp_path):
    df = read_manifest(sample_build.manifest)
    opts = TrainOptions(size=32, width=4, depth=2, epochs=1000, minutes=0.02, batch_size=2, test=0.5, device="cpu")
    card = train_lungs(df, tmp_path / "t.safetensors", options=opts, progress=False)
    assert card["training"]["epochs_done"] < 1000 and card["training"]["seconds"] < 30


def test_missing_weights_say_how_to_train(tmp_path):
    missing = tmp_path / "nowhere" / "lungs.safetensors"
    with pytest.raises(LungWeightsError, match=r"cxrcurate train-lungs .* --out .*lungs\.safetensors") as exc:
        LungSegmenter(missing)
    assert "--lungs none" in str(exc.value)
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"not a safetensors file")
    with pytest.raises(LungWeightsError, match="cannot load"):
        load_weights(damaged)
    foreign = tmp_path / "foreign.pt"
    torch.save(UNet(1, 4, 2).state_dict(), foreign)
    with pytest.raises(LungWeightsError, match="card"):
        load_weights(foreign)


def test_no_rows_with_masks_is_a_clear_error(sample_build, tmp_path):
    from cxrcurate.errors import CxrcurateError

    df = read_manifest(sample_build.manifest)
    df = df.assign(mask_paths=None)
    with pytest.raises(CxrcurateError, match="mask_paths"):
        train_lungs(df, tmp_path / "x.safetensors", options=TOY, progress=False)
    with pytest.raises(CxrcurateError, match="multiple of 4"):
        train_lungs(df, tmp_path / "x.safetensors", options=TrainOptions(size=30, depth=2), progress=False)


@pytest.mark.skipif(not SHIPPED_WEIGHTS.exists(), reason="no lung weights shipped in this checkout")
def test_shipped_weights_find_the_lungs_on_real_images(sample_root):
    seg = LungSegmenter(SHIPPED_WEIGHTS)
    assert seg.card["held_out"]["dice_mean"] >= 0.9 and SHIPPED_WEIGHTS.stat().st_size <= 10_000_000
    assert PreprocessConfig().lungs_path == SHIPPED_WEIGHTS
    # sources the model never saw in training (it was trained on Cohen masks only)
    unseen = sorted((sample_root / "covid-cxnet" / "images").iterdir()) + sorted(
        (sample_root / "nih-cxr14" / "images").iterdir())
    for path in unseen:
        pixels = decode_image(path).pixels
        result = seg.segment(pixels)
        assert result.box is not None, path.name
        top, bottom, left, right = result.box
        h, w = pixels.shape
        assert 0 <= top < h / 2 < bottom <= h and 0 <= left < w / 2 < right <= w, path.name  # holds the centre
        assert 0.3 < (bottom - top) * (right - left) / (h * w) <= 1.0, path.name
        assert 0.2 < result.mask.mean() < 0.7, path.name
    for tiny in (np.full((1, 1), 90, np.uint8), np.arange(12, dtype=np.uint8).reshape(3, 4) * 20):
        result = seg.segment(tiny)  # no lungs to find, and nothing breaks
        assert result.mask.shape == tiny.shape and result.crop(tiny).size >= 1
    # the sample's Cohen masks (images the model was trained on: a smoke test of the mask's placement only)
    scores = []
    for name in ("b343e657.jpg", "19abe1f3.jpg", "483f2ad8.jpg"):
        pixels = decode_image(sample_root / "cohen" / "images" / name).pixels
        target = read_mask(sample_root / "cohen", [f"lung-masks/{name}"], pixels.shape)
        scores.append(dice(seg.segment(pixels).mask, target))
    assert np.mean(scores) > 0.8  # dilated masks (the crop's) against the drawn ones
