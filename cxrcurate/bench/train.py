"""Training and prediction for one ladder model: Adam, class-weighted loss with label smoothing, early stopping,
checkpoints and resume, an LR range test, AMP and channels_last on GPU, and DDP under ``torchrun``."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import CheckpointError
from ..models.weights import torch_load
from .feed import loader_settings
from .record import CHECKPOINT

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Knobs of one training run (all recorded in the run's config.json)."""

    epochs: int = 30
    batch_size: int = 16
    lr: float | str = 1e-4  # a number or "auto" (LR range test)
    warmup_steps: int | None = None  # linear warm-up from lr/10 (None: 10% of the first epoch's steps, <= 50)
    weight_decay: float = 0.0
    patience: int = 5
    label_smoothing: float = 0.0
    workers: int | None = None  # DataLoader workers (None: one per core but one, ``feed.auto_workers``)
    seed: int = 0
    amp: bool = True
    max_minutes: float | None = None


def distributed() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)``; initialises the process group when started by ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    if world > 1:
        return torch.distributed.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def device_for(local_rank: int = 0) -> torch.device:
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch and numpy for this process; returns a generator for the DataLoader shuffling."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


class Loss(nn.Module):
    """BCE (one logit) or cross-entropy (several), class-weighted, with label smoothing."""

    def __init__(self, class_weights: torch.Tensor, smoothing: float) -> None:
        super().__init__()
        self.register_buffer("w", class_weights.float())
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] == 1:
            y = target.float()
            soft = y * (1 - self.smoothing) + 0.5 * self.smoothing
            loss = nn.functional.binary_cross_entropy_with_logits(logits[:, 0].float(), soft, reduction="none")
            return (loss * self.w[target]).sum() / self.w[target].sum()
        return nn.functional.cross_entropy(logits.float(), target, weight=self.w, label_smoothing=self.smoothing)


def class_weights(targets: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (a class absent from training gets weight 0)."""
    counts = np.bincount(targets, minlength=n_classes).astype(float)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 0.0)
    return torch.tensor(w / max(w[w > 0].mean(), 1e-9), dtype=torch.float32)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Per-class probabilities: ``[1-p, p]`` from one logit, softmax from several."""
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits.float())
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits.float(), dim=1)


def _loader(ds: Dataset, cfg: TrainConfig, shuffle: bool, generator: torch.Generator | None = None) -> DataLoader:
    sampler = None
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        sampler = torch.utils.data.distributed.DistributedSampler(ds, shuffle=shuffle, seed=cfg.seed)
        shuffle = False
    return DataLoader(ds, batch_size=cfg.batch_size, shuffle=shuffle, sampler=sampler, generator=generator,
                      **loader_settings(cfg.workers, torch.cuda.is_available()),
                      drop_last=shuffle and len(ds) > cfg.batch_size)  # no 1-image batch for batch norm


@torch.no_grad()
def predict(model: nn.Module, ds: Dataset, cfg: TrainConfig, device: torch.device) -> tuple[np.ndarray, list[str]]:
    """Probabilities for every item of ``ds`` (in order) and their ids; gathered on every rank under DDP."""
    model.eval()
    probs, ids = [], []
    for x, _, idx in _loader(ds, cfg, shuffle=False):
        x = x.to(device, non_blocking=True)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
            probs.append(probabilities(model(x)).cpu())
        ids.extend(idx)
    p = torch.cat(probs).numpy() if probs else np.zeros((0, 2))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, (p, ids))
        seen, rows, out_ids = set(), [], []
        for part_p, part_ids in gathered:
            for row, i in zip(part_p, part_ids, strict=True):
                if i not in seen:  # DistributedSampler pads with repeats
                    seen.add(i)
                    rows.append(row)
                    out_ids.append(i)
        return np.array(rows), out_ids
    return p, ids


LR_MIN, LR_MAX = 1e-5, 1e-2  # what ``lr_range_test`` may return for Adam
LR_FALLBACK = 1e-3  # when the range test shows no descent at all (a flat loss has no meaningful minimum)
MIN_DESCENT = 0.03  # the smoothed loss must fall by this share of its start for the test to count


