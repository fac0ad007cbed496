"""Patient-level train/val/test splits that no patient or picture crosses, and a leakage check for any split.

A unit (what must stay on one side) is a connected component of rows sharing a patient id (aliases included), a
dup group, a pixel/file hash or an accepted duplicate pair of dedup's pairs table. Units are computed on the FULL
manifest and only then restricted to the rows a task uses (``make_split(rows, universe=full)``): a link that runs
through a row the task drops (a copy not kept, a label outside the task, a row cut by a cap) still binds.
``make_split`` assigns whole units; ``leakage_report`` checks a split made anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain, combinations
from typing import Any

import numpy as np
import pandas as pd

from .dedup.groups import components, load_pairs
from .dedup.hashindex import pairs_within
from .errors import CxrcurateError

log = logging.getLogger(__name__)

SIDES = ("train", "val", "test")
MAX_EXAMPLES = 10
_LINK_COLUMNS = ("dup_group", "pixel_sha256", "file_sha256")


def _aliases(extra: Any) -> list[str]:
    """The ``alias_patient_ids`` of one ``extra`` JSON value (empty when absent or unreadable)."""
    if not isinstance(extra, str) or "alias_patient_ids" not in extra:
        return []
    try:
        obj = json.loads(extra)
    except json.JSONDecodeError:
        log.warning("extra is not valid JSON, its alias_patient_ids are ignored: %.80s", extra)
        return []
    value = obj.get("alias_patient_ids") if isinstance(obj, dict) else None
    return [value] if isinstance(value, str) else [str(v) for v in value] if isinstance(value, list) else []


def _row_keys(df: pd.DataFrame, columns: Iterable[str], patients: bool) -> Iterable[tuple[int, tuple[str, str]]]:
    """(row position, link key) for every non-null link value of every row; aliases key as patients."""
    for col in [c for c in (["patient_id"] if patients else []) + list(columns) if c in df.columns]:
        kind = "patient" if col == "patient_id" else col
        yield from ((i, (kind, str(v))) for i, v in enumerate(df[col]) if not pd.isna(v))
    if patients and "extra" in df.columns:
        yield from ((i, ("patient", a)) for i, e in enumerate(df["extra"]) for a in _aliases(e))


def _pair_keys(df: pd.DataFrame, pairs: pd.DataFrame | None) -> Iterable[tuple[int, tuple[str, str]]]:
    """(row position, link key) linking both rows of every accepted pair (pairs naming absent images are skipped)."""
    if pairs is None or not len(pairs):
        return
    missing = {"image_a", "image_b", "accepted"} - set(pairs.columns)
    if missing:
        raise CxrcurateError(f"the pairs table lacks column(s) {sorted(missing)}; is it the one dedup wrote?")
    pos = {iid: i for i, iid in enumerate(df["image_id"].astype(str))}
    acc = pairs[pairs["accepted"].astype("boolean").fillna(False).to_numpy(bool)]
    for k, (a, b) in enumerate(zip(acc["image_a"].astype(str), acc["image_b"].astype(str), strict=True)):
        if a in pos and b in pos:
            yield pos[a], ("pair", str(k))
            yield pos[b], ("pair", str(k))


def _components(df: pd.DataFrame, columns: Iterable[str] = _LINK_COLUMNS, patients: bool = True,
                pairs: pd.DataFrame | None = None) -> np.ndarray:
    """Root row position of every row's connected component over the given links (``dedup.groups.components``)."""
    first: dict[tuple[str, str], int] = {}
    links = ((first.setdefault(key, i), i) for i, key in chain(_row_keys(df, columns, patients), _pair_keys(df, pairs)))
    return components(len(df), links)


def split_groups(df: pd.DataFrame, pairs: pd.DataFrame | str | os.PathLike | None = None) -> pd.Series:
    """The unit that must not cross splits, one string id per row.

    Rows are linked when they share a ``patient_id`` (an ``alias_patient_ids`` entry of ``extra`` counts as the
    row's patient too), a ``dup_group``, a ``pixel_sha256`` or a ``file_sha256`` (so it works before dedup), or
    form an accepted pair of ``pairs``; a unit is a connected component. Nulls never link: an unknown patient with
    no link is a unit of its own. The id is ``unit:`` + the smallest ``image_id`` of the unit, so it does not
    depend on the row order. Give the FULL manifest: a link through a row left out is lost.

    Args:
        df: manifest rows (``image_id`` required; link columns that are absent are skipped).
        pairs: dedup's pairs table (DataFrame or Parquet path); its accepted pairs link too.

    Returns:
        A string Series aligned with ``df.index``.

    Raises:
        CxrcurateError: ``df`` has no ``image_id`` column.
    """
    if "image_id" not in df.columns:
        raise CxrcurateError("split_groups needs an 'image_id' column; is this a cxrcurate manifest?")
    pairs = load_pairs(pairs)
    roots = _components(df, pairs=pairs)
    first_id = pd.Series(df["image_id"].astype(str).to_numpy()).groupby(roots).transform("min")
    return pd.Series(("unit:" + first_id).to_numpy(), index=df.index, name="unit", dtype=object)


