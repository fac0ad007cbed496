"""``cxrcurate pretrain-chexnet``: the CheXNet recipe (DenseNet-121, 14 sigmoid outputs, Adam, 224 px, weighted
BCE, patient-level split) on a ChestX-ray14 manifest, producing a checkpoint ``cxnet`` and ``chexnet`` load."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..datasets import ManifestDataset
from ..errors import CxrcurateError
from ..manifest import read_manifest, resolve_data_root
from ..models import CHEXNET_FINDINGS, IMAGENET_MEAN, IMAGENET_STD
from ..models.ladder import save_weights
from ..preprocess.augment import PaperAugment
from ..preprocess.config import PreprocessConfig
from ..splits import make_split
from .feed import loader_settings
from .train import TrainConfig, device_for, distributed, fit

log = logging.getLogger(__name__)


def multi_hot(findings: pd.Series) -> np.ndarray:
    """``(n, 14)`` float targets from ``|``-joined ChestX-ray14 findings (whole tokens)."""
    out = np.zeros((len(findings), len(CHEXNET_FINDINGS)), np.float32)
    index = {f: i for i, f in enumerate(CHEXNET_FINDINGS)}
    for row, value in enumerate(findings.fillna("")):
        for token in str(value).split("|"):
            if token.strip() in index:
                out[row, index[token.strip()]] = 1.0
    return out


class _MultiLabel(ManifestDataset):
    """The bench's dataset with the 14 ChestX-ray14 findings as a multi-hot target."""

    def __getitem__(self, i: int):
        x, _, image_id = super().__getitem__(i)
        return x, torch.from_numpy(self.findings[i]), image_id


def _multilabel(rows: pd.DataFrame, root: Path, conf: Any, augment: Any) -> _MultiLabel:
    ds = _MultiLabel.from_rows(rows, root, ("finding",), targets=np.zeros(len(rows), int), preprocess=conf,
                               augment=augment, normalize=(IMAGENET_MEAN, IMAGENET_STD))
    ds.findings = multi_hot(rows["finding_raw"])
    return ds


class WeightedBCE(nn.Module):
    """Per-finding positive weighting (the CheXNet paper's weighted BCE)."""

    def __init__(self, labels: np.ndarray) -> None:
        super().__init__()
        pos = labels.mean(axis=0).clip(1e-3, 1 - 1e-3)
        self.register_buffer("pos_weight", torch.tensor((1 - pos) / pos, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), target.float(),
                                                              pos_weight=self.pos_weight)


def pretrain_chexnet(manifest: str | Path, out: str | Path, size: int = 224, cfg: TrainConfig | None = None,
                     data_root: str | None = None, max_images: int | None = None, progress: bool = True) -> Path:
    """Train CheXNet on the NIH rows of a manifest; write ``chexnet.safetensors`` + ``chexnet.json`` (AUROCs).

    Raises:
        CxrcurateError: the manifest has no ChestX-ray14 rows.
    """
    import timm
    from sklearn.metrics import roc_auc_score

    cfg = cfg or TrainConfig(epochs=10, batch_size=16, lr=1e-3, patience=2)
    df = read_manifest(manifest)
    rows = df[(df["source"] == "nih-cxr14") & df["keep"].fillna(True).astype(bool)]
    if rows.empty:
        raise CxrcurateError(f"{manifest}: no nih-cxr14 rows; build a manifest with --source nih-cxr14=PATH")
    if max_images and len(rows) > max_images:
        rows = rows.sample(max_images, random_state=cfg.seed)
    root = resolve_data_root(df, data_root)
    rows = make_split(rows, test=0.2, val=0.1, seed=cfg.seed, stratify=None)
    conf = PreprocessConfig(size=size, channels=("original",) * 3, lungs=None)

    parts = {s: _multilabel(rows[rows["split"] == s], root, conf, PaperAugment(seed=cfg.seed) if s == "train" else None)
             for s in ("train", "val", "test")}
    _, _, local = distributed()
    device = device_for(local)
    model = timm.create_model("densenet121", pretrained=False, num_classes=len(CHEXNET_FINDINGS))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    history = fit(model, parts["train"], parts["val"], np.zeros(1, int), len(CHEXNET_FINDINGS), cfg, out, device,
                  progress=progress, loss_fn=WeightedBCE(parts["train"].findings))
    model.eval()
    logits_as_probs, ids = _predict_multilabel(model, parts["test"], cfg, device)
    truth = parts["test"].findings
    aurocs = {}
    for i, name in enumerate(CHEXNET_FINDINGS):
        if len(set(truth[:, i])) == 2:
            aurocs[name] = float(roc_auc_score(truth[:, i], logits_as_probs[:, i]))
    path = save_weights(model, out / "chexnet.safetensors", {"findings": json.dumps(CHEXNET_FINDINGS)})
    card = {"weights": path.name, "architecture": "timm densenet121, 14 outputs", "size": size,
            "findings": list(CHEXNET_FINDINGS), "test_auroc": aurocs, "train": asdict(cfg),
            "rows": rows["split"].value_counts().to_dict(), "history": history}
    (out / "chexnet.json").write_text(json.dumps(card, indent=2, default=str))
    return path


@torch.no_grad()
def _predict_multilabel(model: nn.Module, ds: _MultiLabel, cfg: TrainConfig, device: torch.device):
    probs, ids = [], []
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size,
                                         **loader_settings(cfg.workers, torch.cuda.is_available()))
    for x, _, idx in loader:
        probs.append(torch.sigmoid(model(x.to(device)).float()).cpu())
        ids.extend(idx)
    return torch.cat(probs).numpy(), ids


