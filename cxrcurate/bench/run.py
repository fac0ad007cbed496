"""``cxrcurate bench``: train and score one ladder model on a manifest, write a self-explaining run folder, and
compare runs with the paper's figures."""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..datasets import ManifestDataset
from ..dedup import read_pairs
from ..errors import UsageError
from ..manifest import read_manifest, resolve_data_root
from ..models import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, get_spec
from ..models.ladder import build_model, save_weights
from ..preprocess.augment import AugmentConfig, BatchAugment, PaperAugment
from ..preprocess.config import CHANNELS, HISTOGRAM_REFERENCE, SHIPPED_LUNGS, PreprocessConfig
from .compare import summary_markdown
from .data import TaskData, prepare
from .feed import fill_cache, wants_batch_augment
from .metrics import aggregate, evidence, score
from .record import RunRecord, default_out, identity, settle
from .train import TrainConfig, device_for, distributed, fit, predict, seed_everything

log = logging.getLogger(__name__)
# what --quick fills in, for each option the user did not set
QUICK = {"size": 64, "max_images": 160, "epochs": 2, "batch_size": 8, "workers": 0, "n_boot": 200}
SIZE_RANGE = (32, 1024)  # input side in pixels the ladder's networks accept (the base CNN needs >= 32)


@dataclass
class BenchOptions:
    """Everything a run depends on; written to ``config.json``."""

    model: str
    init: str | None = None
    weights: str | None = None
    trust_checkpoint: bool = False
    split_policy: str = "group"
    negatives: tuple[str, ...] = ("normal",)
    test: float = 0.2
    val: float = 0.1
    seed: int = 0
    runs: int = 1
    size: int | None = None
    max_images: int | None = None
    augment: bool = True
    augment_strength: float = 0.5  # half the paper's ranges: at 1 a corner marker is cropped away (docs/bench.md)
    n_boot: int = 1000
    quick: bool = False
    resume: bool = False
    cache: str | None = None
    data_root: str | None = None
    holdout_source: str | None = None
    overwrite: bool = False
    train: TrainConfig = field(default_factory=TrainConfig)

    def apply_quick(self, given: set[str] | frozenset[str] = frozenset()) -> None:
        """Small images, few images, two epochs, random init (unless weights or an explicit ``init`` are given):
        minutes on a CPU. Only options not in ``given`` (those the user set) are filled."""
        self.quick = True
        for key in ("size", "max_images", "n_boot"):
            if key not in given:
                setattr(self, key, QUICK[key])
        for key in ("epochs", "batch_size", "workers"):
            if key not in given:
                setattr(self.train, key, QUICK[key])
        if not self.weights and self.init is None and get_spec(self.model).init != "random":
            self.init = "random"

    def validate(self) -> None:
        """Refuse options that would train nothing or crash later, naming the option and its range.

        Raises:
            UsageError: epochs, runs or batch size below 1; size outside ``SIZE_RANGE``; lr not > 0 nor ``auto``;
                test/val fractions that leave no training rows; a negative bootstrap count or max images.
        """
        t = self.train
        for name, value in (("--epochs", t.epochs), ("--runs", self.runs), ("--batch-size", t.batch_size)):
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} {value}: must be a whole number >= 1")
        if self.size is not None and not SIZE_RANGE[0] <= self.size <= SIZE_RANGE[1]:
            raise UsageError(f"--size {self.size}: must be between {SIZE_RANGE[0]} and {SIZE_RANGE[1]} pixels")
        if t.lr != "auto" and not (isinstance(t.lr, int | float) and t.lr > 0):
            raise UsageError(f"--lr {t.lr}: must be a number > 0, or auto (LR range test)")
        if not (0 < self.test < 1 and 0 < self.val < 1 and self.test + self.val < 1):
            raise UsageError(f"--test {self.test} / --val {self.val}: each must be in (0, 1) and together below 1")
        if self.max_images is not None and self.max_images < 1:
            raise UsageError(f"--max-images {self.max_images}: must be >= 1 (or left out: every image)")
        if self.n_boot < 0:
            raise UsageError(f"bootstrap resamples {self.n_boot}: must be >= 0")
        if t.workers is not None and t.workers < 0:  # None: one per core but one (feed.auto_workers)
            raise UsageError(f"--workers {t.workers}: must be >= 0")


def preprocess_config(spec: ModelSpec, size: int):
    """The preprocessing a rung's input needs: original/CLAHE/BEASF or the original thrice; lungs or not; histogram
    matching to the shipped reference for the multiclass rungs (the paper's step)."""
    channels = CHANNELS if spec.channels == "enhanced" else ("original",) * 3
    return PreprocessConfig(size=size, channels=channels, lungs=SHIPPED_LUNGS if spec.lungs else None,
                            histogram_reference=HISTOGRAM_REFERENCE if spec.match_histogram else None)


