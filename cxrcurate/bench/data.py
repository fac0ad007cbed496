"""What a benchmark trains and tests on: the task's rows of a manifest, an honest split, and the tensors.

Splits come from the manifest's ``split`` column (``--split-policy manifest``) or are made on the fly, patient-
and duplicate-group-aware (``group``, the default). ``per-image`` exists only to reproduce the leaky protocol of
published COVID-19 CXR papers; every output of such a run says LEAKY.

Units (patients, aliases, duplicate groups, hashes, accepted duplicate pairs) are computed once on the FULL
manifest, then restricted to the task's rows: a link through a row the task leaves out (a copy not kept, a label
outside the task, a row cut by ``max_images``) still keeps both ends on one side. ``prepare`` verifies this before
it returns (``TaskData.units`` holds each row's unit; the bootstrap resamples them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import CxrcurateError
from ..splits import make_split, split_groups

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
    holdout_source: str | None = None

    def part(self, split: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == split].reset_index(drop=True)


MIN_UNITS = {"train": 2, "val": 1, "test": 1}  # units of each class a side needs before anything is trained


def _enough(rows: pd.DataFrame, classes: Sequence[str], where: str, least: int, by: str | None = None) -> None:
    """Refuse (before training) a task where a class has fewer than ``least`` images (or units, ``by="unit"``) in
    ``rows``, naming the class and every class's count.

    Raises:
        CxrcurateError: a class is short.
    """
    what = "units" if by else "images"
    counts = {c: int(rows.loc[rows["target"] == i, by].nunique() if by else (rows["target"] == i).sum())
              for i, c in enumerate(classes)}
    short = [c for c, n in counts.items() if n < least]
    if short:
        listed = ", ".join(f"{c} {n}" for c, n in counts.items())
        raise CxrcurateError(f"too few {what} of class {', '.join(short)} in {where} ({listed}; at least {least} "
                             f"each needed); add sources with those labels, change --negatives, or raise "
                             "--max-images / the --test and --val fractions")


def task_targets(df: pd.DataFrame, classes: Sequence[str], negatives: Sequence[str]) -> pd.Series:
    """Class index per row (NaN for rows outside the task). Two classes: ``negatives`` -> 0, covid19 -> 1."""
    if len(classes) == 2:
        return df["label"].map({**{n: 0 for n in negatives}, "covid19": 1})
    return df["label"].map({c: i for i, c in enumerate(classes)})


def prepare(df: pd.DataFrame, classes: Sequence[str], split_policy: str = "group", negatives: Sequence[str] =
            ("normal",), test: float = 0.2, val: float = 0.1, seed: int = 0, max_images: int | None = None,
            holdout_source: str | None = None, pairs: pd.DataFrame | None = None) -> TaskData:
    """Select the task's rows (one kept copy per picture) and split them; ``frame["unit"]`` is each row's unit
    computed on the full manifest ``df``.

    Args:
        df: the FULL manifest (units are computed on all of it).
        classes: the task's classes; two classes mean ``negatives`` vs covid19.
        split_policy: ``group`` (patient/duplicate-aware, default), ``manifest`` or ``per-image`` (LEAKY).
        negatives, test, val, seed, max_images: as the bench options.
        holdout_source: leave-one-source-out: every unit holding a row of this source (anywhere in ``df``) is
            test; train and val never see them.
        pairs: dedup's pairs table; its accepted pairs link rows too.

    Raises:
        CxrcurateError: unknown policy, no split column for ``manifest``, too few rows of a class, or (a bug) a
            unit on two sides.
    """
    from sklearn.model_selection import train_test_split

    if split_policy not in SPLIT_POLICIES:
        raise CxrcurateError(f"unknown split policy {split_policy!r}; choose from {list(SPLIT_POLICIES)}")
    if holdout_source is not None and split_policy != "group":
        raise CxrcurateError("leave-one-source-out needs --split-policy group")
    notes: list[str] = []
    if df["dup_group"].isna().all():
        notes.append("manifest not deduplicated (run `cxrcurate dedup`): near copies may sit on both sides")
    if df.index.has_duplicates:
        df = df.reset_index(drop=True)
    units = split_groups(df, pairs)
    rows = df[df["keep"].fillna(True).astype(bool)].copy()
    rows["target"] = task_targets(rows, classes, negatives)
    rows = rows[rows["target"].notna()].copy()
    rows["target"] = rows["target"].astype(int)
    _enough(rows, classes, "the task's rows", 3)
    if max_images and len(rows) > max_images:
        rows, _ = train_test_split(rows, train_size=max_images, stratify=rows["target"], random_state=seed)
        rows = rows.sort_index()
        notes.append(f"capped at {max_images} images (stratified sample, seed {seed})")
    _enough(rows, classes, f"the {max_images} images --max-images keeps" if max_images else "the task's rows", 3)
    if split_policy == "manifest":
        if rows["split"].isna().any():
            raise CxrcurateError("the manifest has no split for some rows; run `cxrcurate split` or use "
                                 "--split-policy group")
    elif split_policy == "group":
        rows = make_split(rows, test=test, val=val, seed=seed, stratify="target", holdout_source=holdout_source,
                          universe=df, pairs=pairs, units=units)
        if holdout_source is not None:
            notes.append(f"leave-one-source-out: every unit holding a {holdout_source} row is test")
    else:
        notes.append(LEAKY)
        idx = np.arange(len(rows))
        rest, test_idx = train_test_split(idx, test_size=test, stratify=rows["target"], random_state=seed)
        tr, va = train_test_split(rest, test_size=val / (1 - test), stratify=rows["target"].iloc[rest],
                                  random_state=seed)
        split = np.empty(len(rows), dtype=object)
        split[tr], split[va], split[test_idx] = "train", "val", "test"
        rows["split"] = split
    rows["unit"] = units.loc[rows.index].to_numpy()
    for side, least in MIN_UNITS.items():  # a held-out source's test side may hold one class (LOSO scores accuracy)
        if split_policy != "per-image" and not (side == "test" and holdout_source is not None):
            _enough(rows[rows["split"] == side], classes, f"the {side} side", least, by="unit")
    crossing = rows.groupby("unit")["split"].nunique()
    crossing = crossing[crossing > 1]
    if split_policy != "per-image":
        if len(crossing):
            where = "the manifest's split column" if split_policy == "manifest" else "the split (a bug)"
            raise CxrcurateError(f"{len(crossing)} unit(s) computed on the full manifest sit on two sides in {where}, "
                                 f"e.g. {crossing.index[0]}; use --split-policy group or re-run `cxrcurate split`")
        notes.append(f"units computed on the full manifest ({len(df):,} rows): none of the task's "
                     f"{rows['unit'].nunique():,} units is on two sides")
    return TaskData(rows.reset_index(drop=True), tuple(classes), split_policy, notes, holdout_source)
