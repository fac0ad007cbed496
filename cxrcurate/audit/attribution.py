"""Where a ladder model looks: Grad-CAM, LIME and Integrated Gradients (Captum), and how much of it is lungs.

Methods (all attribute the class the model *predicts* for the image, i.e. what made it decide):

- ``gradcam``: ``LayerGradCam`` on the last convolutional block (the last module whose output is a spatial map
  larger than 1x1, found by running one batch; ``layer=`` names another), ReLU'd and upsampled bilinearly to the
  input. Coarse by construction: a 320 px DenseNet gives a 10x10 map, the base CNN at 48 px a 2x2 one.
- ``lime``: ``captum.attr.Lime`` over SLIC superpixels (scikit-image) of the input, a hidden superpixel taking the
  baseline's value, Lasso surrogate (Captum's default); one seeded surrogate per image.
- ``ig``: ``IntegratedGradients`` from the baseline, summed over channels: the pixel-level check.

The baseline (``baseline="mean"``, the default) is the image's own mean per channel, as LIME's reference
implementation hides superpixels with a flat colour. A black baseline (``"black"``) makes every bright region
"important" merely because blacking it out is a large change: on the self-test's clean control, black gave 34% of
LIME's positive mass to the lungs and a hot image corner, the mean 93% and a cold corner.

Scores per image and method, against a lung mask in input space (``lungmasks``):

- ``lung_share``: share of the positive attribution mass inside the lungs (NaN when the map has none);
- ``pointing_hit``: 1 when the map's maximum is reached inside the lungs, else 0 (NaN for a flat map);
- ``lung_fraction``: the mask's share of the input, i.e. the ``lung_share`` of a uniform map (chance).

Runs on the GPU when the model is there; deterministic: LIME's perturbations come from a per-image seed inside a
forked RNG, so the global generator is untouched and batching does not change the result, and cuDNN is held to
its deterministic kernels while attributing.
"""

from __future__ import annotations

import logging
import warnings
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..bench.runio import batches
from ..errors import CxrcurateError
from .overlays import METHODS, TITLES

log = logging.getLogger(__name__)
__all__ = ["METHODS", "TITLES", "AttributionOptions", "Attributor", "attribute_dataset", "lung_scores", "summarise"]


@dataclass
class AttributionOptions:
    """How attributions are computed (recorded in ``audit.json``)."""

    methods: tuple[str, ...] = METHODS
    batch_size: int = 16
    lime_samples: int = 100
    lime_segments: int = 40
    ig_steps: int = 32
    seed: int = 0
    layer: str | None = None
    baseline: str = "mean"

    def __post_init__(self) -> None:
        self.methods = tuple(self.methods)
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise CxrcurateError(f"unknown attribution method(s) {bad}; choose from {list(METHODS)}")
        if self.baseline not in ("mean", "black"):
            raise CxrcurateError(f"unknown attribution baseline {self.baseline!r}; choose mean or black")


def last_conv_block(model: nn.Module, example: torch.Tensor) -> str:
    """Name of the module whose output is the last spatial map (4-D, larger than 1x1) of a forward pass.

    Raises:
        CxrcurateError: the model produces no such map.
    """
    seen: list[str] = []
    pools = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d)

    def hook(name: str):
        def record(module: nn.Module, _inp: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-1] * out.shape[-2] > 1 \
                    and not isinstance(module, pools):
                seen.append(name)
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        for h in handles:
            h.remove()
    if not seen:
        raise CxrcurateError(f"{type(model).__name__} has no spatial feature map at this input size for Grad-CAM")
    return seen[-1]


