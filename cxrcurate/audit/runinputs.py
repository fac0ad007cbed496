"""What the audit reads from a run beyond its record: a stratified sample of its test rows, its full manifest and
dedup's pairs (units link through rows the run did not use), and a check that the rebuilt network is the run's."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from ..dedup import read_pairs

log = logging.getLogger(__name__)


def sample_rows(rows: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """At most ``n`` rows, stratified by target (the same ones every time for a seed)."""
    if n is None or len(rows) <= n:
        return rows
    frac = n / len(rows)
    parts = [g.sample(max(1, round(len(g) * frac)), random_state=seed) for _, g in rows.groupby("target")]
    return pd.concat(parts).sort_values("image_id").head(n)


def full_manifest(run: Any) -> pd.DataFrame | None:
    """The manifest the run was made from (all rows: those the run dropped still link units), or None if unreadable."""
    try:
        return run.manifest
    except (OSError, ValueError) as exc:
        log.warning("leakage checked on the run's rows only: its manifest %s cannot be read (%s)",
                    run.manifest_path, exc)
        return None


def pairs_of(run: Any) -> pd.DataFrame | None:
    """Dedup's pairs table beside the run's manifest, when there is one."""
    return read_pairs(run.manifest_path)


def reload_difference(run: Any, k: int, preds: pd.DataFrame) -> float:
    """Largest difference between the rebuilt model's probabilities and the run's own (a check of the rebuild)."""
    if not len(preds):
        return float("nan")
    written = run.predictions(k).set_index("image_id")  # the bench's own probabilities
    cols = [f"p_{c}" for c in run.classes]
    ids = [i for i in preds["image_id"] if i in written.index]
    if not ids:
        return float("nan")
    ours = np.exp(np.stack(preds.set_index("image_id").loc[ids, "full"].to_list()))
    return float(np.abs(ours - written.loc[ids, cols].to_numpy()).max())