def _isin(units: np.ndarray, values: Iterable[str]) -> np.ndarray:
    """Hash-based membership of each unit id in ``values``."""
    return pd.Series(units).isin(set(values)).to_numpy(bool)


def _fold_plan(frac: float, n_units: int, max_splits: int = 20) -> tuple[int, int]:
    """(n_splits, folds to take) whose ratio is closest to ``frac``, preferring fewer folds."""
    plans = [(abs(k / n - frac), n, k) for n in range(2, max(2, min(max_splits, n_units)) + 1)
             for k in [min(max(round(frac * n), 1), n - 1)]]
    _, n, k = next((p for p in plans if p[0] <= 0.005), min(plans))
    return n, k


def _pick(units: np.ndarray, rows: np.ndarray, y: np.ndarray | None, frac: float, rng: np.random.RandomState,
          what: str) -> tuple[set[str], str]:
    """Units drawn for one side among the units of ``rows``, stratified by ``y`` when possible."""
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    groups = units[rows]
    n_units = len(set(groups))
    needed = max(2, round(1 / frac))
    if n_units < needed:
        raise CxrcurateError(f"a {what} fraction of {frac:.3g} needs at least {needed} independent units (patients or "
                             f"linked pictures), but only {n_units} are left; lower the fraction or add data")
    n, k = _fold_plan(frac, n_units)
    if y is not None:
        y = y[rows]
        if np.unique(y, return_counts=True)[1].max() >= n:
            cv = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=rng.randint(2**31 - 1))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "least populated class has only 1 member"
                folds = [test for _, test in cv.split(np.zeros(len(y)), y, groups)]
            chosen = rng.choice(n, size=k, replace=False)
            picked = set(groups[np.concatenate([folds[i] for i in chosen])])
            if 0 < len(picked) < n_units:
                return picked, f"StratifiedGroupKFold(n_splits={n}), {k} fold(s)"
    try:
        cv = GroupShuffleSplit(n_splits=1, test_size=frac, random_state=rng.randint(2**31 - 1))
        _, test = next(cv.split(np.zeros(len(groups)), groups=groups))
    except ValueError as exc:
        raise CxrcurateError(f"cannot draw a {what} side of {frac:.3g} from {n_units} units: {exc}") from exc
    return set(groups[test]), "GroupShuffleSplit"


