"""Scores with unit-bootstrap 95% CIs for ``measure``, and the words that replace a score without evidence.

Why separate: every figure of the leak measure (k-NN scores, their differences, the confounds) goes through the same
rules: resample whole units, count undefined resamples, and call an interval of zero width over fewer than
``MIN_UNITS`` units "insufficient evidence" rather than a finding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MIN_UNITS = 20  # below this many test units an interval of zero width says "too few units", not "certain"


@dataclass
class Figure:
    """A score with its unit-bootstrap 95% CI and chance level, or the reason the evidence is insufficient."""

    name: str
    value: float | None = None
    ci: list[float] | None = None
    chance: float | None = None
    insufficient: str | None = None

    def verdict(self) -> str:
        """Words for the figure against its chance level (or zero, for a difference)."""
        if self.insufficient:
            return f"insufficient evidence: {self.insufficient}"
        lo, hi = self.ci
        ref = self.chance if self.chance is not None else 0.0
        if lo > ref:
            return "above chance" if self.chance is not None else "a gain (CI above 0)"
        if hi < ref:
            return "below chance" if self.chance is not None else "a loss (CI below 0)"
        return "within chance (CI includes it)" if self.chance is not None else "no difference shown (CI includes 0)"

    def text(self) -> str:
        if self.insufficient:
            return f"{self.name}: insufficient evidence ({self.insufficient})"
        ch = f", chance {self.chance:.3f}" if self.chance is not None else ""
        sign = "+" if self.chance is None and self.value >= 0 else ""
        return f"{self.name}: {sign}{self.value:.3f} [{self.ci[0]:.3f}, {self.ci[1]:.3f}]{ch} - {self.verdict()}"



def members(units: np.ndarray) -> list[np.ndarray]:
    codes = pd.factorize(pd.Series(units).astype(str))[0]
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(codes[order])) + 1) if len(codes) else []


def metric(name: str, y: np.ndarray, p: np.ndarray, hard: bool = False, cut: float = 0.5) -> float:
    """ROC AUC of scores ``p``, or balanced accuracy of ``p >= cut`` (of the classes ``p`` when ``hard``)."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    if len(set(y.tolist())) < 2:
        return float("nan")
    if name == "roc_auc":
        return float(roc_auc_score(y, p))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true" in a resample
        return float(balanced_accuracy_score(y, p if hard else (p >= cut).astype(int)))


def boot(name: str, y: np.ndarray, p: np.ndarray, units: np.ndarray, n_boot: int, seed: int,
         hard: bool = False, cut: float = 0.5) -> np.ndarray:
    """The metric on ``n_boot`` resamples of whole units (NaN where undefined)."""
    groups, rng = members(units), np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([groups[k] for k in rng.integers(0, len(groups), len(groups))])
        out[b] = metric(name, y[idx], p[idx], hard, cut)
    return out


def paired_boot(name: str, y: np.ndarray, p1: np.ndarray, p2: np.ndarray, units: np.ndarray, n_boot: int,
                seed: int, cut1: float = 0.5, cut2: float = 0.5) -> np.ndarray:
    """``metric(p1) - metric(p2)`` on the same ``n_boot`` resamples of whole units (two models, one test set)."""
    groups, rng = members(units), np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([groups[k] for k in rng.integers(0, len(groups), len(groups))])
        out[b] = metric(name, y[idx], p1[idx], cut=cut1) - metric(name, y[idx], p2[idx], cut=cut2)
    return out


def figure(name: str, value: float, boots: np.ndarray, chance: float | None, why: str | None = None,
           units: int = 0) -> Figure:
    """A Figure, or insufficient evidence when the point, most resamples or the interval's width say so (an
    interval of zero width over fewer than ``MIN_UNITS`` units: every resample alike because there is little to
    resample; over more, it is a perfect separation and is reported)."""
    if why:
        return Figure(name, insufficient=why, chance=chance)
    if not np.isfinite(value):
        return Figure(name, insufficient="the score is undefined here (one class only)", chance=chance)
    ok = boots[np.isfinite(boots)]
    if len(ok) < len(boots) / 2:
        return Figure(name, insufficient=f"{len(boots) - len(ok)} of {len(boots)} resamples undefined", chance=chance)
    lo, hi = float(np.percentile(ok, 2.5)), float(np.percentile(ok, 97.5))
    if hi - lo <= 1e-12 and units < MIN_UNITS:
        return Figure(name, insufficient="every resample gives the same value (too few units to tell)", chance=chance)
    return Figure(name, round(float(value), 4), [round(lo, 4), round(hi, 4)], chance)


def knn(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, k: int, proba: bool = True) -> np.ndarray:
    """Distance-weighted k-NN: P(class 1) of a 0/1 target, or the predicted class (``proba`` False)."""
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=min(k, len(y_tr)), weights="distance").fit(x_tr, y_tr)
    return clf.predict_proba(x_te)[:, list(clf.classes_).index(1)] if proba else clf.predict(x_te)
