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

from ..errors import CxrcurateError
from ..models import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, get_spec
from .data import LEAKY, TaskData, prepare
from .metrics import aggregate, score
from .train import TrainConfig

log = logging.getLogger(__name__)
QUICK = {"size": 64, "max_images": 160, "epochs": 2, "batch_size": 8, "workers": 0, "n_boot": 200}


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
    train: TrainConfig = field(default_factory=TrainConfig)

    def apply_quick(self) -> None:
        """Small images, few images, two epochs, random init (unless weights or an explicit ``init`` are given):
        minutes on a CPU."""
        self.quick = True
        self.size = self.size or QUICK["size"]
        self.max_images = self.max_images or QUICK["max_images"]
        self.n_boot = QUICK["n_boot"]
        self.train.epochs, self.train.batch_size, self.train.workers = QUICK["epochs"], QUICK["batch_size"], 0
        if not self.weights and self.init is None and get_spec(self.model).init != "random":
            self.init = "random"


def preprocess_config(spec: ModelSpec, size: int):
    """The preprocessing a rung's input needs: original/CLAHE/BEASF or the original thrice; lungs or not; histogram
    matching to the shipped reference for the multiclass rungs (the paper's step)."""
    from ..preprocess.config import CHANNELS, HISTOGRAM_REFERENCE, SHIPPED_LUNGS, PreprocessConfig

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
    from ..datasets import ManifestDataset
    from ..preprocess.augment import AugmentConfig, BatchAugment, PaperAugment
    from .feed import fill_cache, wants_batch_augment

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
    from ..models.ladder import build_model
    from .train import fit

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


def _one_run(df: pd.DataFrame, root: Path, spec: ModelSpec, opts: BenchOptions, seed: int, out: Path, device,
             progress: bool, pairs: pd.DataFrame | None = None) -> dict[str, Any]:
    from ..models.ladder import save_weights
    from .train import predict, seed_everything

    seed_everything(seed)
    out.mkdir(parents=True, exist_ok=True)
    task = prepare(df, spec.classes, opts.split_policy, opts.negatives, opts.test, opts.val, seed, opts.max_images,
                   holdout_source=opts.holdout_source, pairs=pairs)
    cfg = opts.train
    decided = None
    if spec.hierarchical:
        proba, decided, ids, history, val = _hierarchical(df, task, root, spec, opts, seed, out, device, progress)
    else:
        model, history = _train_binary(spec, task, root, opts, out, device, progress)
        _, val_ds, test_ds = datasets_for(task, root, spec, opts)
        proba, ids = predict(model, test_ds, cfg, device)
        val = (*predict(model, val_ds, cfg, device), None) if not spec.zero_shot else None
        if is_main():
            save_weights(model, out / "weights.safetensors", {"model": spec.name, "classes": json.dumps(task.classes)})
    test = task.part("test").set_index("image_id").loc[ids].reset_index()
    if not is_main():
        return score(test["target"].to_numpy(), proba, task.classes, n_boot=0, seed=seed, pred=decided)
    metrics = score(test["target"].to_numpy(), proba, task.classes, n_boot=opts.n_boot, seed=seed,
                    groups=test["unit"].to_numpy(), pred=decided)
    metrics.update(_learned(val, task, seed))
    metrics.update({"seed": seed, "split_policy": task.split_policy, "notes": task.notes,
                    "rows": task.frame["split"].value_counts().to_dict(),
                    "class_counts": {s: task.part(s)["target"].value_counts().sort_index().tolist()
                                     for s in ("train", "val", "test")}})
    pred = pd.DataFrame({"image_id": ids, "split": "test", "target": test["target"], "label": test["label"],
                         "source": test["source"], "pediatric": test["pediatric"], "seed": seed})
    for i, c in enumerate(task.classes):
        pred[f"p_{c}"] = proba[:, i]
    pred["pred"] = proba.argmax(axis=1) if decided is None else decided
    if decided is not None:  # the cascade: stage 1 decides normal, stage 2 the rest
        pred["decided_by"] = np.where(decided == task.classes.index("normal"), 1, 2)
    pred.to_parquet(out / "predictions.parquet", index=False)
    pd.DataFrame(history).to_csv(out / "history.csv", index=False)
    task.frame[["image_id", "source", "label", "target", "split", "patient_id", "dup_group", "unit"]].to_parquet(
        out / "split.parquet", index=False)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    return metrics


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


