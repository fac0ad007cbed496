"""Train the lung U-Net on manifest rows that have ``mask_paths``; report Dice on held-out patients.

Any source that ships lung masks works: Cohen's ``lung-masks/`` (one mask per image), Montgomery's left and right
masks (OR-ed into one), Shenzhen's. Rows are split by ``splits.make_split`` (whole patients and linked pictures on
one side), so the Dice reported is that of patients the model never saw. It is measured at each image's own
resolution: the probability map is resized back to the image before thresholding.

Training is bounded by epochs and, optionally, wall-clock minutes; the learning rate follows a cosine that ends
when either runs out, so a time-boxed run still ends on a small learning rate. The global torch RNG is left as it
was found (the run draws from a forked state seeded with ``seed``).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from ..errors import CxrcurateError
from ..imageio import decode_image
from ..manifest import load_frame, resolve_data_root, safe_path
from ..splits import make_split
from .lungs import UNet, lung_mask, normalise, save_weights, to_input

log = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    """Training knobs (the CLI exposes each).

    Attributes:
        size: square input side (a multiple of ``2**depth``).
        width, depth: U-Net width (first-level channels) and depth.
        epochs: passes over the training images (an upper bound when ``minutes`` is set).
        minutes: wall-clock budget for the training loop, or None.
        batch_size, lr: Adam batch size and peak learning rate.
        test: fraction of patients held out for the Dice.
        seed: seed of the split, the initialisation, the shuffling and the augmentation.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    """

    size: int = 160
    width: int = 8
    depth: int = 4
    epochs: int = 60
    minutes: float | None = None
    batch_size: int = 16
    lr: float = 3e-3
    test: float = 0.2
    seed: int = 0
    device: str = "auto"


def read_mask(root: Path, rels: list[str], shape: tuple[int, int]) -> np.ndarray:
    """The union of a row's mask files as uint8 0/1 at ``shape`` (a mask of another size is resized, nearest).

    Raises:
        ImageDecodeError: a mask file cannot be decoded.
    """
    out = np.zeros(shape, dtype=np.uint8)
    for rel in rels:
        m = decode_image(safe_path(root, rel)).pixels
        if m.shape != shape:
            m = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
        out |= (m > 127).astype(np.uint8)
    return out


def mask_rows(df: Any) -> Any:
    """The rows of a manifest that have at least one mask path."""
    has = df["mask_paths"].map(lambda v: v is not None and len(v) > 0)
    return df[has.astype(bool)]


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    """Dice coefficient of two binary masks (1.0 when both are empty)."""
    pred, target = np.asarray(pred) > 0, np.asarray(target) > 0
    denom = pred.sum() + target.sum()
    return 1.0 if denom == 0 else float(2.0 * np.logical_and(pred, target).sum() / denom)


def _load(rows: Any, root: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images and masks of ``rows`` stretched to ``size x size``: two uint8 arrays ``(N, size, size)``."""
    images, masks = [], []
    for rec in rows.itertuples():
        pixels = decode_image(safe_path(root, rec.path, rec.image_id)).pixels
        mask = read_mask(root, list(rec.mask_paths), pixels.shape)
        images.append(cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA))
        masks.append(cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST))
    return np.stack(images), np.stack(masks)


def _augment():
    """Geometric jitter applied to image and mask alike, plus brightness/contrast on the image only."""
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomAffine(degrees=10, translate=(0.06, 0.06), scale=(0.9, 1.1)),
                       v2.ColorJitter(brightness=0.3, contrast=0.3)])


def _soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(1, 2, 3))
    denom = prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    return (1.0 - (2.0 * inter + 1.0) / (denom + 1.0)).mean()


def evaluate(model: UNet, rows: Any, root: Path, size: int, device: str, threshold: float = 0.5) -> dict[str, Any]:
    """Dice of ``model`` on ``rows`` at each image's own resolution, raw (threshold) and post-processed.

    Post-processed means the two largest components (``lung_mask`` without dilation), which is what the crop uses.
    """
    model.eval()
    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(1)  # batch-1 inference: threads cost more in synchronisation than they save
    try:
        raw, post = _dices(model, rows, root, size, device, threshold)
    finally:
        torch.set_num_threads(threads)
    raw_a, post_a = np.array(raw), np.array(post)
    return {"images": len(raw), "patients": int(rows["patient_id"].nunique()),
            "dice_mean": round(float(raw_a.mean()), 4), "dice_median": round(float(np.median(raw_a)), 4),
            "dice_min": round(float(raw_a.min()), 4),
            "dice_postprocessed_mean": round(float(post_a.mean()), 4),
            "resolution": "each image's own (probabilities resized back before thresholding)"}


def _dices(model: UNet, rows: Any, root: Path, size: int, device: str,
           threshold: float) -> tuple[list[float], list[float]]:
    """Raw and post-processed Dice of every row."""
    raw, post = [], []
    with torch.inference_mode():
        for rec in rows.itertuples():
            pixels = decode_image(safe_path(root, rec.path, rec.image_id)).pixels
            target = read_mask(root, list(rec.mask_paths), pixels.shape)
            prob = torch.sigmoid(model(to_input(pixels, size).to(device)))[0, 0].float().cpu().numpy()
            prob = cv2.resize(prob, (pixels.shape[1], pixels.shape[0]), interpolation=cv2.INTER_LINEAR)
            raw.append(dice(prob > threshold, target))
            post.append(dice(lung_mask(prob, threshold, dilate=0.0), target))
    return raw, post


def _split(rows: Any, test: float, seed: int) -> tuple[Any, Any]:
    out = make_split(rows, test=test, val=0.0, seed=seed, stratify=None)
    return rows[out["split"].to_numpy() != "test"], rows[out["split"].to_numpy() == "test"]


