"""Attributions (Grad-CAM, LIME, IG) on ladder models, lung scores, and where lung masks come from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch", reason="the [bench] extra installs torch")
pytest.importorskip("captum", reason="the [bench] extra installs captum")

from cxrcurate.audit.attribution import (  # noqa: E402
    AttributionOptions,
    Attributor,
    attribute_dataset,
    last_conv_block,
    lung_scores,
    pointing_hit,
    region_share,
    summarise,
    superpixels,
)
from cxrcurate.audit.lungmasks import LungMasks, central_box, input_masks, to_input  # noqa: E402
from cxrcurate.bench.runio import ClassScores  # noqa: E402
from cxrcurate.errors import CxrcurateError  # noqa: E402
from cxrcurate.models import IMAGENET_MEAN, IMAGENET_STD, get_spec  # noqa: E402
from cxrcurate.models.ladder import build_model  # noqa: E402

BLACK = (-torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)).view(1, 3, 1, 1)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _base_cnn(size: int = 48) -> torch.nn.Module:
    torch.manual_seed(0)
    from cxrcurate.bench.runio import _no_inplace

    return _no_inplace(ClassScores(build_model(get_spec("base-cnn"), init="random", input_size=size))).eval()


def test_region_share_and_pointing_hit():
    attr = np.zeros((4, 4))
    attr[0, 0], attr[3, 3], attr[1, 1] = 3.0, 1.0, -5.0
    region = np.zeros((4, 4), dtype=bool)
    region[2:, 2:] = True
    assert region_share(attr, region) == pytest.approx(0.25)  # negatives do not count
    assert pointing_hit(attr, region) == 0.0
    attr[3, 3] = 3.0  # a tie for the maximum inside the region is a hit
    assert pointing_hit(attr, region) == 1.0
    assert np.isnan(region_share(np.zeros((4, 4)), region)) and np.isnan(pointing_hit(np.zeros((4, 4)), region))


def test_last_conv_block_is_the_final_spatial_map():
    model = _base_cnn(64)
    assert last_conv_block(model, torch.zeros(1, 3, 64, 64)) == "net.features"
    torch.manual_seed(0)
    dense = ClassScores(build_model(get_spec("densenet121-imagenet"), init="random")).eval()
    name = last_conv_block(dense, torch.zeros(1, 3, 64, 64))
    assert name.startswith("net.backbone.features")  # timm's norm5 block, not the 1x1 pooled map


class Quadrant(torch.nn.Module):
    """A known model: the COVID-19 score is the mean of the first channel over the top-left quarter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1, bias=False)
        self.conv.weight.data[:] = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        s = 10 * self.conv(x)[:, 0, : h // 2, : w // 2].mean(dim=(1, 2))
        return torch.stack([-s, s], dim=1)


def test_lime_and_ig_find_what_drives_a_known_model_deterministically():
    model = Quadrant().eval()
    torch.manual_seed(0)
    x = torch.rand(3, 3, 32, 32) + 1.0
    opts = AttributionOptions(lime_samples=40, lime_segments=36, ig_steps=8, batch_size=8, seed=3, baseline="black")
    quarter = np.zeros((32, 32), dtype=bool)
    quarter[:16, :16] = True
    att = Attributor(model, BLACK, opts, x)
    for method, least in (("ig", 0.95), ("lime", 0.7)):  # superpixels do not follow the quarter's edge exactly
        maps = att(method, x, [1, 1, 1], ["a", "b", "c"])
        assert all(region_share(m, quarter) > least for m in maps), method  # the quarter is 25% of the image
    lime = att("lime", x, [1, 1, 1], ["a", "b", "c"])
    alone = Attributor(model, BLACK, opts, x)("lime", x[1:2], [1], ["b"])  # batch of one, fresh attributor
    np.testing.assert_allclose(lime[1], alone[0])
    reseeded = Attributor(model, BLACK, AttributionOptions(**{**opts.__dict__, "seed": 4}), x)
    assert not np.allclose(reseeded("lime", x[1:2], [1], ["b"])[0], alone[0])  # so the equality is not luck


def test_every_method_runs_on_a_densenet():
    torch.manual_seed(0)
    dense = ClassScores(build_model(get_spec("densenet121-imagenet"), init="random")).eval()
    x = torch.randn(2, 3, 64, 64)
    att = Attributor(dense, BLACK, AttributionOptions(lime_samples=8, lime_segments=12, ig_steps=4), x)
    for method in ("gradcam", "lime", "ig"):
        maps = att(method, x, [1, 0], ["a", "b"])
        assert maps.shape == (2, 64, 64) and np.isfinite(maps).all(), method
    assert att.gradcam_map == (2, 2)


def test_attribute_dataset_keeps_the_global_rng_untouched():
    model = _base_cnn()
    x = torch.randn(3, 3, 48, 48)
    ds = [(x[i], i % 2, f"img{i}") for i in range(3)]
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    pred, maps, info = attribute_dataset(model, ds, BLACK, AttributionOptions(lime_samples=8, ig_steps=4), "cpu")
    assert torch.rand(1) == expected
    assert list(pred["image_id"]) == ["img0", "img1", "img2"] and len(maps) == 9
    assert info["gradcam_layer"] == "net.features" and info["gradcam_map"] == [2, 2]
    with pytest.raises(CxrcurateError, match="unknown attribution method"):
        AttributionOptions(methods=("shap",))


def test_superpixels_are_deterministic():
    img = np.random.default_rng(0).random((48, 48))
    a, b = superpixels(img, 30), superpixels(img, 30)
    assert (a == b).all() and a.min() == 0 and 10 <= a.max() + 1 <= 60


def test_to_input_follows_the_render_geometry():
    from cxrcurate.preprocess.config import PreprocessConfig
    from cxrcurate.preprocess.enhance import render

    pixels = np.full((40, 80), 20, dtype=np.uint8)  # wide: padded top and bottom at render
    mask = np.zeros((40, 80), dtype=np.uint8)
    mask[10:30, 50:70] = 1
    pixels[mask > 0] = 250
    config = PreprocessConfig(size=32, channels=("original",) * 3, lungs=None)
    rendered = render(pixels, config)[0] > 128
    mapped = to_input(mask, config, dilate=0)
    assert mapped.shape == (32, 32) and (rendered == mapped).mean() > 0.97
    assert to_input(mask, config).sum() > mapped.sum()  # dilated by default


def test_lung_masks_ground_truth_then_unet_and_the_labelled_fallback(tmp_path):
    from PIL import Image

    truth = np.zeros((32, 32), dtype=np.uint8)
    truth[8:24, 4:14] = 255
    Image.fromarray(truth).save(tmp_path / "m.png")
    rows = pd.DataFrame({"image_id": ["a", "b"], "path": ["a.png", "b.png"], "mask_paths": [["m.png"], None]})
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(tmp_path / name)
    from cxrcurate.preprocess.config import PreprocessConfig

    config = PreprocessConfig(size=32, resize="pad", lungs=None)
    masks, kinds = input_masks(LungMasks(tmp_path, "ground-truth"), rows, config)
    assert kinds == {"a": "ground-truth", "b": "none"} and masks["b"] is None and masks["a"][16, 8]
    masks, kinds = input_masks(LungMasks(tmp_path, "ground-truth", fallback_box=True), rows, config)
    assert kinds["b"] == "central-box" and masks["b"].sum() == to_input(central_box((32, 32)), config).sum()
    auto = LungMasks(tmp_path, "auto")
    auto._segmenter = type("NoLungs", (), {"segment": lambda self, px: type("R", (), {"box": None})()})()
    masks, kinds = input_masks(auto, rows, config)
    assert kinds == {"a": "ground-truth", "b": "none"}  # U-Net found nothing: counted, never invented
    with pytest.raises(CxrcurateError, match="lung mask source"):
        LungMasks(tmp_path, "guess")


def test_summarise_reports_per_class_and_source_and_counts_missing_masks():
    maps = {("a", "ig"): np.eye(4), ("b", "ig"): np.eye(4), ("c", "ig"): np.eye(4)}
    inside = np.eye(4, dtype=bool)
    scores = lung_scores(maps, {"a": inside, "b": ~inside, "c": None}, {"a": "unet", "b": "unet", "c": "none"})
    scores = scores.merge(pd.DataFrame({"image_id": ["a", "b", "c"], "target": [0, 1, 1],
                                        "source": ["s1", "s2", "s2"]}), on="image_id")
    s = summarise(scores, ("non-covid", "covid19"))["ig"]
    assert s["overall"]["n"] == 3 and s["overall"]["no_mask"] == 1
    assert s["overall"]["lung_share_mean"] == pytest.approx(0.5) and s["overall"]["pointing_hit_rate"] == 0.5
    assert s["by_class"]["covid19"]["lung_share_mean"] == 0.0 and s["by_source"]["s1"]["pointing_hit_rate"] == 1.0
    assert s["mask_kinds"] == {"unet": 2, "none": 1}


def test_the_cascade_is_explained_by_the_stage_that_decided():
    from cxrcurate.bench.runio import HierarchicalScores
    from cxrcurate.models.ladder import BaseCNN

    torch.manual_seed(0)
    s1, s2 = BaseCNN(1, 32), BaseCNN(1, 32)
    with torch.no_grad():  # stage 1 says pneumonia exactly when the top half is bright
        s1.head[-1].bias.fill_(0.0)
    model = HierarchicalScores(s1, s2, (0, 1, 2)).eval()
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(12, 3, 32, 32, generator=g)

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(xs)

        def __getitem__(self, i):
            return xs[i], i % 3, f"img{i}"

    pred, stage = model.decide(xs)
    assert set(np.unique(stage)) <= {1, 2} and np.all((stage == 1) == (pred == 0))
    opts = AttributionOptions(methods=("gradcam", "ig"), ig_steps=4, batch_size=4)
    rows, maps, info = attribute_dataset(model, DS(), torch.zeros(1, 3, 1, 1), opts, "cpu")
    assert list(rows["decided_by"]) == list(stage) and list(rows["predicted"]) == list(pred)
    assert len(maps) == 2 * len(xs) and all(m.shape == (32, 32) for m in maps.values())
    assert info["explained_by"] == "the stage that decided each image"
    assert set(info["gradcam_layer"]) == {f"stage{k}" for k in np.unique(stage)}
