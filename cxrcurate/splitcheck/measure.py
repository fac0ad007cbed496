"""What a leak is worth, without training a network: nearest neighbours by image content across a split.

Why: a model can only exploit a leak it can find, and the cheapest model that finds copies and patients is a
nearest-neighbour one. So for a split (given, or made here per image) this measures, on its train and test rows:

- for each test row its nearest train row by image content (dedup's crop-tolerant descriptor of the whole view,
  whitened; or the pHash bits when the files are not at hand) and whether that neighbour is the same picture (dup
  group, else pixel/file hash) or the same unit (patient, alias or linked picture): the share of test rows with a
  copy / their own unit in train, and the share whose nearest neighbour is one;
- a k-NN classifier's test score (COVID-19 vs the rest; ROC AUC, and balanced accuracy with COVID-19 called when
  its distance-weighted share among the k neighbours exceeds its share in train) under the given split and
  under a unit-aware split of the same rows (``splits.make_split``: whole units, same test share, stratified by the
  label), with unit-bootstrap 95% CIs; the difference is the *memorisation gain* the split hands a model;
- the leaked rows' own worth, free of the noise of drawing another split: the same test rows scored by the k-NN
  of the given train side and by one without the train rows of the test side's units (paired resamples);
- confounds, no training: the label predicted by the source alone (train rates applied to test), and the source
  predicted by image content (k-NN under the unit-aware split), each against its chance level.

A figure that the data cannot carry (one class, one unit or source, every resample alike) is reported as
"insufficient evidence" with the reason, never as a number. ``measure_leak`` is the library entry point (the
bench comparison and the report can call it on a run's split); ``LeakMeasure.to_dict`` is its JSON form.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..dedup.descriptors import SIDE, fit_whitening, raw_descriptors, whiten
from ..errors import CxrcurateError
from ..imageio import decode_image
from ..manifest import safe_path
from ..splits import make_split, split_groups
from .figures import Figure, boot, figure, knn, metric, paired_boot

log = logging.getLogger(__name__)
TASK_LABELS = ("normal", "pneumonia", "other", "covid19")  # COVID-19 (1) vs the rest (0); unknown takes no part


@dataclass
class LeakMeasure:
    """What ``measure_leak`` found."""

    rows: dict[str, int]
    neighbours: dict[str, Any]
    given: dict[str, Figure]
    unit_aware: dict[str, Figure]
    gain: dict[str, Figure]
    confounds: dict[str, Figure]
    embedding: str
    notes: list[str] = field(default_factory=list)
    leaked_worth: dict[str, Figure] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; a figure without evidence has ``value`` None and ``insufficient`` set."""
        figs = {k: {n: {**vars(f), "verdict": f.verdict()} for n, f in getattr(self, k).items()}
                for k in ("given", "unit_aware", "gain", "leaked_worth", "confounds")}
        return {"rows": self.rows, "embedding": self.embedding, "neighbours": self.neighbours, **figs,
                "notes": self.notes}

    def summary(self) -> str:
        """One line for a comparison table or a report's summary box: copies and own units of the test rows in
        train, and the k-NN's memorisation gain in ROC AUC (or why it cannot be shown)."""
        n, parts = self.neighbours, []
        if n.get("test_rows"):
            parts.append(f"{n['has_copy'] / n['test_rows']:.0%} of test rows have a copy in train, "
                         f"{n['has_unit'] / n['test_rows']:.0%} their own unit")
        gain = self.gain.get("roc_auc")
        if gain is not None:
            parts.append(f"k-NN {gain.text()}")
        return "; ".join(parts) or "nothing to measure"

    def to_text(self) -> str:
        n = self.neighbours
        lines = [f"leak measure ({self.embedding} embedding; k-NN, COVID-19 vs the rest): " +
                 ", ".join(f"{k} {v:,}" for k, v in self.rows.items())]
        if n.get("test_rows"):
            lines += [f"  test rows with a copy of their picture in train: {n['has_copy']:,} of {n['test_rows']:,} "
                      f"({n['has_copy'] / n['test_rows']:.1%}); with their unit (patient or linked picture): "
                      f"{n['has_unit']:,} ({n['has_unit'] / n['test_rows']:.1%})",
                      f"  nearest train row is a copy: {n['nn_copy']:,} ({n['nn_copy'] / n['test_rows']:.1%}); "
                      f"is of the same unit: {n['nn_unit']:,} ({n['nn_unit'] / n['test_rows']:.1%})"]
        for title, key in (("given split", "given"), ("unit-aware split of the same rows", "unit_aware"),
                           ("memorisation gain (given - unit-aware)", "gain"),
                           ("the leaked train rows' worth (given train vs without the test units' rows; same test "
                            "rows, paired)", "leaked_worth"), ("confounds (no training)", "confounds")):
            lines.append(f"  {title}:")
            lines += [f"    {f.text()}" for f in getattr(self, key).values()]
        lines += [f"  note: {x}" for x in self.notes]
        return "\n".join(lines)


