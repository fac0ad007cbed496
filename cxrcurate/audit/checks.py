"""The audit's data-side tests: source probe, leave-one-source-out, demographics, leakage.

- ``source_probe``: within each label, can the collection an image came from be told from the model's pooled
  features? Logistic regression (standardised features), cross-validated with folds grouped by unit, scored
  by AUROC (one-vs-rest, macro, for more than two sources). Untrained features already tell collections apart
  (their look differs), so the same probe runs on the initial network (``baseline``) and the check reads the lift:
  how much more the trained features carry the source, with a unit-bootstrap CI. A clear lift means training made
  the source more visible, and the source is a candidate confounder of the label.
- ``leave_one_source_out``: retrain the run's model (same options) without one source and score it on that
  source; the gap to its in-distribution test score says how much the model's figures rest on having seen the
  collection. It trains one model per source, so ``--no-loso`` skips it, and a one-source run says ``not run``.
- ``demographics``: pediatric share and age per class and split; flags a class whose negatives are mostly
  children (a classifier of "child or adult" would then score well).
- ``leakage``: ``cxrcurate.splits.leakage_report`` on the run's split joined onto the full manifest.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..bench.metrics import score
from ..bench.record import RunRecord
from ..bench.run import BenchOptions, run_bench
from ..bench.runio import batches
from ..bench.train import TrainConfig
from ..errors import CxrcurateError
from ..splits import leakage_report
from .base import Check, unit_bootstrap, worst

log = logging.getLogger(__name__)
PROBE_LIFT_WARN, PROBE_LIFT_FAIL = 0.05, 0.15
GAP_WARN, GAP_FAIL = 0.10, 0.20
PEDIATRIC_MOSTLY, PEDIATRIC_GAP, UNKNOWN_MOST = 0.5, 0.2, 0.5
MIN_PER_SOURCE = 5
THRESHOLDS = {
    "source_probe": f"per label with >= 2 sources of >= {MIN_PER_SOURCE} images: cross-validated AUROC of the "
                    "source from pooled features (folds grouped by unit), trained network minus the initial one "
                    "(same architecture and starting weights): lift with a bootstrap 95% CI by unit; fail when the "
                    f"lift >= {PROBE_LIFT_FAIL} and the CI lies above 0, warn when the lift >= {PROBE_LIFT_WARN} and "
                    "the CI lies above 0, pass otherwise (worst label counts); inconclusive without an initial "
                    "network",
    "leave_one_source_out": f"gap = in-distribution test AUC - AUC on the held-out source, one metric for every "
                            "source (accuracy for all of them when any held-out source has one class, so its AUC "
                            f"is undefined); pass <= {GAP_WARN}, warn <= {GAP_FAIL}, fail above (worst source "
                            "counts)",
    "demographics": f"per class, pediatric share (of rows whose status is known) of its positives vs its "
                    f"negatives: fail when one side is > {PEDIATRIC_MOSTLY:.0%} children and the other is not; warn "
                    f"when the shares differ by > {PEDIATRIC_GAP:.0%} points or > {UNKNOWN_MOST:.0%} of a "
                    "class's rows have unknown status",
    "leakage": "fail when any patient, duplicate group, identical or near-identical picture or linked unit sits on "
               "two sides (cxrcurate.splits.leakage_report over the full manifest: rows the run did not use carry "
               "no side but still link units), or the split is the LEAKY per-image one; pass otherwise",
}


def _features(run: Any, model: Any, rows: pd.DataFrame, batch_size: int, workers: int, device: Any) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for x, _, _ in batches(run.dataset(rows), batch_size, workers):
            out.append(model.features(x.to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def _probe_proba(x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """Out-of-fold probabilities of the source from features (folds grouped by unit, stratified by source)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = int(min(5, np.bincount(y).min(), len(np.unique(groups))))
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return cross_val_predict(clf, x, y, groups=groups, cv=cv, method="predict_proba")


def _auroc(y: np.ndarray, proba: np.ndarray, n_sources: int) -> float:
    """Source AUROC (one-vs-rest macro for more than two sources); NaN when a source is missing."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y)) < n_sources:
        return float("nan")
    if n_sources == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=list(range(n_sources))))


def probe_status(lift: float, ci: list[float]) -> str:
    """Status of one label's probe lift over the initial network (see ``THRESHOLDS``)."""
    if not np.isfinite(lift):
        return "inconclusive"
    above = bool(np.isfinite(ci[0]) and ci[0] > 0)
    return "fail" if above and lift >= PROBE_LIFT_FAIL else "warn" if above and lift >= PROBE_LIFT_WARN else "pass"