def _train_loop(model: UNet, images: np.ndarray, masks: np.ndarray, opts: TrainOptions, device: str,
                progress: bool) -> dict[str, Any]:
    from torchvision import tv_tensors
    from tqdm.auto import tqdm

    aug = _augment()
    optim = torch.optim.Adam(model.parameters(), lr=opts.lr)
    bce = nn.BCEWithLogitsLoss()
    n = len(images)
    steps_per_epoch = max(1, math.ceil(n / opts.batch_size))
    total_steps = opts.epochs * steps_per_epoch
    budget = opts.minutes * 60.0 if opts.minutes else math.inf
    start, step, losses = time.monotonic(), 0, []
    bar = tqdm(total=opts.epochs, desc="train-lungs", unit="epoch", disable=not progress)
    imgs_t = torch.from_numpy(images).float().div_(255.0).unsqueeze(1)
    masks_t = torch.from_numpy(masks).unsqueeze(1)
    done, stopped = 0.0, False
    try:
        for epoch in range(opts.epochs):
            model.train()
            order, epoch_loss = torch.randperm(n), []
            for b in range(steps_per_epoch):
                elapsed = time.monotonic() - start
                if elapsed >= budget:
                    stopped, done = True, epoch + b / steps_per_epoch
                    break
                frac = max(step / total_steps, elapsed / budget)
                for group in optim.param_groups:
                    group["lr"] = opts.lr * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))
                idx = order[b * opts.batch_size:(b + 1) * opts.batch_size]
                pairs = [aug(tv_tensors.Image(imgs_t[i]), tv_tensors.Mask(masks_t[i])) for i in idx.tolist()]
                x = normalise(torch.stack([p[0] for p in pairs]).as_subclass(torch.Tensor)).to(device)
                y = torch.stack([p[1] for p in pairs]).as_subclass(torch.Tensor).float().to(device)
                logits = model(x)
                loss = bce(logits, y) + _soft_dice_loss(logits, y)
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                step += 1
                epoch_loss.append(loss.item())
            if stopped:
                log.info("time budget of %.1f min reached after %.2f epochs", opts.minutes, done)
                break
            done = epoch + 1.0
            losses.append(round(float(np.mean(epoch_loss)), 4))
            bar.update(1)
            bar.set_postfix(loss=losses[-1])
    finally:
        bar.close()
    return {"epochs_done": round(done, 2), "steps": step, "seconds": round(time.monotonic() - start, 1),
            "epoch_losses": losses}


def train_lungs(manifest: Any, out: str | os.PathLike, data_root: str | os.PathLike | None = None,
                options: TrainOptions | None = None, progress: bool = True, command: str | None = None) -> dict:
    """Train a U-Net on the masked rows of ``manifest``, write the weights and card to ``out``, return the card.

    Args:
        manifest: a manifest path or DataFrame; rows without ``mask_paths`` are ignored.
        out: weights file (``.safetensors`` recommended); its card is written beside it (``.json``).
        data_root: folder the manifest paths are relative to (default: the manifest file's own folder).
        options: training knobs (defaults: ``TrainOptions()``).
        progress: show a progress bar.
        command: the command line, recorded in the card.

    Raises:
        CxrcurateError: no rows with masks, too few patients to hold some out, a size that is not a multiple of
            ``2**depth``, or CUDA asked for but absent.
    """
    opts = options or TrainOptions()
    if opts.size % 2**opts.depth:
        raise CxrcurateError(f"--size {opts.size} must be a multiple of {2**opts.depth} (2**depth)")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if opts.device == "auto" else opts.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CxrcurateError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    df = load_frame(manifest)
    root = resolve_data_root(df, data_root)
    rows = mask_rows(df)
    if rows.empty:
        raise CxrcurateError("no manifest row has mask_paths; build the manifest from a source with lung masks "
                             "(cohen with lung-masks/, montgomery, shenzhen)")
    train_rows, test_rows = _split(rows.reset_index(drop=True), opts.test, opts.seed)
    log.info("lung masks: %d train rows, %d held-out rows (%d patients)", len(train_rows), len(test_rows),
             test_rows["patient_id"].nunique())
    images, masks = _load(train_rows, root, opts.size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts.seed)
        model = UNet(1, opts.width, opts.depth).to(device)
        history = _train_loop(model, images, masks, opts, device, progress)
    held_out = evaluate(model, test_rows, root, opts.size, device)
    info = getattr(df, "attrs", {}).get("cxrcurate", {})
    card = {
        "input_size": opts.size, "threshold": 0.5, "parameters": sum(p.numel() for p in model.parameters()),
        "training": {
            "manifest": str(manifest) if isinstance(manifest, str | os.PathLike) else None,
            "sources": sorted(rows["source"].unique().tolist()),
            "source_versions": {k: v.get("version") or v.get("commit") or v.get("metadata_sha256")
                                for k, v in info.get("sources", {}).items() if isinstance(v, dict)},
            "rows": len(train_rows), "patients": int(train_rows["patient_id"].nunique()),
            "split": f"splits.make_split(test={opts.test}, val=0, seed={opts.seed}, stratify=None) on masked rows",
            "options": {k: v for k, v in vars(opts).items() if k != "device"}, "device": device,
            "torch": torch.__version__, "platform": platform.platform(), **history,
            "licenses": sorted(str(v) for v in rows["license"].dropna().unique()),
            "command": command,
        },
        "held_out": held_out,
    }
    save_weights(model.cpu(), out, card)
    log.info("held-out Dice %.4f (%d images); wrote %s", held_out["dice_mean"], held_out["images"], out)
    return card