def content_vectors(df: pd.DataFrame, root: str | os.PathLike | None = None, kind: str = "auto",
                    progress: bool = False) -> tuple[np.ndarray, str, np.ndarray]:
    """Unit-norm content vectors of the rows, the kind used, and which rows have one.

    ``descriptor``: dedup's whole-view descriptor (``dedup.descriptors.raw_descriptors``), whitened on these rows;
    needs the files under ``root``. ``phash``: the 64 pHash bits as +-1 (no decoding). ``auto``: descriptor when
    ``root`` is given, else phash.
    """
    if kind == "auto":
        kind = "descriptor" if root is not None else "phash"
    if kind == "phash":
        if "phash" not in df.columns:
            raise CxrcurateError("the manifest has no phash column; give the data root for image descriptors")
        ok = df["phash"].notna().to_numpy()
        h = df["phash"].fillna(0).astype("uint64").to_numpy()
        bits = ((h[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).astype(np.float32) * 2 - 1
        return bits / 8.0, kind, ok
    if kind != "descriptor":
        raise CxrcurateError(f"unknown embedding {kind!r}; choose auto, descriptor or phash")
    if root is None:
        raise CxrcurateError("the descriptor embedding decodes the images: give the data root (--data-root), or use "
                             "--embedding phash")
    from tqdm import tqdm

    raw = np.zeros((len(df), SIDE * SIDE), np.float32)
    ok = np.zeros(len(df), bool)
    for i, (iid, rel) in enumerate(tqdm(list(zip(df["image_id"], df["path"], strict=True)), disable=not progress,
                                        desc="content vectors", unit="img")):
        try:
            raw[i] = raw_descriptors(decode_image(safe_path(root, rel, str(iid))).pixels)[0]
            ok[i] = True
        except Exception as exc:  # noqa: BLE001 - a file gone or changed: that row takes no part, and is counted
            log.warning("%s: no content vector (%s)", iid, exc)
    mean, proj = fit_whitening(raw[ok][:, None, :] if ok.any() else raw[:1, None, :])
    return whiten(raw, mean, proj), kind, ok


def _scores(prefix: str, x: np.ndarray, y: np.ndarray, units: np.ndarray, train: np.ndarray, test: np.ndarray,
            k: int, n_boot: int, seed: int) -> tuple[dict[str, Figure], dict[str, np.ndarray], Any]:
    """Figures of a k-NN trained on ``train`` and tested on ``test``, their resamples, and ``(p, cut)`` (None when
    there is no evidence)."""
    why = None
    if train.sum() == 0 or test.sum() == 0:
        why = "a side is empty"
    elif len(set(y[train].tolist())) < 2:
        why = "the train side holds one class"
    elif len(set(y[test].tolist())) < 2:
        why = "the test side holds one class"
    elif len(set(units[test].tolist())) < 2:
        why = "the test side holds one unit"
    figs, boots = {}, {}
    p = knn(x[train], y[train], x[test], k) if why is None else None
    cut = float(y[train].mean()) if why is None else 0.5  # COVID-19 when its share among the neighbours beats train's
    for m, chance in (("roc_auc", 0.5), ("balanced_accuracy", 0.5)):
        value = metric(m, y[test], p, cut=cut) if p is not None else float("nan")
        boots[m] = (boot(m, y[test], p, units[test], n_boot, seed, cut=cut) if p is not None
                    else np.full(n_boot, np.nan))
        one = m == "balanced_accuracy" and p is not None and len(set((p >= cut).tolist())) < 2
        figs[m] = figure(f"{prefix} {m}", value, boots[m], chance,
                         why or ("the k-NN gives every test row the same class" if one else None),
                         len(set(units[test].tolist())))
    return figs, boots, (p, cut) if p is not None else None


def measure_leak(df: pd.DataFrame, side: pd.Series, vectors: np.ndarray | None = None, root: str | os.PathLike |
                 None = None, pairs: pd.DataFrame | None = None, embedding: str = "auto", k: int = 5, seed: int = 0,
                 n_boot: int = 1000, progress: bool = False) -> LeakMeasure:
    """Measure what the split ``side`` (aligned with ``df.index``: train/test; other values take no part) is worth
    to a nearest-neighbour model; see the module docstring.

    Args:
        df: the FULL manifest (units are computed on all of it).
        side: each row's side.
        vectors: content vectors of ``df``'s rows (else computed by ``content_vectors``).
        root: data root for the image descriptors (else the pHash embedding).
        pairs: dedup's pairs table (its accepted pairs join units).
        k, seed, n_boot: neighbours, seed of the unit-aware split and of the bootstrap, resamples.
    """
    side = pd.Series(side, index=df.index).astype(object)
    units_all = split_groups(df, pairs)
    picture = df["image_id"].astype(str)
    for col in ("pixel_sha256", "file_sha256", "dup_group"):
        if col in df.columns:
            picture = df[col].astype(object).where(df[col].notna(), picture)
    use = side.isin(["train", "test"]).to_numpy().copy()
    notes = []
    if side.eq("val").any():
        notes.append(f"{int(side.eq('val').sum()):,} val rows take no part (train vs test is measured)")
    if vectors is None:
        vectors, embedding, ok = content_vectors(df[use], root, embedding, progress)
        full = np.zeros((len(df), vectors.shape[1]), np.float32)
        full[use], has = vectors, np.zeros(len(df), bool)
        has[use] = ok
        vectors = full
    else:
        has, embedding = np.ones(len(df), bool), embedding if embedding != "auto" else "given"
    if (use & ~has).any():
        notes.append(f"{int((use & ~has).sum()):,} row(s) without a content vector take no part")
    use &= has
    tr, te = use & side.eq("train").to_numpy(), use & side.eq("test").to_numpy()
    rows = {"train": int(tr.sum()), "test": int(te.sum())}
    nb: dict[str, Any] = {"test_rows": int(te.sum())}
    if tr.any() and te.any():
        sims = vectors[te] @ vectors[tr].T
        nn = np.flatnonzero(tr)[sims.argmax(axis=1)]
        pic, unit = picture.to_numpy(), units_all.to_numpy()
        nb.update(has_copy=int(pd.Series(pic[te]).isin(set(pic[tr])).sum()),
                  has_unit=int(pd.Series(unit[te]).isin(set(unit[tr])).sum()),
                  nn_copy=int((pic[nn] == pic[te]).sum()), nn_unit=int((unit[nn] == unit[te]).sum()))
    labels = df["label"].astype(str) if "label" in df.columns else pd.Series("unknown", index=df.index)
    task = use & labels.isin(TASK_LABELS).to_numpy()
    if (use & ~task).any():
        notes.append(f"{int((use & ~task).sum()):,} row(s) labelled outside {list(TASK_LABELS)} take no part in "
                     "the scores")
    y = (labels == "covid19").astype(int).to_numpy()
    units = units_all.to_numpy()
    given, gb, pred = _scores("given", vectors, y, units, tr & task, te & task, k, n_boot, seed)
    worth = _leaked_worth(vectors, y, units, tr & task, te & task, pred, k, n_boot, seed, rows)
    # the unit-aware split of the same rows: same test share, whole units, stratified by the task label
    unit_aware, ub = {}, {}
    rows_t = df[task].assign(_y=y[task])
    why = None
    try:
        share = (te & task).sum() / max(1, task.sum())
        made = make_split(rows_t, test=float(share), val=0.0, seed=seed, stratify="_y", universe=df, units=units_all)
        ua = pd.Series(made["split"].to_numpy(), index=made.index).reindex(df.index)
        utr, ute = (ua == "train").to_numpy() & task, (ua == "test").to_numpy() & task
        rows.update(unit_aware_train=int(utr.sum()), unit_aware_test=int(ute.sum()))
        unit_aware, ub, _ = _scores("unit-aware", vectors, y, units, utr, ute, k, n_boot, seed + 1)
    except CxrcurateError as exc:
        why = f"no unit-aware split of these rows: {exc}"
        utr = ute = np.zeros(len(df), bool)
        unit_aware = {m: Figure(f"unit-aware {m}", insufficient=why) for m in ("roc_auc", "balanced_accuracy")}
    gain = {}
    for m in ("roc_auc", "balanced_accuracy"):
        bad = given[m].insufficient or unit_aware[m].insufficient
        diff = (given[m].value - unit_aware[m].value) if not bad else float("nan")
        gain[m] = figure(f"gain {m}", diff, gb[m] - ub[m] if not bad else np.full(n_boot, np.nan), None,
                         "a side's score has no evidence" if bad else None,
                         min(len(set(units[te & task].tolist())), len(set(units[ute].tolist()))))
    confounds = _confounds(df, vectors, y, units, tr & task, te & task, utr, ute, k, n_boot, seed)
    return LeakMeasure(rows, nb, given, unit_aware, gain, confounds, embedding, notes, worth)


def _leaked_worth(x: np.ndarray, y: np.ndarray, units: np.ndarray, tr: np.ndarray, te: np.ndarray, pred: Any, k: int,
                  n_boot: int, seed: int, rows: dict[str, int]) -> dict[str, Figure]:
    """The given k-NN vs one trained without the train rows of the test side's units, on the SAME test rows (paired
    resamples): what the leaked rows themselves are worth, free of the noise of drawing another split."""
    purged = tr & ~pd.Series(units).isin(set(units[te].tolist())).to_numpy()
    rows["purged_train"] = int(purged.sum())
    names = {m: f"leaked train rows' worth {m}" for m in ("roc_auc", "balanced_accuracy")}
    why = None
    if pred is None:
        why = "the given split's score has no evidence"
    elif purged.sum() == tr.sum():
        why = "no train row shares a unit with the test side: nothing leaked to remove"
    elif len(set(y[purged].tolist())) < 2:
        why = "without the leaked rows the train side holds one class"
    if why:
        return {m: Figure(n, insufficient=why) for m, n in names.items()}
    p, cut = pred
    q, qcut = knn(x[purged], y[purged], x[te], k), float(y[purged].mean())
    n_units = len(set(units[te].tolist()))
    return {m: figure(n, metric(m, y[te], p, cut=cut) - metric(m, y[te], q, cut=qcut),
                      paired_boot(m, y[te], p, q, units[te], n_boot, seed + 2, cut, qcut), None, units=n_units)
            for m, n in names.items()}


def _confounds(df: pd.DataFrame, x: np.ndarray, y: np.ndarray, units: np.ndarray, tr: np.ndarray, te: np.ndarray,
               utr: np.ndarray, ute: np.ndarray, k: int, n_boot: int, seed: int) -> dict[str, Figure]:
    """Label from source alone (train rates on test, ROC AUC vs 0.5); source from content (k-NN under the
    unit-aware split, balanced accuracy vs 1/sources)."""
    src = df["source"].astype(str).to_numpy() if "source" in df.columns else np.full(len(df), "?")
    out = {}
    name = "label from source alone (roc_auc)"
    if len(set(src[tr | te].tolist())) < 2:
        out["label_from_source"] = Figure(name, chance=0.5, insufficient="one source only")
    elif len(set(y[te].tolist())) < 2 or not tr.any():
        out["label_from_source"] = Figure(name, chance=0.5, insufficient="the test side holds one class")
    else:
        rate = pd.Series(y[tr]).groupby(src[tr]).agg(["sum", "count"])
        prior = y[tr].mean()
        p = np.array([(rate.loc[s, "sum"] + prior) / (rate.loc[s, "count"] + 1) if s in rate.index else prior
                      for s in src[te]])
        out["label_from_source"] = figure(name, metric("roc_auc", y[te], p),
                                          boot("roc_auc", y[te], p, units[te], n_boot, seed), 0.5,
                                          units=len(set(units[te].tolist())))
    name = "source from image content (balanced_accuracy, unit-aware split)"
    both = sorted(set(src[utr].tolist()) & set(src[ute].tolist()))
    if len(both) < 2:
        out["source_from_content"] = Figure(name, insufficient="fewer than two sources on both sides")
        return out
    keep_tr, keep_te = utr & np.isin(src, both), ute & np.isin(src, both)
    codes = {s: i for i, s in enumerate(both)}
    ys = np.array([codes.get(s, -1) for s in src])
    pred = knn(x[keep_tr], ys[keep_tr], x[keep_te], k, proba=False)
    value = metric("balanced_accuracy", ys[keep_te], pred, hard=True)
    boots = boot("balanced_accuracy", ys[keep_te], pred, units[keep_te], n_boot, seed, hard=True)
    out["source_from_content"] = figure(name, value, boots, round(1 / len(both), 4),
                                        units=len(set(units[keep_te].tolist())))
    return out


def measure_split_table(df: pd.DataFrame, split: pd.DataFrame | str | os.PathLike, **kwargs: Any) -> LeakMeasure:
    """``measure_leak`` for a split stored as a table of ``image_id`` and ``split`` (a bench run's
    ``run-*/split.parquet``), mapped onto the FULL manifest ``df``; ``kwargs`` go to ``measure_leak``.

    Raises:
        CxrcurateError: the table lacks ``image_id`` or ``split``, or none of its ids is in ``df``.
    """
    table = split if isinstance(split, pd.DataFrame) else pd.read_parquet(split)
    missing = {"image_id", "split"} - set(table.columns)
    if missing:
        raise CxrcurateError(f"the split table lacks column(s) {sorted(missing)}; give image_id and split")
    side = df["image_id"].map(table.drop_duplicates("image_id").set_index("image_id")["split"])
    if side.isna().all():
        raise CxrcurateError("no image_id of the split table is in the manifest; is it the manifest the run used?")
    return measure_leak(df, side, **kwargs)


def per_image_split(df: pd.DataFrame, test: float = 0.2, seed: int = 0) -> pd.Series:
    """A seeded per-image train/test split of every row with a task label, stratified by COVID-19 vs the rest:
    what a random split of files does (LEAKY on purpose; it is the reference a leak is measured against)."""
    from sklearn.model_selection import train_test_split

    labels = df["label"].astype(str)
    rows = np.flatnonzero(labels.isin(TASK_LABELS).to_numpy())
    y = (labels.iloc[rows] == "covid19").to_numpy()
    tr, te = train_test_split(rows, test_size=test, stratify=y, random_state=seed)
    side = np.full(len(df), None, dtype=object)
    side[tr], side[te] = "train", "test"
    return pd.Series(side, index=df.index, name="split")