def cascade(p1: np.ndarray, p2: np.ndarray, order: tuple[int, int, int], threshold: float = 0.5
            ) -> tuple[np.ndarray, np.ndarray]:
    """The paper's hierarchical decision, as a hard cascade: stage 1 says normal (p(pneumonia) < ``threshold``)
    or pneumonia; only then stage 2 says COVID-19 (p >= ``threshold``) or other pneumonia.

    Args:
        p1, p2: ``(n, 2)`` probabilities of stage 1 (normal, pneumonia) and stage 2 (other pneumonia, COVID-19),
            stage 2 evaluated on every image.
        order: class indices of normal, pneumonia, covid19.

    Returns:
        ``(proba, pred)``: soft products ``[1-p1, p1(1-p2), p1 p2]`` (scores for ROC AUC) and the cascade's class.
    """
    normal, pneu, covid = order
    proba = np.zeros((len(p1), 3))
    proba[:, normal] = p1[:, 0]
    proba[:, pneu] = p1[:, 1] * p2[:, 0]
    proba[:, covid] = p1[:, 1] * p2[:, 1]
    pred = np.where(p1[:, 1] < threshold, normal, np.where(p2[:, 1] >= threshold, covid, pneu))
    return proba, pred


def _hierarchical(df, task, root, spec, opts, seed, out, device, progress):
    """Stage 1 normal vs pneumonia (any); stage 2 COVID-19 vs other pneumonia on pneumonia rows; a hard cascade."""
    from dataclasses import replace

    from ..models.ladder import save_weights
    from .train import predict

    normal, pneu, covid = (task.classes.index(c) for c in ("normal", "pneumonia", "covid19"))
    s1 = TaskData(task.frame.assign(target=(task.frame["target"] != normal).astype(int)),
                  ("normal", "covid19"), task.split_policy)
    rows2 = task.frame[task.frame["target"] != normal]
    s2 = TaskData(rows2.assign(target=(rows2["target"] == covid).astype(int)), ("pneumonia", "covid19"),
                  task.split_policy)
    stage_spec = replace(spec, classes=("no", "yes"), hierarchical=False)
    m1, h1 = _train_binary(stage_spec, s1, root, opts, out / "stage1", device, progress)
    m2, h2 = _train_binary(stage_spec, s2, root, opts, out / "stage2", device, progress)
    _, _, test_ds = datasets_for(task, root, spec, opts)
    p1, ids = predict(m1, test_ds, opts.train, device)
    p2, _ = predict(m2, test_ds, opts.train, device)
    proba, decided = cascade(p1, p2, (normal, pneu, covid))
    _, val_ds, _ = datasets_for(task, root, spec, opts)
    v1, val_ids = predict(m1, val_ds, opts.train, device)
    v2, _ = predict(m2, val_ds, opts.train, device)
    val_proba, val_decided = cascade(v1, v2, (normal, pneu, covid))
    if is_main():
        save_weights(m1, out / "stage1.safetensors", {"model": spec.name, "stage": "1"})
        save_weights(m2, out / "stage2.safetensors", {"model": spec.name, "stage": "2"})
    history = [{**h, "stage": 1} for h in h1] + [{**h, "stage": 2} for h in h2]
    return proba, decided, ids, history, (val_proba, val_ids, val_decided)


def run_bench(manifest: str | Path, out: str | Path, opts: BenchOptions, progress: bool = True) -> Path:
    """Run ``opts.runs`` seeds of one model on a manifest; write the run folder; return its path.

    Raises:
        CxrcurateError: unknown model, missing weights, too few images for the task, unknown split policy.
    """
    import torch

    from ..manifest import read_manifest, resolve_data_root
    from .train import device_for, distributed

    spec = get_spec(opts.model)
    if spec.hierarchical or len(spec.classes) == 3:
        opts.negatives = ("normal", "pneumonia")
    from ..dedup import read_pairs

    df = read_manifest(manifest)
    root = resolve_data_root(df, opts.data_root)
    pairs = read_pairs(manifest)
    rank, world, local = distributed()
    device = device_for(local)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results = []
    for k in range(opts.runs):
        seed = opts.seed + k
        results.append(_one_run(df, root, spec, opts, seed, out / f"run-{k}", device, progress, pairs))
    summary = {"model": spec.name, "description": spec.description, "classes": list(spec.classes),
               "split_policy": opts.split_policy, "leaky": opts.split_policy == "per-image",
               "variant": ("backbone frozen but its last block" if spec.trainable == "last_block" else
                           "full fine-tune" if spec.init != "random" and not spec.zero_shot else "")
               + ("; histograms matched to a reference" if spec.match_histogram else ""),
               "aggregate": aggregate(results), "runs": results, "paper": spec.paper,
               "seconds": round(time.time() - started, 1)}
    if rank == 0:
        config = {"options": asdict(opts), "spec": asdict(spec), "manifest": str(Path(manifest).resolve()),
                  "data_root": str(root), "environment": {
                      "torch": torch.__version__, "python": platform.python_version(), "world_size": world,
                      "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
                      or "cpu"}}
        (out / "config.json").write_text(json.dumps(config, indent=2, default=str))
        (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=str))
        (out / "summary.md").write_text(summary_markdown([out]))
    return out


