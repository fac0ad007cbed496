"""Open a ``cxrcurate bench`` run folder again: its options, split, predictions and trained network.

The audit and the report look at a finished run without retraining it. ``RunFolder`` rebuilds each seed's network
from ``config.json`` and the safetensors file(s), renders inputs exactly as the run did (``ManifestDataset`` with the
run's ``render`` and ImageNet normalisation), and wraps the network in ``ClassScores`` so that every rung, whatever
its head, answers with one score per class and pooled features. torch is imported at this module's top: import it
only where a network is needed.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..datasets import ManifestDataset
from ..errors import CxrcurateError
from ..models import CHEXNET_FINDINGS, ModelSpec
from ..models.ladder import BackboneClassifier, BaseCNN, ChexnetProbe, build_model
from ..preprocess.config import PreprocessConfig
from .record import RunRecord
from .run import cascade_decision, cascade_parts

log = logging.getLogger(__name__)


class ClassScores(nn.Module):
    """One score per class from any ladder network: ``[-z/2, z/2]`` for one logit, the logits for several.

    Halving keeps the softmax of the scores equal to the run's sigmoid probability.

    ``features(x)`` returns pooled features: the backbone's for a timm rung, the global average of the last
    convolution's maps for the base CNN.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        return torch.cat([-z / 2, z / 2], dim=1) if z.shape[1] == 1 else z

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return pooled_features(self.net, x)


class HierarchicalScores(nn.Module):
    """The two-stage rung as one network: log of the soft products (the scores its ROC AUC ranks by), and
    ``decide`` for the hard cascade's class and the stage that decided it (attributions explain that stage:
    ``stages()`` gives each stage as a ``ClassScores``).
    """

    def __init__(self, stage1: nn.Module, stage2: nn.Module, order: tuple[int, int, int]) -> None:
        super().__init__()
        self.stage1, self.stage2 = stage1, stage2
        self.order = order  # class indices of normal, pneumonia, covid19

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p1, p2 = torch.sigmoid(self.stage1(x).float()), torch.sigmoid(self.stage2(x).float())
        parts = dict(zip(self.order, cascade_parts(p1, p2), strict=True))
        return torch.log(torch.cat([parts[i] for i in range(3)], dim=1).clamp_min(1e-7))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([pooled_features(self.stage1, x), pooled_features(self.stage2, x)], dim=1)

    @torch.no_grad()
    def decide(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``(class index, deciding stage 1|2)`` per image: stage 1 says normal or pneumonia; only then stage 2
        says COVID-19 or other pneumonia (``bench.run.cascade``)."""
        p1 = torch.sigmoid(self.stage1(x).float())[:, 0].cpu().numpy()
        p2 = torch.sigmoid(self.stage2(x).float())[:, 0].cpu().numpy()
        return cascade_decision(p1, p2, self.order)

    def stages(self) -> tuple[ClassScores, ClassScores]:
        """Stage 1 (scores normal, pneumonia) and stage 2 (scores other pneumonia, COVID-19) as ``ClassScores``."""
        return ClassScores(self.stage1), ClassScores(self.stage2)


def pooled_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pooled features of a ladder network (what the source probe reads)."""
    if isinstance(net, BackboneClassifier):
        return net.features(x)
    if isinstance(net, BaseCNN):
        return net.features(x).mean(dim=(2, 3))
    if isinstance(net, ChexnetProbe):
        return net.net.forward_head(net.net.forward_features(x), pre_logits=True)
    raise CxrcurateError(f"no pooled features for a {type(net).__name__}")


def _no_inplace(model: nn.Module) -> nn.Module:
    """Turn off in-place activations: attribution hooks must see each layer's output unmodified."""
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    return model


class RunFolder(RunRecord):
    """A finished run (``record.RunRecord``) with what needs torch: its networks and its inputs rendered as the run
    rendered them (from the preprocessing and input config the bench recorded in ``config.json``).

    Use ``RunFolder.open``; ``manifest`` and ``data_root`` default to those the run recorded.
    """

    @cached_property
    def spec(self) -> ModelSpec:
        raw = dict(self.config["spec"])
        raw["classes"] = tuple(raw["classes"])
        return ModelSpec(**raw)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    @property
    def size(self) -> int:
        return int(self.config["input"]["size"])

    def render_config(self):
        """The ``PreprocessConfig`` the run rendered its inputs with (as recorded, not rebuilt)."""
        raw = {k: tuple(v) if isinstance(v, list) else v for k, v in self.config["preprocess"].items()}
        return PreprocessConfig(**raw)

    def dataset(self, rows: pd.DataFrame):
        """A ``ManifestDataset`` over ``rows`` (with ``path``, ``target``, ``image_id``), rendered as the run did."""
        inp = self.config["input"]
        return ManifestDataset.from_rows(rows, self.root, self.classes, preprocess=self.render_config(),
                                         normalize=(tuple(inp["mean"]), tuple(inp["std"])))

    def black(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The normalised value of a black pixel per channel, ``(1, 3, 1, 1)``: the baseline of masking and IG."""
        inp = self.config["input"]
        mean, std = torch.tensor(inp["mean"]), torch.tensor(inp["std"])
        return (-mean / std).view(1, 3, 1, 1).to(device)

    def load_model(self, k: int = 0, device: torch.device | str = "cpu") -> nn.Module:
        """Seed K's trained network as ``ClassScores`` / ``HierarchicalScores``, in eval mode on ``device``.

        Raises:
            CxrcurateError: the weights file is missing or does not fit the rung.
        """
        if self.spec.hierarchical:
            order = tuple(self.classes.index(c) for c in ("normal", "pneumonia", "covid19"))
            stages = [self._load_net(self.weights_path(k, i), 1) for i in (1, 2)]
            model: nn.Module = HierarchicalScores(stages[0], stages[1], order)  # type: ignore[arg-type]
        else:
            outputs = 1 if len(self.classes) == 2 else len(self.classes)
            model = ClassScores(self._load_net(self.weights_path(k), outputs))
        return _no_inplace(model).to(device).eval()

    def _load_net(self, path: Path, outputs: int) -> nn.Module:
        from safetensors.torch import load_model

        if not path.is_file():
            raise CxrcurateError(f"{path} is missing: the run kept no weights for this seed")
        if self.spec.zero_shot:
            import timm

            net: nn.Module = ChexnetProbe(timm.create_model("densenet121", pretrained=False,
                                                            num_classes=len(CHEXNET_FINDINGS)))
        else:
            net = build_model(self.spec, init="random", outputs=outputs, input_size=self.size)
        try:
            load_model(net, str(path))
        except Exception as exc:  # safetensors raises RuntimeError/KeyError/SafetensorError for a misfit
            raise CxrcurateError(f"{path}: the weights do not fit a {self.spec.name} at {self.size} px ({exc})") \
                from exc
        return net


@torch.no_grad()
def predict_scores(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Class probabilities of a batch from a ``ClassScores``-style model (softmax of the scores)."""
    return torch.softmax(model(x).float(), dim=1).cpu().numpy()


def batches(ds: Any, batch_size: int, workers: int = 0):
    """``(x, targets, ids)`` batches of a dataset, in order (decoding in ``workers`` processes when > 0)."""
    from torch.utils.data import DataLoader

    order = torch.Generator().manual_seed(0)  # a DataLoader draws a seed: from its own generator, not the global
    for x, y, ids in DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, generator=order):
        yield x, y.numpy(), list(ids)