def _probe_label(run: Any, nets: dict[str, Any], g: pd.DataFrame, options: Any, device: Any) -> dict[str, Any]:
    """One label's probe: AUROC from each network's features and the lift of the trained over the initial one."""
    codes, y = np.unique(g["source"].to_numpy(), return_inverse=True)
    units = g["unit"].astype(str).to_numpy()  # the bench's units
    proba = {k: _probe_proba(_features(run, m, g, options.batch_size, options.workers, device), y, units,
                             options.seed) for k, m in nets.items()}
    out: dict[str, Any] = {"auroc": _auroc(y, proba["trained"], len(codes)), "units": int(len(set(units)))}
    if "initial" not in proba:
        return out

    def lift(idx: np.ndarray) -> float:
        return _auroc(y[idx], proba["trained"][idx], len(codes)) - _auroc(y[idx], proba["initial"][idx], len(codes))

    ci, undefined = unit_bootstrap(lift, units, options.n_boot, options.seed)
    out.update({"auroc_initial": _auroc(y, proba["initial"], len(codes)), "lift_ci95": ci,
                "undefined_resamples": undefined})
    out["lift"] = out["auroc"] - out["auroc_initial"]
    out["status"] = probe_status(out["lift"], ci)
    return out


def source_probe(run: Any, model: Any, frame: pd.DataFrame, options: Any, device: Any, initial: Any = None,
                 baseline: str = "") -> Check:
    """The ``source_probe`` check on every split's rows (at most ``options.probe_images``), trained vs ``initial``
    network (None: no baseline, ``baseline`` says why; the check is then inconclusive)."""
    rows = frame
    if options.probe_images and len(rows) > options.probe_images:  # the same share of every label x source
        rows = rows.groupby(["label", "source"]).sample(frac=options.probe_images / len(frame),
                                                        random_state=options.seed)
    nets = {"trained": model, **({"initial": initial} if initial is not None else {})}
    per_label: dict[str, Any] = {}
    for label, g in rows.groupby("label"):
        counts = g["source"].value_counts()
        usable = counts[counts >= MIN_PER_SOURCE]
        per_label[str(label)] = {"sources": counts.to_dict(), "auroc": None}
        g = g[g["source"].isin(usable.index)].reset_index(drop=True)
        if len(usable) < 2 or g["unit"].nunique() < 2:
            continue
        per_label[str(label)].update(_probe_label(run, nets, g, options, device))
    scored = {k: v for k, v in per_label.items() if v["auroc"] is not None}
    numbers = {"labels": per_label, "images": int(len(rows)), "initial_network": baseline,
               "bootstrap": "by unit (patient, dup group, identical image)"}
    if not scored:
        return Check("source_probe", "not run", f"no label has two sources with >= {MIN_PER_SOURCE} images "
                     "(a one-source run cannot confound label and source)", numbers, THRESHOLDS["source_probe"])
    if initial is None:
        text = ", ".join(f"{k} {v['auroc']:.2f}" for k, v in scored.items())
        return Check("source_probe", "inconclusive", f"source AUROC from features within label: {text}; no baseline "
                     f"to compare with: {baseline}", numbers, THRESHOLDS["source_probe"])
    text = ", ".join(f"{k} {v['auroc']:.2f} vs {v['auroc_initial']:.2f} untrained, lift {v['lift']:+.2f} "
                     f"[{v['lift_ci95'][0]:+.2f}, {v['lift_ci95'][1]:+.2f}]" for k, v in scored.items())
    return Check("source_probe", worst([v["status"] for v in scored.values()]),
                 f"source predictable from features within label (AUROC): {text}", numbers,
                 THRESHOLDS["source_probe"])


