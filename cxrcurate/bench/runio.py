"""Open a ``cxrcurate bench`` run folder again: its options, split, predictions and trained network.

The audit and the report look at a finished run without retraining it. ``RunFolder`` rebuilds each seed's network
from ``config.json`` and the safetensors file(s), renders inputs exactly as the run did (``ManifestDataset`` with the
run's ``render`` and ImageNet normalisation), and wraps the network in ``ClassScores`` so that every rung, whatever
its head, answers with one score per class and pooled features. torch is imported at this module's top: import it
only where a network is needed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import CxrcurateError
from ..models import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

log = logging.getLogger(__name__)
# Manifest columns the audit and the report join onto a run's split.parquet.
EXTRA_COLUMNS = ("path", "pediatric", "age_years", "mask_paths", "pixel_sha256", "file_sha256", "phash", "extra",
                 "keep")


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
        parts = {self.order[0]: 1 - p1, self.order[1]: p1 * (1 - p2), self.order[2]: p1 * p2}
        return torch.log(torch.cat([parts[i] for i in range(3)], dim=1).clamp_min(1e-7))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([pooled_features(self.stage1, x), pooled_features(self.stage2, x)], dim=1)

    @torch.no_grad()
    def decide(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``(class index, deciding stage 1|2)`` per image: stage 1 says normal or pneumonia; only then stage 2
        says COVID-19 or other pneumonia (``bench.run.cascade``)."""
        p1 = torch.sigmoid(self.stage1(x).float())[:, 0].cpu().numpy()
        p2 = torch.sigmoid(self.stage2(x).float())[:, 0].cpu().numpy()
        normal, pneu, covid = self.order
        pred = np.where(p1 < 0.5, normal, np.where(p2 >= 0.5, covid, pneu))
        return pred, np.where(p1 < 0.5, 1, 2)

    def stages(self) -> tuple[ClassScores, ClassScores]:
        """Stage 1 (scores normal, pneumonia) and stage 2 (scores other pneumonia, COVID-19) as ``ClassScores``."""
        return ClassScores(self.stage1), ClassScores(self.stage2)