def lr_range_test(model: nn.Module, ds: Dataset, loss_fn: nn.Module, cfg: TrainConfig, device: torch.device,
                  start: float = 1e-7, end: float = 1.0, steps: int = 80) -> float:
    """Exponentially increasing LR over ``steps`` batches; returns a decade below the LR of the smoothed loss's
    minimum, clipped to [``LR_MIN``, ``LR_MAX``].

    The rate at the minimum is already at the edge of divergence and the steepest descent of a noisy curve can sit
    anywhere before it (on real CXRs it chose 0.11 for Adam, and training diverged), so the rule is the usual
    "one decade below the minimum". When the smoothed loss never falls by ``MIN_DESCENT`` of its start (a network
    sitting at ln 2 whatever the rate: the minimum of a flat, noisy curve is anywhere), the test says nothing and
    ``LR_FALLBACK`` is used, with a warning. The model's weights are restored afterwards.
    """
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=start)
    factor = (end / start) ** (1 / max(1, steps - 1))
    lrs, losses, raw, smooth = [], [], [], None
    model.train()
    on_device = getattr(ds, "batch_augment", None)  # a GPU run augments and normalises the batch on the device
    it = iter(_loader(ds, cfg, shuffle=True, generator=seed_everything(cfg.seed)))
    for step in range(steps):
        try:
            x, y, ids = next(it)
        except StopIteration:
            it = iter(_loader(ds, cfg, shuffle=True))
            x, y, ids = next(it)
        x = x.to(device) if on_device is None else on_device(x.to(device), ids)
        lr = start * factor**step
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        loss = loss_fn(model(x), y.to(device))
        loss.backward()
        opt.step()
        raw.append(loss.item())
        smooth = loss.item() if smooth is None else 0.9 * smooth + 0.1 * loss.item()
        lrs.append(lr)
        losses.append(smooth)
        if not math.isfinite(smooth) or smooth > 4 * min(losses):
            break
    model.load_state_dict(state)
    if len(losses) < 5:
        return LR_MIN
    warm = min(10, len(raw) // 2)  # the start level: mean of the first batches (one batch alone is too noisy)
    start_level = float(np.mean(raw[:warm]))
    finite = [(v, lr) for v, lr in zip(losses[warm:], lrs[warm:], strict=True) if math.isfinite(v)]
    if not finite:
        return LR_FALLBACK
    low, at_min = min(finite)
    if low > start_level * (1 - MIN_DESCENT):
        log.warning("LR range test: the loss never fell (%.4f -> at best %.4f); using lr %.0e", start_level, low,
                    LR_FALLBACK)
        return LR_FALLBACK
    chosen = float(min(max(at_min / 10, LR_MIN), LR_MAX))
    log.info("LR range test: loss minimum at %.2e -> lr %.2e (%d steps)", at_min, chosen, len(losses))
    return chosen


def fit(model: nn.Module, train_ds: Dataset, val_ds: Dataset, targets: np.ndarray, n_classes: int,
        cfg: TrainConfig, out_dir: Path, device: torch.device, resume: bool = False,
        progress: bool = True, loss_fn: nn.Module | None = None) -> list[dict[str, float]]:
    """Train with early stopping on validation loss; keep the best weights in ``model``; return the history.

    A checkpoint (model, optimiser, epoch, history) is written after every epoch to ``out_dir`` (``record.CHECKPOINT``,
    removed when the run finishes); ``resume=True`` continues from it. ``loss_fn`` replaces the class-weighted
    ``Loss`` (e.g. multi-label BCE).
    """
    from tqdm.auto import tqdm

    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    loss_fn = (loss_fn or Loss(class_weights(targets, n_classes), cfg.label_smoothing)).to(device)
    lr = lr_range_test(model, train_ds, loss_fn, cfg, device) if cfg.lr == "auto" else float(cfg.lr)
    net = model
    if torch.distributed.is_initialized():
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr, weight_decay=cfg.weight_decay)
    history: list[dict[str, float]] = []
    best, best_state, bad, start_epoch = math.inf, None, 0, 0
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / CHECKPOINT
    if resume and ckpt.exists():
        try:
            state = torch_load(ckpt, device)  # tensors only: a last.pt is never trusted to unpickle objects
        except CheckpointError as exc:
            raise CheckpointError(f"{exc}. It is the --resume checkpoint: delete it to train from the start, or "
                                  "run without --resume") from exc
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            start_epoch, best, bad = int(state["epoch"]) + 1, float(state["best"]), int(state["bad"])
            history = [dict(zip(state["history_keys"], row, strict=True)) for row in state["history"].tolist()]
            best_state = state.get("best_model") or {k: v.clone() for k, v in model.state_dict().items()}
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise CheckpointError(f"{ckpt}: not a checkpoint of this run ({type(exc).__name__}: {exc}); delete it "
                                  "to train from the start, or run without --resume") from exc
        log.info("resumed from %s at epoch %d", ckpt, start_epoch)
    generator = seed_everything(cfg.seed)
    started = time.time()
    val_loader = _loader(val_ds, cfg, shuffle=False)
    per_epoch = max(1, len(_loader(train_ds, cfg, shuffle=True)))
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else min(50, max(1, per_epoch // 10))
    step = start_epoch * per_epoch
    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        augment, on_device = getattr(train_ds, "augment", None), getattr(train_ds, "batch_augment", None)
        for aug in (augment, on_device):
            if hasattr(aug, "set_epoch"):
                aug.set_epoch(epoch)  # a new draw per epoch; the fresh loader's workers copy it
        loader = _loader(train_ds, cfg, shuffle=True, generator=generator)
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        total, seen, t0, wait = 0.0, 0, time.time(), 0.0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress or rank != 0, leave=False)
        t_data = time.time()
        for x, y, ids in bar:
            wait += time.time() - t_data
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if on_device is not None:
                x = on_device(x, ids)  # augment + normalise the whole batch where it is (BatchAugment)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            for g in opt.param_groups:  # linear warm-up from lr/10, then constant
                g["lr"] = lr * (0.1 + 0.9 * min(1.0, (step + 1) / warmup)) if warmup > 0 else lr
            step += 1
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
                loss = loss_fn(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
            seen += len(y)
            bar.set_postfix(loss=f"{total / seen:.4f}", img_s=f"{seen / (time.time() - t0):.1f}")
            t_data = time.time()
        val_loss = _evaluate_loss(model, val_loader, loss_fn, cfg, device)
        seconds = time.time() - t0
        history.append({"epoch": epoch + 1, "train_loss": total / max(1, seen), "val_loss": val_loss, "lr": lr,
                        "seconds": seconds, "images_per_s": seen / max(seconds, 1e-9),
                        "data_wait_share": wait / max(seconds, 1e-9)})
        if val_loss < best - 1e-4:
            best, bad = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        if rank == 0:
            keys = list(history[0])
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "best": best,
                        "bad": bad, "best_model": best_state, "history_keys": keys,
                        "history": torch.tensor([[h[k] for k in keys] for h in history], dtype=torch.float64)},
                       ckpt)
        log.info("epoch %d: train %.4f val %.4f", epoch + 1, history[-1]["train_loss"], val_loss)
        if progress and rank == 0:
            tqdm.write(f"epoch {epoch + 1}: {history[-1]['images_per_s']:.0f} img/s, data wait "
                       f"{history[-1]['data_wait_share']:.0%} of the epoch")
        if bad >= cfg.patience:
            log.info("early stop after %d epochs without improvement", bad)
            break
        if cfg.max_minutes and (time.time() - started) / 60 > cfg.max_minutes:
            log.info("time budget of %.1f min reached", cfg.max_minutes)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


@torch.no_grad()
def _evaluate_loss(model: nn.Module, loader: DataLoader, loss_fn: nn.Module, cfg: TrainConfig,
                   device: torch.device) -> float:
    model.eval()
    total, n = 0.0, 0
    for x, y, _ in loader:
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
            total += loss_fn(model(x), y).item() * len(y)
        n += len(y)
    if torch.distributed.is_initialized():
        t = torch.tensor([total, n], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        total, n = float(t[0]), int(t[1])
    return total / max(1, n)