def superpixels(image: np.ndarray, n_segments: int) -> np.ndarray:
    """SLIC superpixel labels ``(H, W)`` (0-based) of a 2-D image, deterministic.

    Compactness 0.3 on the image scaled to [0, 1] follows edges and gives about ``n_segments`` on radiographs;
    where that yields under a quarter of them (flat or noise-like images), a compact, nearly square grid is used.
    """
    from skimage.segmentation import slic

    img = np.asarray(image, dtype=np.float64)
    span = img.max() - img.min()
    img = (img - img.min()) / span if span > 0 else np.zeros_like(img)
    labels = slic(img, n_segments=n_segments, compactness=0.3, channel_axis=None, start_label=0)
    if labels.max() + 1 < max(2, n_segments // 4):
        labels = slic(img, n_segments=n_segments, compactness=10.0, channel_axis=None, start_label=0)
    return labels


def image_seed(seed: int, image_id: str) -> int:
    """A stable per-image seed (independent of batching and order)."""
    return (seed * 1_000_003 + zlib.crc32(image_id.encode())) % 2**31


class Attributor:
    """The three Captum methods bound to one model (in eval mode) and its black baseline.

    Args:
        model: returns one score per class (``runio.ClassScores``).
        black: the normalised black pixel, ``(1, C, 1, 1)``.
        options: methods and their settings.
        example: one input batch (to find the Grad-CAM layer).

    Raises:
        CxrcurateError: ``options.layer`` names no module of the model.
    """

    def __init__(self, model: nn.Module, black: torch.Tensor, options: AttributionOptions,
                 example: torch.Tensor) -> None:
        from captum.attr import IntegratedGradients, LayerGradCam, Lime

        self.model, self.black, self.options = model.eval(), black, options
        self.gradcam_map: tuple[int, int] | None = None
        modules = dict(model.named_modules())
        self.layer_name = options.layer or last_conv_block(model, example)
        if self.layer_name not in modules:
            raise CxrcurateError(f"no module {self.layer_name!r} in the model; e.g. {list(modules)[-5:]}")
        self._gradcam = LayerGradCam(model, modules[self.layer_name])
        self._ig = IntegratedGradients(model)
        self._lime = Lime(model)

    def __call__(self, method: str, x: torch.Tensor, target: Sequence[int], ids: Sequence[str]) -> np.ndarray:
        """Maps ``(N, H, W)`` of one method for a batch; ``ids`` seed LIME per image."""
        with warnings.catch_warnings(), _deterministic_cudnn():
            warnings.simplefilter("ignore")  # Captum's and scikit-learn's advice on batching and convergence
            if method == "gradcam":
                return self.gradcam(x, target)
            if method == "ig":
                return self.integrated_gradients(x, target)
            return self.lime(x, target, ids)

    def baseline(self, x: torch.Tensor) -> torch.Tensor:
        """The reference input of LIME and IG for a batch (see the module docstring)."""
        if self.options.baseline == "black":
            return self.black.expand_as(x)
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x)

    def gradcam(self, x: torch.Tensor, target: Sequence[int]) -> np.ndarray:
        """Grad-CAM maps ``(N, H, W)``, ReLU'd, upsampled bilinearly from the layer's grid to the input."""
        from captum.attr import LayerAttribution

        attr = self._gradcam.attribute(x, target=list(map(int, target)), relu_attributions=True)
        self.gradcam_map = (int(attr.shape[-2]), int(attr.shape[-1]))
        up = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), interpolate_mode="bilinear")
        return up[:, 0].detach().float().cpu().numpy()

    def integrated_gradients(self, x: torch.Tensor, target: Sequence[int]) -> np.ndarray:
        """Integrated Gradients from the baseline, summed over channels: ``(N, H, W)``."""
        attr = self._ig.attribute(x, baselines=self.baseline(x), target=list(map(int, target)),
                                  n_steps=self.options.ig_steps, internal_batch_size=max(self.options.batch_size, 2))
        return attr.sum(dim=1).detach().float().cpu().numpy()

    def lime(self, x: torch.Tensor, target: Sequence[int], ids: Sequence[str]) -> np.ndarray:
        """LIME maps ``(N, H, W)``: each pixel carries its superpixel's surrogate weight; one seeded fit per image."""
        out = []
        for i in range(len(x)):
            seg = superpixels(x[i].mean(dim=0).cpu().numpy(), self.options.lime_segments)
            mask = torch.from_numpy(seg).to(x.device)[None, None].expand(1, x.shape[1], -1, -1)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(image_seed(self.options.seed, ids[i]))
                attr = self._lime.attribute(x[i:i + 1], baselines=self.baseline(x[i:i + 1]),
                                            target=int(target[i]), feature_mask=mask,
                                            n_samples=self.options.lime_samples,
                                            perturbations_per_eval=self.options.batch_size)
            out.append(attr[0, 0].detach().float().cpu().numpy())
        return np.stack(out)


