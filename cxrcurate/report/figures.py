"""The report's pictures as ``data:`` URIs of PNGs: ROC curves, confusion matrices, attribution overlays.

matplotlib is used through its object API with the Agg canvas only (no pyplot, no global backend switch), so
drawing works headless and leaves the caller's matplotlib state alone.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..audit.overlays import TITLES
from ..bench.record import seed_name

__all__ = ["TITLES", "confusion_figure", "overlay_grid", "roc_figure", "to_data_uri"]


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def to_data_uri(fig: Any) -> str:
    """A figure rendered as a base64 PNG ``data:`` URI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def roc_figure(predictions: dict[int, pd.DataFrame], classes: Sequence[str]) -> str:
    """One-vs-rest ROC curve per class (COVID-19 only for two classes), one line per seed, AUC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    shown = ["covid19"] if len(classes) == 2 else list(classes)
    fig = _figure(4.2 * len(shown), 4.0)
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    for ax, cls in zip(axes, shown, strict=True):
        for k, pred in predictions.items():
            y = (pred["target"] == list(classes).index(cls)).to_numpy()
            if 0 < y.sum() < len(y):
                fpr, tpr, _ = roc_curve(y, pred[f"p_{cls}"])
                ax.plot(fpr, tpr, lw=1.6, label=f"{seed_name(k)}: AUC {roc_auc_score(y, pred[f'p_{cls}']):.3f}")
        ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{cls} vs rest", xlim=(0, 1),
               ylim=(0, 1.01))
        ax.legend(loc="lower right", fontsize=8)
    return to_data_uri(fig)


def confusion_figure(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str = "") -> str:
    """A confusion matrix with counts and row percentages (rows: true class)."""
    cm = np.asarray(matrix, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig = _figure(1.4 * len(classes) + 2.0, 1.2 * len(classes) + 1.6)
    ax = fig.subplots()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(cm[i, j])}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=9,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(classes, rotation=20)
    ax.set_yticklabels(classes)
    return to_data_uri(fig)


def overlay_grid(cases: list[dict[str, Any]], methods: Sequence[str], titles: dict[str, str]) -> str:
    """Rows of cases: the input, then each method's map over it (lung outline drawn when known).

    Each case holds ``image`` (2-D, 0..1), ``maps`` (method -> 2-D map), ``lungs`` (bool mask or None) and
    ``caption``.
    """
    cols = 1 + len(methods)
    fig = _figure(2.2 * cols, 2.35 * len(cases))
    axes = fig.subplots(len(cases), cols, squeeze=False)
    for row, case in zip(axes, cases, strict=True):
        row[0].imshow(case["image"], cmap="gray", vmin=0, vmax=1)
        row[0].set_title(case["caption"], fontsize=8)
        for ax, method in zip(row[1:], methods, strict=True):
            m = np.clip(np.nan_to_num(case["maps"][method]), 0, None)
            top = float(m.max())
            ax.imshow(case["image"], cmap="gray", vmin=0, vmax=1)
            if top > 0:  # the weakest tenth stays transparent, so the picture shows where the mass is
                ax.imshow(np.ma.masked_less(m / top, 0.1), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            ax.set_title(titles.get(method, method) + ("" if top > 0 else "\n(no positive attribution)"),
                         fontsize=8)
        for ax in row:
            if case.get("lungs") is not None:
                ax.contour(case["lungs"].astype(float), levels=[0.5], colors="lime", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
    return to_data_uri(fig)