def is_main() -> bool:
    """True on rank 0 of a ``torchrun`` job, or without DDP: the process that writes files."""
    import torch

    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
        torch.distributed.get_rank() == 0


def datasets_for(task: TaskData, root: Path, spec: ModelSpec, opts: BenchOptions, device: Any = None):
    """The train/val/test ``ManifestDataset`` of a run: rendered as the rung needs, read from the tensor cache
    (``opts.cache``, filled first), train augmented (unless ``--no-augment``), ImageNet-normalised. On a GPU
    ``device`` the train set is neither augmented nor normalised per sample: its ``batch_augment`` does both on the
    device (``fit`` applies it)."""
    config = preprocess_config(spec, opts.size or spec.input_size)
    if opts.cache:
        fill_cache(task.frame, root, config, opts.cache, device or "cpu")
    ranges = AugmentConfig.scaled(opts.augment_strength)
    on_device = opts.augment and wants_batch_augment(device)
    aug = PaperAugment(ranges, seed=opts.seed) if opts.augment and not on_device else None

    def make(part: str, augment, normalize=(IMAGENET_MEAN, IMAGENET_STD)):
        return ManifestDataset.from_rows(task.part(part), root, task.classes, preprocess=config, cache=opts.cache,
                                         augment=augment, normalize=normalize)

    train = make("train", aug, None if on_device else (IMAGENET_MEAN, IMAGENET_STD))
    if on_device:
        train.batch_augment = BatchAugment(ranges, seed=opts.seed, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return train, make("val", None), make("test", None)


def _train_binary(spec: ModelSpec, task: TaskData, root: Path, opts: BenchOptions, out: Path, device, progress: bool):
    """Train (or, for the zero-shot probe, only load) one network and return it with its history."""
    size = opts.size or spec.input_size
    outputs = 1 if len(task.classes) == 2 else len(task.classes)
    model = build_model(spec, opts.init, opts.weights, outputs, opts.trust_checkpoint, input_size=size)
    if spec.zero_shot:
        return model.to(device), []
    train_ds, val_ds, _ = datasets_for(task, root, spec, opts, device)
    cfg = TrainConfig(**{**asdict(opts.train), "label_smoothing": spec.label_smoothing})
    history = fit(model, train_ds, val_ds, train_ds.targets, len(task.classes), cfg, out, device,
                  resume=opts.resume, progress=progress)
    return model, history


def _one_run(df: pd.DataFrame, root: Path, spec: ModelSpec, opts: BenchOptions, seed: int, rec: RunRecord, k: int,
             device, progress: bool, pairs: pd.DataFrame | None = None) -> dict[str, Any]:
    seed_everything(seed)
    task = prepare(df, spec.classes, opts.split_policy, opts.negatives, opts.test, opts.val, seed, opts.max_images,
                   holdout_source=opts.holdout_source, pairs=pairs)
    cfg = opts.train
    decided = None
    if spec.hierarchical:
        proba, decided, ids, history, val = _hierarchical(df, task, root, spec, opts, seed, rec, k, device, progress)
    else:
        model, history = _train_binary(spec, task, root, opts, rec.train_dir(k), device, progress)
        _, val_ds, test_ds = datasets_for(task, root, spec, opts)
        proba, ids = predict(model, test_ds, cfg, device)
        val = (*predict(model, val_ds, cfg, device), None) if not spec.zero_shot else None
        if is_main():
            settle(save_weights(model, rec.weights_path(k), {"model": spec.name,
                                                             "classes": json.dumps(task.classes)}))
    test = task.part("test").set_index("image_id").loc[ids].reset_index()
    if not is_main():
        return score(test["target"].to_numpy(), proba, task.classes, n_boot=0, seed=seed, pred=decided)
    metrics = score(test["target"].to_numpy(), proba, task.classes, n_boot=opts.n_boot, seed=seed,
                    groups=test["unit"].to_numpy(), pred=decided)
    predicted = proba.argmax(axis=1) if decided is None else decided
    metrics["evidence"] = evidence(metrics, predicted, test["target"].to_numpy(), test["unit"].to_numpy(),
                                   task.classes)
    if metrics["evidence"]["kind"] != "ok":
        log.warning("seed %d: no evidence: %s", seed, "; ".join(metrics["evidence"]["reasons"]))
    metrics.update(_learned(val, task, seed))
    metrics.update({"seed": seed, "split_policy": task.split_policy, "notes": task.notes,
                    "rows": task.frame["split"].value_counts().to_dict(), "data": task_counts(task)})
    pred = pd.DataFrame({"image_id": ids, "split": "test", "target": test["target"], "label": test["label"],
                         "source": test["source"], "pediatric": test["pediatric"], "seed": seed})
    for i, c in enumerate(task.classes):
        pred[f"p_{c}"] = proba[:, i]
    pred["pred"] = predicted
    if decided is not None:  # the cascade: stage 1 decides normal, stage 2 the rest
        pred["decided_by"] = np.where(decided == task.classes.index("normal"), 1, 2)
    rec.write_seed(k, task.frame, pred, history, metrics)
    return metrics


def task_counts(task: TaskData) -> dict[str, dict[str, dict[str, int]]]:
    """Images and units per class on each side: ``{side: {class: {"images": n, "units": m}}}``."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for side in ("train", "val", "test"):
        part = task.part(side)
        out[side] = {c: {"images": int((part["target"] == i).sum()),
                         "units": int(part.loc[part["target"] == i, "unit"].nunique())}
                     for i, c in enumerate(task.classes)}
    return out


def _learned(val: tuple | None, task: TaskData, seed: int) -> dict[str, Any]:
    """Validation ROC AUC of the trained model with its unit-bootstrap CI; ``never_left_chance`` when the CI
    includes 0.5 (the model did not learn the task, whatever the test figures say)."""
    if val is None:
        return {}
    proba, ids, decided = val
    rows = task.part("val").set_index("image_id").loc[ids]
    res = score(rows["target"].to_numpy(), proba, task.classes, n_boot=200, seed=seed, groups=rows["unit"].to_numpy(),
                pred=decided)
    ci = res["ci95"]["roc_auc"]
    chance = bool(np.isfinite(ci).all() and ci[0] <= 0.5) or not np.isfinite(res["roc_auc"])
    if chance:
        log.warning("seed %d: validation ROC AUC %.3f, 95%% CI %s includes chance: the model did not learn the task",
                    seed, res["roc_auc"], [round(c, 3) for c in ci])
    return {"val_roc_auc": res["roc_auc"], "val_ci95_roc_auc": ci, "never_left_chance": chance}


def cascade_parts(p1: Any, p2: Any) -> tuple[Any, Any, Any]:
    """The cascade's soft products (normal, pneumonia, COVID-19) from stage 1's p(pneumonia) and stage 2's
    p(COVID-19): ``1-p1, p1(1-p2), p1 p2``. Plain arithmetic, so numpy arrays and torch tensors alike (the audit's
    ``HierarchicalScores`` computes its differentiable scores with this same function)."""
    return 1 - p1, p1 * (1 - p2), p1 * p2


def cascade_decision(p1: np.ndarray, p2: np.ndarray, order: tuple[int, int, int], threshold: float = 0.5
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The paper's hard cascade: stage 1 says normal (p(pneumonia) < ``threshold``) or pneumonia; only then stage 2
    says COVID-19 (p >= ``threshold``) or other pneumonia. Returns ``(class index, deciding stage 1|2)``."""
    normal, pneu, covid = order
    p1, p2 = np.asarray(p1), np.asarray(p2)
    pred = np.where(p1 < threshold, normal, np.where(p2 >= threshold, covid, pneu))
    return pred, np.where(p1 < threshold, 1, 2)


def cascade(p1: np.ndarray, p2: np.ndarray, order: tuple[int, int, int], threshold: float = 0.5
            ) -> tuple[np.ndarray, np.ndarray]:
    """The hierarchical decision (``cascade_parts`` and ``cascade_decision``) for ``(n, 2)`` stage probabilities
    (stage 1: normal, pneumonia; stage 2: other pneumonia, COVID-19; stage 2 evaluated on every image).

    Returns:
        ``(proba, pred)``: the soft products as ``(n, 3)`` class scores (for ROC AUC) and the cascade's class.
    """
    parts = dict(zip(order, cascade_parts(p1[:, 1], p2[:, 1]), strict=True))
    proba = np.stack([parts[i] for i in range(3)], axis=1)
    return proba, cascade_decision(p1[:, 1], p2[:, 1], order, threshold)[0]


def _hierarchical(df, task, root, spec, opts, seed, rec, k, device, progress):
    """Stage 1 normal vs pneumonia (any); stage 2 COVID-19 vs other pneumonia on pneumonia rows; a hard cascade."""
    from dataclasses import replace

    normal, pneu, covid = (task.classes.index(c) for c in ("normal", "pneumonia", "covid19"))
    s1 = TaskData(task.frame.assign(target=(task.frame["target"] != normal).astype(int)),
                  ("normal", "covid19"), task.split_policy)
    rows2 = task.frame[task.frame["target"] != normal]
    s2 = TaskData(rows2.assign(target=(rows2["target"] == covid).astype(int)), ("pneumonia", "covid19"),
                  task.split_policy)
    stage_spec = replace(spec, classes=("no", "yes"), hierarchical=False)
    m1, h1 = _train_binary(stage_spec, s1, root, opts, rec.train_dir(k, 1), device, progress)
    m2, h2 = _train_binary(stage_spec, s2, root, opts, rec.train_dir(k, 2), device, progress)
    _, _, test_ds = datasets_for(task, root, spec, opts)
    p1, ids = predict(m1, test_ds, opts.train, device)
    p2, _ = predict(m2, test_ds, opts.train, device)
    proba, decided = cascade(p1, p2, (normal, pneu, covid))
    _, val_ds, _ = datasets_for(task, root, spec, opts)
    v1, val_ids = predict(m1, val_ds, opts.train, device)
    v2, _ = predict(m2, val_ds, opts.train, device)
    val_proba, val_decided = cascade(v1, v2, (normal, pneu, covid))
    if is_main():
        settle(save_weights(m1, rec.weights_path(k, 1), {"model": spec.name, "stage": "1"}))
        settle(save_weights(m2, rec.weights_path(k, 2), {"model": spec.name, "stage": "2"}))
    history = [{**h, "stage": 1} for h in h1] + [{**h, "stage": 2} for h in h2]
    return proba, decided, ids, history, (val_proba, val_ids, val_decided)


def run_bench(manifest: str | Path, out: str | Path | None, opts: BenchOptions, progress: bool = True) -> Path:
    """Run ``opts.runs`` seeds of one model on a manifest into a new run folder; return its path.

    ``out`` None: a new folder ``runs/<model>-<digest>``. A folder holding another run is refused unless
    ``opts.overwrite`` (cleared first) or ``opts.resume`` with the same inputs.

    Raises:
        UsageError: bad options.
        RunFolderError: ``out`` holds another run.
        CxrcurateError: unknown model, missing weights, too few units for the task, unknown split policy.
    """
    import torch

    opts.validate()
    spec = get_spec(opts.model)
    if spec.hierarchical or len(spec.classes) == 3:
        opts.negatives = ("normal", "pneumonia")
    df = read_manifest(manifest)
    root = resolve_data_root(df, opts.data_root)
    pairs = read_pairs(manifest)
    rank, world, local = distributed()
    if world > 1 and out is None:
        raise UsageError("under torchrun give --out: every process must write to the same run folder")
    device = device_for(local)
    for k in range(opts.runs):  # every seed's task must be trainable before a run folder is claimed
        prepare(df, spec.classes, opts.split_policy, opts.negatives, opts.test, opts.val, opts.seed + k,
                opts.max_images, holdout_source=opts.holdout_source, pairs=pairs)
    ident = identity(manifest, asdict(opts))
    out = Path(out) if out is not None else default_out(spec.name, ident["digest"], resume=opts.resume)
    if rank == 0:
        rec = RunRecord.create(out, ident, overwrite=opts.overwrite, resume=opts.resume)
        log.info("run %s in %s", rec.run_id, out)
    else:  # other DDP ranks train and gather but write nothing
        rec = RunRecord(out, {"run_id": None, "inputs": ident["inputs"], "digest": ident["digest"]})
    started = time.time()
    results = []
    for k in range(opts.runs):
        results.append(_one_run(df, root, spec, opts, opts.seed + k, rec, k, device, progress, pairs))
    summary = {"model": spec.name, "description": spec.description, "classes": list(spec.classes),
               "split_policy": opts.split_policy, "leaky": opts.split_policy == "per-image",
               "variant": ("backbone frozen but its last block" if spec.trainable == "last_block" else
                           "full fine-tune" if spec.init != "random" and not spec.zero_shot else "")
               + ("; histograms matched to a reference" if spec.match_histogram else ""),
               "aggregate": aggregate(results), "runs": results, "paper": spec.paper,
               "seconds": round(time.time() - started, 1)}
    if rank == 0:
        size = opts.size or spec.input_size
        config = {"options": asdict(opts), "spec": asdict(spec), "manifest": str(Path(manifest).resolve()),
                  "data_root": str(root), "preprocess": asdict(preprocess_config(spec, size)),
                  "input": {"size": size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                            "outputs": 1 if len(spec.classes) == 2 else len(spec.classes),
                            "black": "the normalised value of a black pixel: -mean/std per channel"},
                  "environment": {
                      "torch": torch.__version__, "python": platform.python_version(), "world_size": world,
                      "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
                      or "cpu"}}
        rec.write_config(config)
        rec.write_metrics(summary)
        rec.write_summary(summary_markdown([out]))
        rec.finish(time.time() - started)
    return out