def _at_chance(run: dict[str, Any]) -> bool:
    """The run's test AUC CI includes 0.5, or training flagged that validation never left chance."""
    ci = run.get("ci95", {}).get("roc_auc")
    by_ci = bool(ci) and all(np.isfinite(ci)) and ci[0] <= 0.5 <= ci[1]
    return by_ci or bool(run.get("never_left_chance"))


def _fmt(value: float, ci: list[float] | None = None) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    text = f"{value:.3f}"
    if ci and all(np.isfinite(ci)):
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def compare_table(runs: list[Path]) -> pd.DataFrame:
    """One row per run folder (mean over its seeds, CI of its first seed) plus the paper's Table 6 figures."""
    rows = []
    for run in runs:
        path = Path(run) / "metrics.json"
        if not path.exists():
            raise CxrcurateError(f"{run}: no metrics.json; is this a `cxrcurate bench` output folder?")
        m = json.loads(path.read_text())
        cfg_path = Path(run) / "config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        options = cfg.get("options", {})
        init = options.get("init") or cfg.get("spec", {}).get("init", "?")
        init += " (quick)" if options.get("quick") else ""
        agg, first = m["aggregate"], m["runs"][0]
        n_runs = agg["accuracy"]["runs"]

        def cell(key: str, agg=agg, first=first, n_runs=n_runs) -> str:
            a = agg.get(key, {})
            text = _fmt(a.get("mean"), first.get("ci95", {}).get(key) if n_runs == 1 else None)
            return text + (f" ±{a['std']:.3f}" if n_runs > 1 and np.isfinite(a.get("std", np.nan)) else "")

        chance = [r for r in m["runs"] if _at_chance(r)]
        rows.append({
            "run": Path(run).name, "model": m["model"],
            "init": init + (f" ({m['variant']})" if m.get("variant") else ""),
            "split": m["split_policy"] + (" (LEAKY)" if m.get("leaky") else ""),
            "test n": first["n"], "units": first.get("n_units", "-"), "seeds": n_runs,
            "ROC AUC": cell("roc_auc"), "balanced acc": cell("balanced_accuracy"), "accuracy": cell("accuracy"),
            "majority baseline": _fmt(first.get("majority_baseline", {}).get("accuracy")),
            "COVID F1": cell("covid_f1"),
            "at chance": f"{len(chance)}/{n_runs}" if chance else "no",
            "paper accuracy": _fmt(m["paper"].get("accuracy")), "paper COVID F1": _fmt(m["paper"].get("covid_f1")),
        })
    return pd.DataFrame(rows)


def compare_records(runs: list[Path]) -> list[dict[str, Any]]:
    """The comparison for scripts (``bench --compare --format json``): per run the table's row (formatted cells)
    plus the numbers behind it: ``aggregate`` (mean/std/range over seeds) and ``ci95`` per seed, from metrics.json."""
    records = compare_table(runs).to_dict("records")
    for record, run in zip(records, runs, strict=True):
        m = json.loads((Path(run) / "metrics.json").read_text())
        record.update(path=str(run), aggregate=m["aggregate"],
                      ci95=[{"seed": r.get("seed"), **r.get("ci95", {})} for r in m["runs"]],
                      at_chance_seeds=[r.get("seed") for r in m["runs"] if _at_chance(r)])
    return records


def summary_markdown(runs: list[Path]) -> str:
    """The comparison as a Markdown table with the caveats that belong to it."""
    table = compare_table(runs)
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    notes = ["", "Brackets: bootstrap 95% CI resampling the test set's units (patients / linked pictures; one seed); "
             "± is the sample std (ddof=1) over seeds. Read ROC AUC and balanced accuracy: accuracy is only "
             "meaningful against the majority baseline (predicting the largest class for every image).",
             "Paper figures: Haghanifar et al. 2020, Table 6, on their data and a per-image split; not comparable "
             "with a patient- and duplicate-aware split of other data."]
    if any("LEAKY" in s for s in table["split"]):
        notes.append(f"LEAKY rows: {LEAKY}.")
    if any(v != "no" for v in table["at chance"]):
        notes.append("WARNING 'at chance': in those seeds the test ROC AUC's 95% CI includes 0.5, or validation never "
                     "left chance during training: the model did not learn the task; its figures say nothing about "
                     "the data.")
    return "\n".join(lines + notes) + "\n"