@contextmanager
def _deterministic_cudnn() -> Iterator[None]:
    """cuDNN's deterministic kernels for the duration (gradients of some fast ones vary run to run)."""
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def region_share(attr: np.ndarray, region: np.ndarray) -> float:
    """Share of the positive attribution mass inside ``region`` (NaN when there is no positive mass)."""
    pos = np.clip(np.nan_to_num(attr), 0, None)
    total = float(pos.sum())
    return float(pos[region].sum()) / total if total > 0 else float("nan")


def pointing_hit(attr: np.ndarray, region: np.ndarray) -> float:
    """1.0 when the map's maximum is reached inside ``region``, 0.0 when not, NaN for a flat map."""
    attr = np.nan_to_num(attr)
    top = float(attr.max())
    if top <= float(attr.min()) or top <= 0:
        return float("nan")
    return float(region.any() and float(attr[region].max()) >= top)


def attribute_dataset(model: nn.Module, ds: Any, black: torch.Tensor, options: AttributionOptions,
                      device: torch.device | str, keep: set[str] | None = None,
                      ) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray], dict[str, Any]]:
    """Attribute every image of ``ds`` (an ``ImageDataset``) with each method.

    Returns:
        ``(predictions, maps, info)``: one row per image (``image_id``, ``target``, ``predicted``, ``p_max``);
        the maps ``(H, W)`` keyed by ``(image_id, method)`` (all, or only the ids in ``keep``); and
        ``gradcam_layer`` / ``gradcam_map`` (the layer's name and its map's size before upsampling).
    """
    if hasattr(model, "decide"):
        return _attribute_cascade(model, ds, black, options, device, keep)
    attributor: Attributor | None = None
    rows, maps = [], {}
    for x, y, ids in batches(ds, options.batch_size):
        x = x.to(device)
        if attributor is None:
            attributor = Attributor(model, black, options, x)
        with torch.no_grad():
            proba = torch.softmax(model(x).float(), dim=1).cpu().numpy()
        pred = proba.argmax(axis=1)
        rows += [{"image_id": i, "target": int(t), "predicted": int(p), "p_max": float(pm)}
                 for i, t, p, pm in zip(ids, y, pred, proba.max(axis=1), strict=True)]
        for method in options.methods:
            for image_id, m in zip(ids, attributor(method, x, pred, ids), strict=True):
                if keep is None or image_id in keep:
                    maps[(image_id, method)] = m
    info = {"gradcam_layer": attributor.layer_name if attributor else None,
            "gradcam_map": list(attributor.gradcam_map) if attributor and attributor.gradcam_map else None,
            "baseline": options.baseline}
    return pd.DataFrame(rows), maps, info