def _heldout_score(run: Any, loso_dir: Path, source: str) -> dict[str, Any]:
    """AUC and accuracy of the LOSO model (``loso_dir``, trained with ``holdout_source``) on the held-out source's
    test rows, beside the audited run's own in-distribution figures."""
    pred = RunRecord.open(loso_dir).predictions(0)
    held = pred[pred["source"] == source]
    if held.empty:
        raise CxrcurateError(f"the retrain without {source} has no {source} row in its test side")
    y = held["target"].to_numpy(int)
    res = score(y, held[[f"p_{c}" for c in run.classes]].to_numpy(), run.classes, n_boot=0,
                pred=held["pred"].to_numpy(int))
    inside = run.metrics["runs"][0]
    return {"n": int(len(held)), "pulled_into_test": int(len(pred) - len(held)),
            "classes_present": sorted(set(map(int, y))), "auc": res["roc_auc"], "accuracy": res["accuracy"],
            "in_distribution_auc": inside["roc_auc"], "in_distribution_accuracy": inside["accuracy"]}


def leave_one_source_out(run: Any, frame: pd.DataFrame, options: Any, progress: bool = False) -> Check:
    """The ``leave_one_source_out`` check: one retrained model per held-out source (``RunRecord.loso_dir``).

    Each retrain runs the bench's own path on the FULL manifest with ``holdout_source``: every unit (patient,
    duplicate group, linked picture) holding a row of the source is test, so no copy or patient of the held-out
    collection is trained on, even when it reaches the task only through a row the task leaves out. Every source
    is compared on ONE metric: AUC when it is defined for all of them, else accuracy for all.
    """
    from tqdm.auto import tqdm

    sources = sorted(frame["source"].unique())
    name, limits = "leave_one_source_out", THRESHOLDS["leave_one_source_out"]
    if not options.loso:
        return Check(name, "not run", "skipped (--no-loso); it retrains one model per source", {}, limits)
    if len(sources) < 2:
        return Check(name, "not run", f"the run has a single source ({sources[0]}): nothing to leave out", {}, limits)
    if run.spec.zero_shot:
        return Check(name, "not run", "zero-shot model: nothing is trained", {}, limits)
    raw = dict(run.config["options"])
    opts = {**raw, "train": TrainConfig(**raw["train"]), "negatives": tuple(raw["negatives"]), "runs": 1,
            "resume": False, "n_boot": 0, "data_root": str(run.root), "split_policy": "group", "overwrite": True}
    results: dict[str, Any] = {}
    held = list(options.loso_sources or sources)
    for i, src in enumerate(tqdm(held, desc="leave-one-source-out retrains", disable=not progress, leave=False)):
        log.info("leave-one-source-out %d/%d: retraining without %s", i + 1, len(held), src)
        out = run.loso_dir(str(src))
        try:
            run_bench(run.manifest_path, out, BenchOptions(**{**opts, "holdout_source": str(src)}), progress=False)
            results[str(src)] = _heldout_score(run, out, str(src))
        except Exception as exc:  # a retrain that fails (too few rows, a training error) must not end the audit
            results[str(src)] = {"error": f"{type(exc).__name__}: {exc}"}
            log.warning("leave-one-source-out without %s not run: %s", src, exc,
                        exc_info=not isinstance(exc, CxrcurateError))
    scored = {s: r for s, r in results.items() if "error" not in r}
    if not scored:
        why = "; ".join(f"{s}: {r['error'][:160]}" for s, r in results.items())
        return Check(name, "not run", f"no source could be left out ({why})", {"sources": results}, limits)
    by_auc = all(np.isfinite(r["auc"]) and np.isfinite(r["in_distribution_auc"]) for r in scored.values())
    metric = "auc" if by_auc else "accuracy"
    statuses = []
    for r in scored.values():
        r["gap_metric"] = metric
        r["gap"] = r[f"in_distribution_{metric}"] - r[metric]
        statuses.append("pass" if r["gap"] <= GAP_WARN else "warn" if r["gap"] <= GAP_FAIL else "fail")
    text = ", ".join(f"{s} {r['gap']:+.3f}" for s, r in scored.items())
    why = "" if by_auc else " (AUC is undefined for a held-out source with one class)"
    failed = [s for s, r in results.items() if "error" in r]
    text += f"; not run without {', '.join(failed)} (see numbers)" if failed else ""
    return Check(name, worst(statuses), f"{metric} gap when the source is unseen{why}: {text}",
                 {"sources": results, "metric": metric}, limits)