def make_split(df: pd.DataFrame, test: float = 0.2, val: float = 0.1, seed: int = 0, stratify: str | None = "label",
               holdout_source: str | None = None, universe: pd.DataFrame | None = None,
               pairs: pd.DataFrame | str | os.PathLike | None = None, units: pd.Series | None = None
               ) -> pd.DataFrame:
    """A copy of ``df`` with ``split`` set to train, val or test for every row, whole units at a time.

    Units come from ``split_groups``. Test is ``k`` of ``n`` folds of scikit-learn's ``StratifiedGroupKFold``
    (``k/n`` closest to ``test``: 1 of 5 for 0.2); val is drawn the same way from the rest (``val / (1 - test)``
    of it). When stratification is impossible (``stratify`` None, or no label has ``n`` rows, which sklearn
    requires) ``GroupShuffleSplit`` draws that fraction of units instead. Only rows with ``keep`` not False are
    drawn (copies would weigh twice); copies take their unit's side. The result depends on ``seed`` alone (a
    local ``RandomState``), not on the row order.

    With ``holdout_source`` (leave-one-source-out) every unit holding a row of that source is test, ``test`` is
    ignored and ``val`` is a fraction of the rest. Rows of other sources pulled into test by a shared unit are
    counted in ``attrs["cxrcurate"]["split"]["pulled_into_test"]`` (and logged), beside the method and counts.

    With ``universe`` (the full manifest ``df`` was selected from, sharing its index labels) units are computed on
    the universe and restricted to ``df``, and the holdout source's units are those holding a universe row of it:
    a task that uses some rows of a manifest splits them without losing links through the rows it left out.

    Args:
        df: manifest rows, e.g. from ``read_manifest``.
        test: fraction for test, in (0, 1).
        val: fraction for validation, in [0, 1); ``test + val`` must stay below 1.
        seed: seed of the draw (a non-negative int).
        stratify: column to stratify by, or None.
        holdout_source: a source whose rows (and their units) form the test side.
        universe: the full manifest ``df`` is a subset of (same index labels), for the units.
        pairs: dedup's pairs table; its accepted pairs link rows too.
        units: ``split_groups(universe or df, pairs)`` when the caller already has it (computed once per manifest).

    Returns:
        A copy of ``df`` (same index and row order) with the ``split`` column filled.

    Raises:
        CxrcurateError: a fraction is out of range, the seed is invalid, ``df`` is empty, the stratify column
            or the holdout source is missing, or there are too few units for the sides asked for.
    """
    if not 0 <= val < 1:
        raise CxrcurateError(f"val={val} must be in [0, 1)")
    if holdout_source is None and not 0 < test < 1:
        raise CxrcurateError(f"test={test} must be in (0, 1)")
    if holdout_source is None and test + val >= 1:
        raise CxrcurateError(f"test + val = {test + val:.3g} leaves nothing for train; it must be below 1")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
        raise CxrcurateError(f"seed={seed!r} must be an int in [0, 2**32)")
    if df.empty:
        raise CxrcurateError("the manifest has no rows to split")
    if stratify is not None and stratify not in df.columns:
        raise CxrcurateError(f"cannot stratify by {stratify!r}: no such column (use stratify=None to switch it off)")
    rng = np.random.RandomState(seed)
    if universe is not None:
        if not df.index.isin(universe.index).all() or universe.index.has_duplicates:
            raise CxrcurateError("universe must be the manifest the rows were selected from (unique index labels "
                                 "holding every row's label)")
        all_units = units if units is not None else split_groups(universe, pairs)
        units = all_units.loc[df.index].to_numpy()
    else:
        all_units = units if units is not None else split_groups(df, pairs)
        units = all_units.loc[df.index].to_numpy()
    keep = df["keep"].astype("boolean").fillna(True).to_numpy(bool) if "keep" in df.columns else np.ones(len(df), bool)
    drawable = keep | ~_isin(units, units[keep])  # a unit whose rows are all copies still takes part
    y = df[stratify].astype(str).to_numpy() if stratify is not None else None
    info: dict[str, Any] = {"seed": int(seed), "test": test, "val": val, "stratify": stratify,
                            "holdout_source": holdout_source, "units": len(set(units)), "method": {}}
    if universe is not None:
        info["universe_rows"] = int(len(universe))
    if holdout_source is not None:
        whole = universe if universe is not None else df
        of_source = whole.get("source", pd.Series(index=whole.index, dtype=object)).eq(holdout_source)
        if not of_source.any():
            known = sorted(set(whole["source"].dropna())) if "source" in whole.columns else []
            raise CxrcurateError(f"holdout source {holdout_source!r} has no rows; sources here: {known}")
        in_source = df.get("source", pd.Series(index=df.index, dtype=object)).eq(holdout_source).to_numpy(bool)
        in_test = _isin(units, all_units[of_source])
        pulled = in_test & ~in_source
        by_source = df.loc[pulled, "source"].value_counts().to_dict()
        info.update(test=None, pulled_into_test=int(pulled.sum()), pulled_into_test_by_source=by_source,
                    method={"test": f"every unit holding a {holdout_source} row"})
        if pulled.any():
            log.warning("%d row(s) of other sources share a unit with %s and go to test too: %s",
                        pulled.sum(), holdout_source, by_source)
        if in_test.all():
            raise CxrcurateError(f"every unit holds a {holdout_source} row: nothing is left for train")
        val_frac = val
    else:
        picked, info["method"]["test"] = _pick(units, drawable, y, test, rng, "test")
        in_test = _isin(units, picked)
        val_frac = val / (1 - test)
    in_val = np.zeros(len(df), bool)
    if val > 0:
        picked, info["method"]["val"] = _pick(units, drawable & ~in_test, y, val_frac, rng, "val")
        in_val = _isin(units, picked)
    out = df.copy()
    out["split"] = np.where(in_test, "test", np.where(in_val, "val", "train")).astype(object)
    info["rows"] = {side: int((out["split"] == side).sum()) for side in SIDES}
    out.attrs["cxrcurate"] = {**df.attrs.get("cxrcurate", {}), "split": info}
    return out