def pooled_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pooled features of a ladder network (what the source probe reads)."""
    from ..models.ladder import BackboneClassifier, BaseCNN, ChexnetProbe

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


@dataclass
class RunFolder:
    """A finished run folder (``config.json``, ``metrics.json``, ``run-K/``) and the data it was made from.

    Use ``RunFolder.open``. ``manifest`` and ``data_root`` default to those recorded in ``config.json``.
    """

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    spec: ModelSpec
    size: int
    manifest_path: Path
    data_root_override: str | None = None
    _frames: dict[int, pd.DataFrame] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, path: str | Path, manifest: str | Path | None = None, data_root: str | None = None) -> RunFolder:
        """Read a run folder's config and metrics.

        Raises:
            CxrcurateError: no ``config.json``/``metrics.json`` (not a bench run folder) or no ``run-K`` inside.
        """
        path = Path(path)
        missing = [n for n in ("config.json", "metrics.json") if not (path / n).is_file()]
        if missing:
            raise CxrcurateError(f"{path}: no {' or '.join(missing)}; is this a `cxrcurate bench` output folder?")
        config = json.loads((path / "config.json").read_text())
        metrics = json.loads((path / "metrics.json").read_text())
        raw = dict(config["spec"])
        raw["classes"] = tuple(raw["classes"])
        spec = ModelSpec(**raw)
        size = int(config["options"].get("size") or spec.input_size)
        run = cls(path, config, metrics, spec, size, Path(manifest or config["manifest"]), data_root)
        if not run.seeds:
            raise CxrcurateError(f"{path}: no run-K folder inside; did the bench run finish?")
        return run

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def seeds(self) -> list[int]:
        """Indices K of the ``run-K`` folders."""
        return sorted(int(p.name.split("-")[1]) for p in self.path.glob("run-*") if p.name.split("-")[1].isdigit())

    def seed_dir(self, k: int) -> Path:
        """``run-K`` of this run.

        Raises:
            CxrcurateError: there is no such folder.
        """
        d = self.path / f"run-{k}"
        if not d.is_dir():
            raise CxrcurateError(f"{self.path}: no run-{k}; this run has {', '.join(f'run-{s}' for s in self.seeds)}")
        return d

    @cached_property
    def manifest(self) -> pd.DataFrame:
        """The manifest the run was made from.

        Raises:
            FileNotFoundError: it has moved (pass ``manifest=`` to ``RunFolder.open``).
        """
        from ..manifest import read_manifest

        return read_manifest(self.manifest_path)

    @cached_property
    def root(self) -> Path:
        """The data root the manifest's paths are relative to."""
        from ..manifest import resolve_data_root

        return resolve_data_root(self.manifest, self.data_root_override or self.config.get("data_root"))

    def frame(self, k: int = 0) -> pd.DataFrame:
        """``run-K/split.parquet`` joined with the manifest columns the audit needs (``EXTRA_COLUMNS``).

        Raises:
            CxrcurateError: the split file is missing or names images the manifest does not hold.
        """
        if k not in self._frames:
            path = self.seed_dir(k) / "split.parquet"
            if not path.is_file():
                raise CxrcurateError(f"{path} is missing; was the run written by an older cxrcurate?")
            split = pd.read_parquet(path)
            extra = self.manifest.set_index("image_id")[list(EXTRA_COLUMNS)]
            lost = ~split["image_id"].isin(extra.index)
            if lost.any():
                raise CxrcurateError(f"{int(lost.sum())} image(s) of {path} are not in {self.manifest_path}, e.g. "
                                     f"{split.loc[lost, 'image_id'].iloc[0]}; pass the run's own manifest")
            self._frames[k] = split.join(extra, on="image_id")
        return self._frames[k]

    def predictions(self, k: int = 0) -> pd.DataFrame:
        """``run-K/predictions.parquet`` (the test set's probabilities as the run wrote them)."""
        return pd.read_parquet(self.seed_dir(k) / "predictions.parquet")

    def render_config(self):
        """The ``PreprocessConfig`` the run rendered its inputs with."""
        from .run import preprocess_config

        return preprocess_config(self.spec, self.size)

    def dataset(self, rows: pd.DataFrame):
        """A ``ManifestDataset`` over ``rows`` (with ``path``, ``target``, ``image_id``), rendered as the run did."""
        from ..datasets import ManifestDataset
        from .run import preprocess_config

        config = preprocess_config(self.spec, self.size)
        return ManifestDataset.from_rows(rows, self.root, self.classes, preprocess=config,
                                         normalize=(IMAGENET_MEAN, IMAGENET_STD))

    def black(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The normalised value of a black pixel per channel, ``(1, 3, 1, 1)``: the baseline of masking and IG."""
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        return (-mean / std).view(1, 3, 1, 1).to(device)

    def load_model(self, k: int = 0, device: torch.device | str = "cpu") -> nn.Module:
        """Seed K's trained network as ``ClassScores`` / ``HierarchicalScores``, in eval mode on ``device``.

        Raises:
            CxrcurateError: the weights file is missing or does not fit the rung.
        """
        if self.spec.hierarchical:
            order = tuple(self.classes.index(c) for c in ("normal", "pneumonia", "covid19"))
            stages = [self._load_net(self.seed_dir(k) / f"stage{i}.safetensors", 1) for i in (1, 2)]
            model: nn.Module = HierarchicalScores(stages[0], stages[1], order)  # type: ignore[arg-type]
        else:
            outputs = 1 if len(self.classes) == 2 else len(self.classes)
            model = ClassScores(self._load_net(self.seed_dir(k) / "weights.safetensors", outputs))
        return _no_inplace(model).to(device).eval()

    def _load_net(self, path: Path, outputs: int) -> nn.Module:
        from safetensors.torch import load_model

        from ..models.ladder import ChexnetProbe, build_model

        if not path.is_file():
            raise CxrcurateError(f"{path} is missing: the run kept no weights for this seed")
        if self.spec.zero_shot:
            import timm

            from ..models import CHEXNET_FINDINGS

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