def _pediatric_share(rows: pd.DataFrame) -> tuple[float, int, int]:
    known = rows["pediatric"].dropna().astype(bool)
    return (float(known.mean()) if len(known) else float("nan")), int(known.sum()), int(len(rows) - len(known))


def demographics(frame: pd.DataFrame, classes: tuple[str, ...]) -> Check:
    """The ``demographics`` check: tables per label x split and the per-class pediatric comparison."""
    table = []
    for (label, split), g in frame.groupby(["label", "split"]):
        share, n_ped, unknown = _pediatric_share(g)
        age = g["age_years"].dropna()
        table.append({"label": label, "split": split, "n": int(len(g)), "pediatric": n_ped,
                      "pediatric_unknown": unknown, "pediatric_share": share,
                      "age_known": int(len(age)), "age_median": float(age.median()) if len(age) else None,
                      "age_q1": float(age.quantile(0.25)) if len(age) else None,
                      "age_q3": float(age.quantile(0.75)) if len(age) else None})
    per_class, statuses, flags = {}, [], []
    for t, cls in enumerate(classes):
        pos, neg = frame[frame["target"] == t], frame[frame["target"] != t]
        (sp, _, up), (sn, _, _) = _pediatric_share(pos), _pediatric_share(neg)
        status = "pass"
        if np.isfinite(sp) and np.isfinite(sn) and ((sn > PEDIATRIC_MOSTLY) != (sp > PEDIATRIC_MOSTLY)):
            status = "fail"
            flags.append(f"{cls}: {'negatives' if sn > sp else 'positives'} mostly children ({sp:.0%} vs {sn:.0%})")
        elif (np.isfinite(sp) and np.isfinite(sn) and abs(sp - sn) > PEDIATRIC_GAP) or up > UNKNOWN_MOST * len(pos):
            status = "warn"
            flags.append(f"{cls}: pediatric share {sp:.0%} vs {sn:.0%} in the rest ({up} of {len(pos)} unknown)")
        per_class[cls] = {"positives_pediatric_share": sp, "negatives_pediatric_share": sn,
                          "positives_unknown": up, "positives": int(len(pos)), "status": status}
        statuses.append(status)
    summary = "; ".join(flags) or "pediatric shares alike across classes: " + ", ".join(
        f"{c} {v['positives_pediatric_share']:.0%}" for c, v in per_class.items())
    return Check("demographics", worst(statuses), summary, {"per_class": per_class, "table": table},
                 THRESHOLDS["demographics"])


def with_run_split(manifest: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """The full manifest with the run's split: rows the run used get their side, every other row none.

    Rows without a side still link units (patient ids, aliases, dup groups, hashes), so a chain through a row the
    run dropped (a removed copy, a row outside the task, one cut by ``--max-images``) is seen.
    """
    side = frame.drop_duplicates("image_id").set_index("image_id")["split"]
    full = manifest.copy()
    full["split"] = full["image_id"].map(side).astype(object)
    extra = frame[~frame["image_id"].isin(full["image_id"])]
    if len(extra):  # the run holds rows its manifest does not (it moved and changed): check them too
        full = pd.concat([full, extra[[c for c in extra.columns if c in full.columns]]], ignore_index=True)
    return full


def leakage(frame: pd.DataFrame, split_policy: str | None, manifest: pd.DataFrame | None = None,
            pairs: pd.DataFrame | None = None) -> Check:
    """The ``leakage`` check: ``leakage_report`` of the run's split over the full ``manifest`` (when given; else
    over the run's rows only), with dedup's ``pairs`` table when there is one; the report is included whole."""
    rows = with_run_split(manifest, frame) if manifest is not None else frame
    report = leakage_report(rows, pairs=pairs)
    found = {k: f.total for k, f in report.findings.items() if f.total}
    status = "fail" if found or split_policy == "per-image" else "pass"
    scope = (f"over the full manifest ({len(rows)} rows, {int(rows['split'].notna().sum())} in the run)"
             if manifest is not None else f"over the run's {len(rows)} rows only (manifest not readable)")
    summary = ("nothing crosses sides" if not found else "crossing sides: " + ", ".join(
        f"{k} {v}" for k, v in found.items())) + f" {scope}" + (
        "; LEAKY per-image split" if split_policy == "per-image" else "")
    return Check("leakage", status, summary, {"report": report.to_dict(), "full_manifest": manifest is not None},
                 THRESHOLDS["leakage"])
