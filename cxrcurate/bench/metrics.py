"""Scores with their uncertainty: accuracy, balanced accuracy, per-class precision/recall/F1, ROC AUC, confusion
matrix, ROC points, and bootstrap 95% confidence intervals (scikit-learn for every metric).

The bootstrap resamples the split's UNITS (patients, linked pictures: ``groups``), not images: images of one
patient are not independent, and resampling them one by one makes intervals too narrow (40 patients x 5 images:
[0.740, 0.855] by image vs [0.685, 0.895] by patient). A resample in which a metric is undefined (one class only:
no AUC) is not silently dropped: ``boot_undefined`` counts them, and the CI is NaN when over half are undefined.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _point(y: np.ndarray, proba: np.ndarray, classes: Sequence[str], pred: np.ndarray | None = None
           ) -> dict[str, float]:
    import warnings

    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

    pred = proba.argmax(axis=1) if pred is None else pred
    covid = classes.index("covid19")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        balanced = float(balanced_accuracy_score(y, pred)) if len(set(y.tolist())) > 1 else float("nan")
    out = {"accuracy": float(accuracy_score(y, pred)), "balanced_accuracy": balanced,
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


METRICS = ("accuracy", "balanced_accuracy", "covid_f1", "roc_auc")


def score(y_true: Sequence[int], proba: np.ndarray, classes: Sequence[str], n_boot: int = 1000,
          seed: int = 0, groups: Sequence[Any] | None = None, pred: Sequence[int] | None = None) -> dict[str, Any]:
    """All figures of a test set.

    Args:
        y_true: class indices into ``classes``.
        proba: ``(n, len(classes))`` probabilities (rows sum to 1).
        classes: class names; must contain ``covid19``.
        n_boot: bootstrap resamples for the 95% CIs (percentile method).
        seed: bootstrap seed (a local generator).
        groups: the unit of each test image (patient or linked pictures); the bootstrap resamples whole units.
            None resamples images (say so: ``ci_unit`` is ``image`` then).
        pred: the predicted class of each image when it is not the argmax of ``proba`` (a hard cascade decides
            stage by stage, while ``proba`` holds its soft products for ROC AUC).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_curve

    classes = list(classes)
    y = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=float)
    decided = None if pred is None else np.asarray(pred, dtype=int)
    pred = proba.argmax(axis=1) if decided is None else decided
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=list(range(len(classes))), zero_division=0)
    out: dict[str, Any] = {"n": int(len(y)), "classes": classes, **_point(y, proba, classes, pred)}
    out["per_class"] = {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                        for i, c in enumerate(classes)}
    out["confusion_matrix"] = confusion_matrix(y, pred, labels=list(range(len(classes)))).tolist()
    covid = classes.index("covid19")
    if len(set((y == covid).tolist())) == 2:
        fpr, tpr, thr = roc_curve(y == covid, proba[:, covid])
        out["roc_covid"] = {"fpr": fpr.round(4).tolist(), "tpr": tpr.round(4).tolist()}
    import warnings

    majority = np.bincount(y, minlength=len(classes)).argmax() if len(y) else 0
    out["majority_baseline"] = {"class": classes[int(majority)], "accuracy": float((y == majority).mean())
                                if len(y) else float("nan")}
    members = _members(groups, len(y))
    out["ci_unit"] = "image" if groups is None else "unit"
    out["n_units"] = len(members)
    rng = np.random.default_rng(seed)
    boots: dict[str, list[float]] = {k: [] for k in METRICS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resamples with one class: AUC undefined, recorded as NaN and counted
        for _ in range(n_boot):
            idx = np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
            for k, v in _point(y[idx], proba[idx], classes, pred[idx]).items():
                boots[k].append(v)
    out["n_boot"] = int(n_boot)
    out["boot_undefined"] = {k: int(np.isnan(v).sum()) for k, v in boots.items()}
    out["ci95"] = {k: _interval(v) for k, v in boots.items()}
    return out


def _members(groups: Sequence[Any] | None, n: int) -> list[np.ndarray]:
    """Row positions of each unit (each row its own unit without ``groups``)."""
    if groups is None:
        return [np.array([i]) for i in range(n)]
    codes = np.unique(np.asarray([str(g) for g in groups], dtype=object), return_inverse=True)[1]
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(codes[order])) + 1) if n else []


