"""What a benchmark trains and tests on: the task's rows of a manifest, an honest split, and the tensors.

Splits come from the manifest's ``split`` column (``--split-policy manifest``) or are made on the fly, patient-
and duplicate-group-aware (``group``, the default). ``per-image`` exists only to reproduce the leaky protocol of
published COVID-19 CXR papers; every output of such a run says LEAKY.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import CxrcurateError

log = logging.getLogger(__name__)
SPLIT_POLICIES = ("group", "manifest", "per-image")
LEAKY = "LEAKY per-image split (reproduces the paper's protocol; not a valid estimate)"


@dataclass
class TaskData:
    """The rows of one task with ``target`` (class index) and ``split`` filled, and what was done to get them."""

    frame: pd.DataFrame
    classes: tuple[str, ...]
    split_policy: str
    notes: list[str] = field(default_factory=list)

    def part(self, split: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == split].reset_index(drop=True)


def task_targets(df: pd.DataFrame, classes: Sequence[str], negatives: Sequence[str]) -> pd.Series:
    """Class index per row (NaN for rows outside the task). Two classes: ``negatives`` -> 0, covid19 -> 1."""
    if len(classes) == 2:
        return df["label"].map({**{n: 0 for n in negatives}, "covid19": 1})
    return df["label"].map({c: i for i, c in enumerate(classes)})


def prepare(df: pd.DataFrame, classes: Sequence[str], split_policy: str = "group", negatives: Sequence[str] =
            ("normal",), test: float = 0.2, val: float = 0.1, seed: int = 0, max_images: int | None = None,
            ) -> TaskData:
    """Select the task's rows (one kept copy per picture) and split them.

    Raises:
        CxrcurateError: unknown policy, no split column for ``manifest``, or too few rows of a class.
    """
    from sklearn.model_selection import train_test_split

    from ..splits import make_split

    if split_policy not in SPLIT_POLICIES:
        raise CxrcurateError(f"unknown split policy {split_policy!r}; choose from {list(SPLIT_POLICIES)}")
    notes: list[str] = []
    if df["dup_group"].isna().all():
        notes.append("manifest not deduplicated (run `cxrcurate dedup`): near copies may sit on both sides")
    rows = df[df["keep"].fillna(True).astype(bool)].copy()
    rows["target"] = task_targets(rows, classes, negatives)
    rows = rows[rows["target"].notna()].copy()
    rows["target"] = rows["target"].astype(int)
    if max_images and len(rows) > max_images:
        rows, _ = train_test_split(rows, train_size=max_images, stratify=rows["target"], random_state=seed)
        notes.append(f"capped at {max_images} images (stratified sample, seed {seed})")
    counts = rows["target"].value_counts()
    if len(counts) < len(classes) or counts.min() < 3:
        raise CxrcurateError(f"too few images for the task {list(classes)}: {counts.to_dict()} (class index -> rows)"
                             "; add sources with those labels or change --negatives")
    if split_policy == "manifest":
        if rows["split"].isna().any():
            raise CxrcurateError("the manifest has no split for some rows; run `cxrcurate split` or use "
                                 "--split-policy group")
    elif split_policy == "group":
        rows = make_split(rows, test=test, val=val, seed=seed, stratify="target")
    else:
        notes.append(LEAKY)
        idx = np.arange(len(rows))
        rest, test_idx = train_test_split(idx, test_size=test, stratify=rows["target"], random_state=seed)
        tr, va = train_test_split(rest, test_size=val / (1 - test), stratify=rows["target"].iloc[rest],
                                  random_state=seed)
        split = np.empty(len(rows), dtype=object)
        split[tr], split[va], split[test_idx] = "train", "val", "test"
        rows["split"] = split
    return TaskData(rows.reset_index(drop=True), tuple(classes), split_policy, notes)
