"""What every audit check shares: its result (``Check``), the audit's options and how statuses combine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .attribution import AttributionOptions

STATUSES = ("pass", "inconclusive", "warn", "fail", "not run")
# From least to most severe. ``inconclusive``: the check ran but its evidence cannot decide (e.g. attributions of a
# model that is at chance on the test set); it ranks above ``pass`` (the verdict must not read as a clean bill) and
# below ``warn`` (nothing was found). ``not run`` does not take part.
SEVERITY = ("pass", "inconclusive", "warn", "fail")


@dataclass
class Check:
    """One audit test: its status, a one-line summary and the numbers behind it."""

    name: str
    status: str
    summary: str
    numbers: dict[str, Any] = field(default_factory=dict)
    thresholds: str = ""


@dataclass
class AuditOptions:
    """What the audit does (recorded in ``audit.json``)."""

    run_index: int = 0
    lung_source: str = "auto"
    lung_weights: str | None = None
    fallback_box: bool = False
    region: str = "mask"
    attribution: AttributionOptions = field(default_factory=AttributionOptions)
    attribution_images: int | None = 100
    probe: bool = True
    probe_images: int | None = 2000
    loso: bool = True
    loso_sources: tuple[str, ...] | None = None
    n_boot: int = 200
    batch_size: int = 16
    workers: int = 0
    seed: int = 0
    manifest: str | None = None
    data_root: str | None = None


def worst(statuses: list[str]) -> str:
    """The most severe of some statuses (``SEVERITY``; ``not run`` entries do not count)."""
    ran = [s for s in statuses if s != "not run"]
    return max(ran, key=SEVERITY.index) if ran else "not run"


def unit_bootstrap(stat: Callable[[np.ndarray], float], units: np.ndarray, n_boot: int, seed: int,
                   ) -> tuple[list[float], int]:
    """Percentile 95% CI of ``stat(row_positions)`` over resamples of whole units (with replacement).

    Returns ``([low, high], undefined)``: ``undefined`` counts resamples where ``stat`` was not finite (e.g. one
    class only); they are left out of the percentiles, and the CI is NaN when fewer than half are defined.
    """
    codes = pd.factorize(pd.Series(units))[0]
    members = [np.flatnonzero(codes == u) for u in range(codes.max() + 1)] if len(codes) else []
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(members), len(members))
        values.append(stat(np.concatenate([members[u] for u in pick])))
    finite = [v for v in values if np.isfinite(v)]
    undefined = len(values) - len(finite)
    if not finite or len(finite) * 2 < len(values):
        return [float("nan"), float("nan")], undefined
    return [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))], undefined


def to_json(value: Any) -> Any:
    """``value`` as strict JSON data: numpy scalars and arrays as Python values, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [to_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)
