"""Scores with their uncertainty: accuracy, per-class precision/recall/F1, ROC AUC, confusion matrix, ROC points,
and bootstrap 95% confidence intervals over test images (scikit-learn for every metric)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _point(y: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    pred = proba.argmax(axis=1)
    covid = classes.index("covid19")
    out = {"accuracy": float(accuracy_score(y, pred)),
           "covid_f1": float(f1_score(y == covid, pred == covid, zero_division=0))}
    try:
        if len(classes) == 2:
            out["roc_auc"] = float(roc_auc_score(y == covid, proba[:, covid]))
        else:
            out["roc_auc"] = float(roc_auc_score(y, proba, multi_class="ovr", average="macro",
                                                 labels=list(range(len(classes)))))
    except ValueError:  # one class only in this (re)sample
        out["roc_auc"] = float("nan")
    return out


def score(y_true: Sequence[int], proba: np.ndarray, classes: Sequence[str], n_boot: int = 1000,
          seed: int = 0) -> dict[str, Any]:
    """All figures of a test set.

    Args:
        y_true: class indices into ``classes``.
        proba: ``(n, len(classes))`` probabilities (rows sum to 1).
        classes: class names; must contain ``covid19``.
        n_boot: bootstrap resamples for the 95% CIs (percentile method, resampling test images).
        seed: bootstrap seed (a local generator).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_curve

    classes = list(classes)
    y = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=float)
    pred = proba.argmax(axis=1)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=list(range(len(classes))), zero_division=0)
    out: dict[str, Any] = {"n": int(len(y)), "classes": classes, **_point(y, proba, classes)}
    out["per_class"] = {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                        for i, c in enumerate(classes)}
    out["confusion_matrix"] = confusion_matrix(y, pred, labels=list(range(len(classes)))).tolist()
    covid = classes.index("covid19")
    if len(set((y == covid).tolist())) == 2:
        fpr, tpr, thr = roc_curve(y == covid, proba[:, covid])
        out["roc_covid"] = {"fpr": fpr.round(4).tolist(), "tpr": tpr.round(4).tolist()}
    import warnings

    rng = np.random.default_rng(seed)
    boots: dict[str, list[float]] = {"accuracy": [], "covid_f1": [], "roc_auc": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resamples with one class: AUC undefined, recorded as NaN
        for _ in range(n_boot):
            idx = rng.integers(0, len(y), len(y))
            for k, v in _point(y[idx], proba[idx], classes).items():
                boots[k].append(v)
    out["ci95"] = {k: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]
                   if np.isfinite(v).any() else [float("nan"), float("nan")] for k, v in boots.items()}
    return out


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean, standard deviation and range of the headline figures over repeated runs (the paper's ten runs)."""
    out = {}
    for key in ("accuracy", "covid_f1", "roc_auc"):
        values = np.array([r[key] for r in runs], dtype=float)
        out[key] = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values)),
                    "min": float(np.nanmin(values)), "max": float(np.nanmax(values)), "runs": len(values)}
    return out
