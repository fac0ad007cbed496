"""What every audit check shares: its result (``Check``), the audit's options and how statuses combine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .attribution import AttributionOptions

STATUSES = ("pass", "warn", "fail", "not run")


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
    """The most severe of some statuses (``not run`` counts below ``pass``)."""
    ran = [s for s in statuses if s != "not run"]
    return max(ran, key=("pass", "warn", "fail").index) if ran else "not run"


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