def _attribute_cascade(model: nn.Module, ds: Any, black: torch.Tensor, options: AttributionOptions, device: Any,
                       keep: set[str] | None) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray], dict[str, Any]]:
    """``attribute_dataset`` for the hierarchical rung: each image is explained by the stage that decided it
    (stage 1 for normal, stage 2 for COVID-19 and other pneumonia), for the class that stage chose."""
    covid = model.order[2]
    stages = model.stages()
    attributors: dict[int, Attributor] = {}
    rows, maps = [], {}
    for x, y, ids in batches(ds, options.batch_size):
        x = x.to(device)
        pred, stage = model.decide(x)
        with torch.no_grad():
            p_max = torch.softmax(model(x).float(), dim=1).max(dim=1).values.cpu().numpy()
        rows += [{"image_id": i, "target": int(t), "predicted": int(p), "p_max": float(pm), "decided_by": int(k)}
                 for i, t, p, pm, k in zip(ids, y, pred, p_max, stage, strict=True)]
        for k in (1, 2):
            sel = np.flatnonzero(stage == k)
            if not len(sel):
                continue
            xs = x[torch.as_tensor(sel, device=x.device)]
            if k not in attributors:
                attributors[k] = Attributor(stages[k - 1], black, options, xs)
            # stage 1 scores (normal, pneumonia); stage 2 scores (other pneumonia, COVID-19)
            target = [0] * len(sel) if k == 1 else [int(pred[i] == covid) for i in sel]
            sel_ids = [ids[i] for i in sel]
            for method in options.methods:
                for image_id, m in zip(sel_ids, attributors[k](method, xs, target, sel_ids), strict=True):
                    if keep is None or image_id in keep:
                        maps[(image_id, method)] = m
    first = attributors.get(2) or attributors.get(1)
    info = {"gradcam_layer": {f"stage{k}": a.layer_name for k, a in attributors.items()},
            "gradcam_map": list(first.gradcam_map) if first and first.gradcam_map else None,
            "baseline": options.baseline, "explained_by": "the stage that decided each image"}
    return pd.DataFrame(rows), maps, info


def lung_scores(maps: dict[tuple[str, str], np.ndarray], masks: dict[str, np.ndarray | None],
                kinds: dict[str, str]) -> pd.DataFrame:
    """One row per (image, method): ``lung_share``, ``pointing_hit``, ``lung_fraction`` and the mask's kind."""
    rows = []
    for (image_id, method), attr in maps.items():
        mask = masks.get(image_id)
        row = {"image_id": image_id, "method": method, "mask_kind": kinds.get(image_id, "none")}
        if mask is None:
            rows.append({**row, "lung_share": np.nan, "pointing_hit": np.nan, "lung_fraction": np.nan})
        else:
            rows.append({**row, "lung_share": region_share(attr, mask), "pointing_hit": pointing_hit(attr, mask),
                         "lung_fraction": float(mask.mean())})
    return pd.DataFrame(rows)


def _stats(g: pd.DataFrame) -> dict[str, Any]:
    masked = g[g["mask_kind"] != "none"]
    share, hit = masked["lung_share"].dropna(), masked["pointing_hit"].dropna()
    nan = float("nan")
    return {"n": int(len(g)), "no_mask": int((g["mask_kind"] == "none").sum()),
            "no_positive_attribution": int(masked["lung_share"].isna().sum()),
            "lung_share_mean": float(share.mean()) if len(share) else nan,
            "lung_share_median": float(share.median()) if len(share) else nan,
            "pointing_hit_rate": float(hit.mean()) if len(hit) else nan,
            "chance": float(masked["lung_fraction"].mean()) if len(masked) else nan}


def summarise(scores: pd.DataFrame, classes: Sequence[str]) -> dict[str, Any]:
    """Per method: overall, per class (the image's true class) and per source, plus mask kinds.

    ``scores`` is ``lung_scores`` joined with ``target`` and ``source``.
    """
    out: dict[str, Any] = {}
    for method, g in scores.groupby("method", sort=False):
        out[str(method)] = {
            "overall": _stats(g),
            "by_class": {classes[int(t)]: _stats(s) for t, s in g.groupby("target")},
            "by_source": {str(src): _stats(s) for src, s in g.groupby("source")},
            "mask_kinds": {str(k): int(v) for k, v in g["mask_kind"].value_counts().items()},
        }
    return out