@dataclass
class LeakageFinding:
    """One kind of leak: how many patients, pictures or pairs cross which sides, and examples."""

    kind: str
    description: str
    total: int = 0
    by_sides: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LeakageReport:
    """What ``leakage_report`` found; ``ok`` is True when nothing crosses sides."""

    split_column: str
    n_rows: int
    rows_per_side: dict[str, int]
    findings: dict[str, LeakageFinding]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no finding has a count."""
        return all(f.total == 0 for f in self.findings.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``ok`` included)."""
        return {"ok": self.ok, "split_column": self.split_column, "n_rows": self.n_rows, "rows_per_side":
                self.rows_per_side, "notes": self.notes, "findings": {k: vars(f) for k, f in self.findings.items()}}

    def to_text(self) -> str:
        """A plain-text report: one block per finding type, with counts per pair of sides and examples."""
        sides = ", ".join(f"{s} {n:,}" for s, n in self.rows_per_side.items())
        unsplit = self.n_rows - sum(self.rows_per_side.values())
        lines = [f"leakage check of column {self.split_column!r}: {self.n_rows:,} rows ({sides}; "
                 f"{unsplit:,} without a side)", "OK: nothing crosses sides" if self.ok else "LEAKAGE FOUND"]
        for f in self.findings.values():
            pairs = ", ".join(f"{k} {v:,}" for k, v in f.by_sides.items() if v)
            where = f"  [{pairs}; {f.rows:,} rows]" if pairs else ""
            lines.append(f"  {f.kind:15s} {f.total:6,}  {f.description}{where}")
            lines += [f"      e.g. {json.dumps(e, default=str)}" for e in f.examples]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _side_order(sides: Iterable[str]) -> list[str]:
    return sorted(set(sides), key=lambda s: (SIDES.index(s) if s in SIDES else len(SIDES), s))


def _group_finding(kind: str, description: str, keys: pd.Series, side: pd.Series, image_ids: pd.Series,
                   order: list[str]) -> LeakageFinding:
    """Keys (patients, hashes, units) whose rows lie on more than one side."""
    finding = LeakageFinding(kind, description)
    sub = pd.DataFrame({"key": keys, "side": side, "image_id": image_ids}).dropna(subset=["key", "side"])
    counts = pd.crosstab(sub["key"], sub["side"]).reindex(columns=order, fill_value=0)
    leaked = counts[(counts > 0).sum(axis=1) > 1]
    finding.total, finding.rows = len(leaked), int(leaked.to_numpy().sum())
    finding.by_sides = {f"{a}/{b}": int(((leaked[a] > 0) & (leaked[b] > 0)).sum()) for a, b in combinations(order, 2)}
    for key, n in leaked.head(MAX_EXAMPLES).iterrows():
        finding.examples.append({kind: key, "sides": {s: int(c) for s, c in n.items() if c},
                                 "image_ids": sorted(sub.loc[sub["key"] == key, "image_id"])[:6]})
    return finding


def _near_finding(df: pd.DataFrame, side: pd.Series, pairs: pd.DataFrame | None, radius: int, order: list[str],
                  pair_keys: list[str], notes: list[str]) -> LeakageFinding:
    """Near-duplicate image pairs on different sides, from a pairs table or from phash distances."""
    ids = df["image_id"].astype(str).to_numpy()
    sides = side.to_numpy(dtype=object)
    found: list[dict[str, Any]] = []
    what = "accepted pairs of the pairs table" if pairs is not None else f"image pairs with phash Hamming <= {radius}"
    finding = LeakageFinding("near_duplicate", f"{what} on different sides", by_sides=dict.fromkeys(pair_keys, 0))
    if pairs is not None:
        missing = {"image_a", "image_b", "accepted"} - set(pairs.columns)
        if missing:
            raise CxrcurateError(f"the pairs table lacks column(s) {sorted(missing)}; is it the one dedup wrote?")
        acc = pairs[pairs["accepted"].astype("boolean").fillna(False).to_numpy(bool)]
        where = dict(zip(ids, sides, strict=True))
        unknown = int((~acc["image_a"].isin(where) | ~acc["image_b"].isin(where)).sum())
        if unknown:
            notes.append(f"{unknown} accepted pair(s) name images that are not in this manifest; skipped")
        for rec in acc.to_dict("records"):
            sa, sb = where.get(rec["image_a"]), where.get(rec["image_b"])
            if isinstance(sa, str) and isinstance(sb, str) and sa != sb:
                extra = {k: rec[k] for k in ("kind", "hamming", "score") if k in rec}  # to_dict gives Python types
                found.append({"image_a": rec["image_a"], "side_a": sa, "image_b": rec["image_b"], "side_b": sb,
                              **extra})
    elif "phash" not in df.columns or df["phash"].isna().any():
        notes.append("near duplicates not checked: the phash column is missing or has nulls")
    else:
        rank = {s: k for k, s in enumerate(order)}
        for i, j, d in zip(*pairs_within(df["phash"].to_numpy().astype(np.uint64), radius), strict=True):
            sa, sb = sides[i], sides[j]
            if sa == sb or sa not in rank or sb not in rank:
                continue
            if rank[sa] > rank[sb]:  # report the earlier side first (train, val, test)
                i, j, sa, sb = j, i, sb, sa
            found.append({"image_a": ids[i], "side_a": sa, "image_b": ids[j], "side_b": sb, "hamming": int(d)})
    for rec in found:
        a, b = _side_order([rec["side_a"], rec["side_b"]])
        finding.by_sides[f"{a}/{b}"] = finding.by_sides.get(f"{a}/{b}", 0) + 1
    finding.total = len(found)
    finding.rows = len({r["image_a"] for r in found} | {r["image_b"] for r in found})
    finding.examples = sorted(found, key=lambda r: (r.get("hamming", 0), r["image_a"], r["image_b"]))[:MAX_EXAMPLES]
    return finding


