"""The ladder's networks (torch and timm are imported here, at module top; import this module lazily)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import timm
import torch
from torch import nn

from ..errors import CxrcurateError
from . import CHEXNET_FINDINGS, CHEXNET_PROBE, ModelSpec
from .weights import LoadReport, load_backbone, map_densenet_keys, read_state_dict

log = logging.getLogger(__name__)


class BaseCNN(nn.Module):
    """The paper's base model: 5 conv layers of 32 3x3 filters (stride 2, ReLU, no BN or pooling), FC 10, FC 10."""

    def __init__(self, outputs: int, input_size: int = 320, in_chans: int = 3) -> None:
        super().__init__()
        layers, chans, side = [], in_chans, input_size
        for _ in range(5):
            layers += [nn.Conv2d(chans, 32, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            chans, side = 32, (side + 1) // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * side * side, 10), nn.ReLU(inplace=True),
                                  nn.Linear(10, 10), nn.ReLU(inplace=True), nn.Linear(10, outputs))
        # He initialisation: with PyTorch's default the five un-normalised layers shrink the signal ~50x (pooled
        # feature std 0.02 at 64 px) and the output is a constant (std 5e-4, measured), so training sits at ln 2
        # for many epochs; He keeps the output std near 0.3-0.4 and every head unit alive.
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BackboneClassifier(nn.Module):
    """A timm backbone with global pooling and a head: ``linear`` or the paper's ``cxnet`` FC 10 -> dropout 0.2."""

    def __init__(self, backbone: nn.Module, outputs: int, head: str) -> None:
        super().__init__()
        self.backbone = backbone
        n = backbone.num_features
        if head == "cxnet":
            self.head = nn.Sequential(nn.Linear(n, 10), nn.ReLU(inplace=True), nn.Dropout(0.2), nn.Linear(10, outputs))
        else:
            self.head = nn.Linear(n, outputs)
        self.frozen_norms: list[nn.Module] = []  # batch norms of a frozen backbone part (``freeze_but_last_block``)

    def train(self, mode: bool = True) -> BackboneClassifier:
        super().train(mode)
        for norm in self.frozen_norms:
            norm.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (what the source probe of the audit reads)."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class ChexnetProbe(nn.Module):
    """CheXNet used zero-shot: logit of the mean probability of the findings in ``CHEXNET_PROBE``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.index = [CHEXNET_FINDINGS.index(f) for f in CHEXNET_PROBE]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(self.net(x)[:, self.index]).mean(dim=1, keepdim=True).clamp(1e-6, 1 - 1e-6)
        return torch.log(p / (1 - p))


def cached_imagenet_weights(name: str) -> Path | None:
    """The local file of timm's ImageNet weights for ``name`` (Hugging Face cache, else torch hub cache), or None.

    Looks only on disk: no network request is made, whatever ``HF_HUB_OFFLINE`` says.
    """
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
        cache_dir = os.environ.get("HF_HUB_CACHE") or os.path.join(home, "hub")  # read now, not at hub's import
        for filename in filter(None, (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin")):
            found = try_to_load_from_cache(cfg.hf_hub_id, filename, cache_dir=cache_dir)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
    if cfg.url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url.split("?")[0])
        if candidate.is_file():
            return candidate
    return None


def _imagenet(name: str, weights: str | None, trust: bool = False) -> nn.Module:
    """The ImageNet backbone from ``weights``, or from timm's weights already on disk; never a download."""
    if not weights:
        local = cached_imagenet_weights(name)
        if local is None:
            cfg = timm.models.get_pretrained_cfg(name)
            where = getattr(cfg, "hf_hub_id", None) or getattr(cfg, "url", None) or name
            raise CxrcurateError(
                f"ImageNet weights for {name} are not on this machine (looked in the Hugging Face and torch hub "
                f"caches for {where}; cxrcurate never downloads weights during a benchmark). Download them once on a "
                f"machine with internet (python -c \"import timm; timm.create_model('{name}', pretrained=True)\" "
                "fills the cache), or pass --weights FILE (a timm/torchvision state dict), or use --init random")
        weights = str(local)
    net = timm.create_model(name, pretrained=False, num_classes=0)
    load_backbone(net, read_state_dict(weights, trust), weights)
    return net


def chexnet_backbone(weights: str | None, trust: bool = False) -> tuple[nn.Module, LoadReport | None]:
    """DenseNet-121 with the 14 ChestX-ray14 outputs, loaded from a CheXNet-style checkpoint.

    Raises:
        CxrcurateError: no weights given, or they do not fit.
    """
    if not weights:
        raise CxrcurateError("CheXNet init needs a checkpoint: pass --weights FILE (a CheXNet-style DenseNet-121, "
                             "e.g. from `cxrcurate pretrain-chexnet`), or choose --init imagenet|random")
    net = timm.create_model("densenet121", pretrained=False, num_classes=len(CHEXNET_FINDINGS))
    report = load_backbone(net, map_densenet_keys(read_state_dict(weights, trust)), weights)
    return net, report


def build_model(spec: ModelSpec, init: str | None = None, weights: str | os.PathLike | None = None,
                outputs: int | None = None, trust: bool = False, input_size: int | None = None) -> nn.Module:
    """The network of a ladder rung with ``outputs`` logits (default: 1 for two classes, else one per class).

    Args:
        spec: the rung.
        init: ``random``, ``imagenet`` or ``chexnet`` (default: the spec's).
        weights: checkpoint for ``imagenet`` (optional: else the timm cache) or ``chexnet`` (required).
        outputs: number of logits.
        trust: allow checkpoints that need arbitrary unpickling.
        input_size: the side of the input (the base CNN's flatten depends on it; default: the spec's).

    Raises:
        CxrcurateError: weights unavailable or not matching.
    """
    init = init or spec.init
    weights = str(weights) if weights else None
    outputs = outputs or (1 if len(spec.classes) == 2 else len(spec.classes))
    if spec.head == "base":
        return BaseCNN(outputs, input_size or spec.input_size)
    name = spec.backbone or "densenet121"
    if init == "random":
        backbone = timm.create_model(name, pretrained=False, num_classes=0)
    elif init == "imagenet":
        backbone = _imagenet(name, weights, trust)
    elif init == "chexnet":
        net, _ = chexnet_backbone(weights, trust)
        if spec.zero_shot:
            return ChexnetProbe(net)
        net.reset_classifier(0)
        backbone = net
    else:
        raise CxrcurateError(f"unknown init {init!r}; choose random, imagenet or chexnet")
    if spec.zero_shot:
        raise CxrcurateError("the chexnet probe needs --init chexnet and a CheXNet checkpoint (--weights)")
    model = BackboneClassifier(backbone, outputs, spec.head)
    if spec.trainable == "last_block":
        freeze_but_last_block(model, name)
    return model


LAST_BLOCKS = {"densenet121": ("features.denseblock4.", "features.norm5."), "resnet50": ("layer4.",)}


def freeze_but_last_block(model: BackboneClassifier, name: str) -> int:
    """Freeze every backbone parameter but those of its last block (``LAST_BLOCKS``); the head stays trainable.

    Frozen batch-norm layers keep their ImageNet statistics: ``BackboneClassifier.train`` leaves them in eval mode.
    Returns the number of trainable backbone parameters.

    Raises:
        CxrcurateError: no last block is known for the architecture.
    """
    prefixes = LAST_BLOCKS.get(name)
    if not prefixes:
        raise CxrcurateError(f"no last block known for {name}; known: {sorted(LAST_BLOCKS)}")
    trainable = 0
    for key, param in model.backbone.named_parameters():
        param.requires_grad = key.startswith(prefixes)
        trainable += param.numel() if param.requires_grad else 0
    model.frozen_norms = [m for key, m in model.backbone.named_modules()
                          if isinstance(m, nn.modules.batchnorm._BatchNorm) and not f"{key}.".startswith(prefixes)]
    model.train(model.training)
    return trainable


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Save a model's state dict as safetensors (shared tensors de-duplicated)."""
    from safetensors.torch import save_model

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, str(path), metadata=metadata or {})
    return path