def _interval(values: list[float]) -> list[float]:
    """Percentile 95% interval of the defined resamples; NaN when none, or over half, are defined."""
    v = np.asarray(values, dtype=float)
    ok = v[np.isfinite(v)]
    if not len(ok) or len(ok) < len(v) / 2:
        return [float("nan"), float("nan")]
    return [float(np.percentile(ok, 2.5)), float(np.percentile(ok, 97.5))]


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean, sample standard deviation (ddof=1) and range of the headline figures over repeated runs (the paper's
    ten runs); ``defined`` counts the runs where the figure exists."""
    out = {}
    for key in METRICS:
        values = np.array([r.get(key, np.nan) for r in runs], dtype=float)
        ok = values[np.isfinite(values)]
        out[key] = {"mean": float(ok.mean()) if len(ok) else float("nan"),
                    "std": float(ok.std(ddof=1)) if len(ok) > 1 else float("nan"),
                    "min": float(ok.min()) if len(ok) else float("nan"),
                    "max": float(ok.max()) if len(ok) else float("nan"), "runs": len(values), "defined": len(ok)}
    return out


MIN_TEST_UNITS = 5  # test units per class below which no figure is evidence (a CI over 4 units is a guess)


def evidence(metrics: dict[str, Any], pred: Sequence[int], y_true: Sequence[int], units: Sequence[Any],
             classes: Sequence[str]) -> dict[str, Any]:
    """Whether a test result can carry any finding, and why not.

    No evidence when: the ROC AUC or its CI is undefined; the CI does not lie above 0.5 (this covers a degenerate,
    zero-width CI at or below chance such as [0, 0]); the model predicted one class for every test image; or a
    class has fewer than ``MIN_TEST_UNITS`` test units. ``kind`` is ``at_chance`` when the model's output shows it
    learned nothing, ``insufficient`` when the test set is too small to tell, ``ok`` otherwise.
    """
    y, pred = np.asarray(y_true, dtype=int), np.asarray(pred, dtype=int)
    units = np.asarray([str(u) for u in units], dtype=object)
    auc, ci = metrics.get("roc_auc", float("nan")), list(metrics.get("ci95", {}).get("roc_auc") or [np.nan, np.nan])
    chance, short = [], []
    defined = auc is not None and np.isfinite(auc) and all(c is not None and np.isfinite(c) for c in ci)
    if not defined:
        short.append("the test ROC AUC or its 95% CI is undefined (a resample or the test set lacks a class)")
    elif ci[0] <= 0.5:
        degenerate = " (a degenerate, zero-width CI)" if ci[1] - ci[0] < 1e-9 else ""
        chance.append(f"the test ROC AUC {auc:.3f} has a 95% CI [{ci[0]:.3f}, {ci[1]:.3f}]{degenerate} that does "
                      "not lie above chance (0.5)")
    if len(pred) and len(np.unique(pred)) == 1:
        chance.append(f"the model predicted {classes[int(pred[0])]} for every test image")
    per_class = {c: int(len(set(units[y == i]))) for i, c in enumerate(classes)}
    few = {c: n for c, n in per_class.items() if n < MIN_TEST_UNITS}
    if few:
        short.append("too few test units: " + ", ".join(f"{c} {n}" for c, n in few.items())
                     + f" (at least {MIN_TEST_UNITS} per class are needed)")
    kind = "at_chance" if chance else "insufficient" if short else "ok"
    return {"kind": kind, "reasons": chance + short, "test_units_per_class": per_class,
            "min_test_units_per_class": MIN_TEST_UNITS}


def no_evidence(run: dict[str, Any]) -> bool:
    """True when a seed's figures carry no evidence (``evidence``); runs recorded without it count as evidence."""
    return run.get("evidence", {}).get("kind", "ok") != "ok"


def evidence_words(ev: dict[str, Any] | None) -> str:
    """One sentence for a banner: what the evidence allows one to believe."""
    if not ev or ev.get("kind", "ok") == "ok":
        return ""
    head = ("The model learned nothing: " if ev["kind"] == "at_chance" else
            "The evidence is insufficient: ")
    return head + "; ".join(ev["reasons"]) + "."