def leakage_report(df: pd.DataFrame, split_column: str = "split", pairs: pd.DataFrame | str | os.PathLike | None = None,
                   radius: int = 4) -> LeakageReport:
    """Check any split (made by ``make_split`` or elsewhere) for patients and pictures on more than one side.

    Findings, each counted per pair of sides (``train/val``, ``train/test``, ``val/test``) with up to 10
    examples: ``patient`` (aliases joined), ``dup_group``, ``pixel_sha256``, ``file_sha256``, ``near_duplicate``
    (accepted pairs of ``pairs``, else phash Hamming <= ``radius``, exact copies included) and ``unit`` (a
    ``split_groups`` unit on two sides, which also catches chains through rows without a side). Each check
    stands alone, so one leak may show in several. Rows whose side is null take no part.

    Args:
        df: manifest rows with a split column.
        split_column: the column holding the side of each row.
        pairs: dedup's pairs table (DataFrame or Parquet path) with ``image_a``, ``image_b``, ``accepted``.
        radius: phash Hamming radius for near duplicates when ``pairs`` is None.

    Returns:
        A ``LeakageReport``; ``report.ok`` is True when nothing crosses sides.

    Raises:
        CxrcurateError: the split column is missing or empty, or the pairs table lacks its columns.
    """
    if split_column not in df.columns:
        raise CxrcurateError(f"no column {split_column!r} to check; make a split with `cxrcurate split`")
    if "image_id" not in df.columns:
        raise CxrcurateError("leakage_report needs an 'image_id' column; is this a cxrcurate manifest?")
    side = pd.Series([None if pd.isna(v) else str(v) for v in df[split_column]], index=df.index, dtype=object)
    if side.isna().all():
        raise CxrcurateError(f"column {split_column!r} is empty: no row has a side; make a split first")
    pairs = load_pairs(pairs)
    order = _side_order(side.dropna().astype(str))
    pair_keys = [f"{a}/{b}" for a, b in combinations(order, 2)]
    notes: list[str] = []
    ids = df["image_id"].astype(str)
    roots = _components(df, columns=(), patients=True)
    none = [None] * len(df)
    people = [([p] if not pd.isna(p) else []) + _aliases(e)
              for p, e in zip(df.get("patient_id", none), df.get("extra", none), strict=True)]
    names: dict[int, set[str]] = {}
    for root, ps in zip(roots, people, strict=True):
        names.setdefault(int(root), set()).update(ps)
    person = pd.Series(["=".join(sorted(names[int(r)])) or None for r in roots], index=df.index, dtype=object)
    findings = {"patient": _group_finding("patient", "patients (aliases joined) on more than one side", person, side,
                                          ids, order)}
    for col, what in zip(_LINK_COLUMNS, ("dup groups", "identical pixels", "identical files"), strict=True):
        keys = df[col] if col in df.columns else pd.Series(None, index=df.index, dtype=object)
        if keys.isna().all():
            notes.append(f"{col} not checked: the column is missing or empty")
        findings[col] = _group_finding(col, f"{what} on more than one side", keys, side, ids, order)
    findings["near_duplicate"] = _near_finding(df, side, pairs, radius, order, pair_keys, notes)
    findings["unit"] = _group_finding("unit", "linked units (patient, alias, dup group, hash) on more than one side",
                                      split_groups(df, pairs), side, ids, order)
    return LeakageReport(split_column, len(df), {s: int((side == s).sum()) for s in order}, findings, notes)
