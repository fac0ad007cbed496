"""The attribution maps the report draws, chosen and recorded by the audit (the report only renders them).
torch-free: the method names live here so that the report and the CLI need no torch.

``report_cases`` picks the most confident correct and wrong test cases of each class from the bench's predictions;
``overlay_rows`` turns their maps, rendered inputs and lung masks into rows of the run record's ``overlays`` table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

CASES = 2  # correct and wrong cases per class
METHODS = ("gradcam", "lime", "ig")
TITLES = {"gradcam": "Grad-CAM", "lime": "LIME", "ig": "Integrated Gradients"}


def report_cases(pred: pd.DataFrame, classes: tuple[str, ...], n: int = CASES) -> pd.DataFrame:
    """Up to ``n`` most confident correct and ``n`` most confident wrong test cases per true class."""
    p = pred[[f"p_{c}" for c in classes]].to_numpy()
    decided = pred["pred"].to_numpy(int)  # the bench's decision (the cascade's for the hierarchical rung)
    pred = pred.assign(predicted=decided, confidence=p.max(axis=1))
    parts = []
    for t in range(len(classes)):
        mine = pred[pred["target"] == t].sort_values(["confidence", "image_id"], ascending=[False, True])
        for ok in (True, False):
            parts.append(mine[(mine["predicted"] == t) == ok].head(n).assign(correct=ok))
    return pd.concat(parts, ignore_index=True) if parts else pred.head(0)


def overlay_rows(cases: pd.DataFrame, images: dict[str, np.ndarray], maps: dict[tuple[str, str], np.ndarray],
                 lungs: dict[str, np.ndarray | None], methods: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per (case, method): the input (2-D, 0..1), the map and the lung mask, flattened with their shape."""
    rows = []
    for rec in cases.itertuples():
        img = images[rec.image_id]
        mask = lungs.get(rec.image_id)
        for method in methods:
            m = maps.get((rec.image_id, method))
            if m is None:
                continue
            rows.append({"image_id": rec.image_id, "method": method, "target": int(rec.target),
                         "predicted": int(rec.predicted), "confidence": float(rec.confidence),
                         "correct": bool(rec.correct), "source": rec.source, "height": int(img.shape[0]),
                         "width": int(img.shape[1]), "image": img.astype(np.float32).ravel(),
                         "map": np.nan_to_num(m).astype(np.float32).ravel(),
                         "lungs": None if mask is None else mask.astype(bool).ravel()})
    return rows
