"""Find copies of one picture across and within collections, group them, and choose one copy to keep.

Stages: (1) exact duplicates by ``file_sha256`` / ``pixel_sha256``; (2) near-duplicate *candidates* from the
manifest's pHash within ``radius``, from the ``knn`` nearest images by crop-tolerant descriptors of a canonical
view (``descriptors``: survives crop, zoom, padding, labels, windowing, small rotation) and from file names shared
across sources (Cohen republishes Hannover images under their Hannover ids, re-cropped and straightened);
(3) *verification* of every candidate (``features.decide`` on features computed once per image, ``store``: a
cheap gate on the strongest keypoints, then the full match), its evidence and the stage it reached kept in the
pairs table; (4) union-find into ``dup_group`` and
one ``keep=True`` per group by a documented preference; (5) a report of cross-source groups and of metadata
conflicts inside groups. A label conflict is never resolved silently: by default every copy of a picture whose
sources disagree on its label gets ``keep=False`` and is listed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CxrcurateError, UsageError
from ..manifest import need_columns, read_manifest, resolve_data_root, row_paths, write_like
from ..sources import dedup_preference
from ..tables import write_table
from .descriptors import candidate_pairs, fit_whitening, whiten
from .distributed import DaskRunner
from .featcache import feature_folder, feature_tag
from .features import GATE_MATCHES, STAGES, cpu_workers
from .groups import PAIR_COLUMNS, components, conflicts_path, pairs_path
from .hashindex import hamming, pairs_within
from .runners import LocalRunner

log = logging.getLogger(__name__)

KNOWN_LABELS = ("normal", "covid19", "pneumonia", "other")


@dataclass
class DedupOptions:
    """Knobs of ``dedup``; every one is written into the manifest's metadata."""

    radius: int = 4
    knn: int = 8  # nearest other images per image in the descriptor search (``descriptors``)
    same_name: bool = True
    min_inliers: int = 100
    min_score: float = 0.99
    strong_inliers: int = 220
    gate: int = GATE_MATCHES  # fewer matches among the strongest keypoints stop a pair before the full match (0: off)
    preference: Sequence[str] = field(default_factory=dedup_preference)  # sources' dedup_rank order
    label_conflict: str = "exclude"  # or "report": keep the preferred copy and only list the conflict
    workers: int | None = None
    engine: str = "local"  # or "dask" (``distributed``): same pairs and groups, work spread over a cluster
    scheduler: str | None = None  # Dask scheduler address; None starts a local cluster
    work_dir: str | None = None  # where per-image features are kept during the run (shared by all workers)
    search_threads: int | None = None  # threads of the candidate search (None: workers); 1 pins its float sums
    feature_cache: bool = True  # read/store each picture's features by pixel_sha256 across runs (``featcache``)
    feature_dir: str | None = None  # where (None: ``featcache.feature_folder``'s default)


@dataclass
class DedupResult:
    """The manifest with ``dup_group``/``keep`` filled, the pairs (with evidence), conflicts and a summary."""

    manifest: pd.DataFrame
    pairs: pd.DataFrame
    conflicts: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    features: dict[str, int] = field(default_factory=dict)  # reused / computed / bad entries (not in the manifest:
    # they differ between the first run and the next while the result does not)


def exact_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """A star of pairs per set of identical pixels (``kind`` = ``file`` when the bytes are identical too)."""
    rows = []
    for _, idx in df.groupby("pixel_sha256").indices.items():
        if len(idx) < 2:
            continue
        first = idx[0]
        for other in idx[1:]:
            same_file = df["file_sha256"].iat[first] == df["file_sha256"].iat[other]
            rows.append((first, other, "file" if same_file else "pixel", 0))
    return pd.DataFrame(rows, columns=["a", "b", "kind", "hamming"])


def _hash_pairs(hashes: np.ndarray, radius: int, kind: str) -> pd.DataFrame:
    i, j, d = pairs_within(hashes.astype(np.uint64), radius)
    return pd.DataFrame({"a": i, "b": j, "kind": kind, "hamming": d.astype(int)})


def _name_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Files of different sources with the same distinctive name stem (8+ characters, not only digits)."""
    stems = df["path"].str.rsplit("/", n=1).str[-1].str.rsplit(".", n=1).str[0].str.lower()
    ok = stems.str.len().ge(8) & ~stems.str.fullmatch(r"[\d\W_]+")
    rows = []
    for _, idx in stems[ok].groupby(stems[ok]).groups.items():
        pos = [df.index.get_loc(i) for i in idx]
        for x in range(len(pos)):
            for y in range(x + 1, len(pos)):
                if df["source"].iat[pos[x]] != df["source"].iat[pos[y]]:
                    rows.append((min(pos[x], pos[y]), max(pos[x], pos[y]), "name", -1))
    return pd.DataFrame(rows, columns=["a", "b", "kind", "hamming"])


def _runner(options: DedupOptions, progress: bool):
    if options.engine == "local":
        return LocalRunner(cpu_workers(options.workers), progress)
    if options.engine == "dask":
        return DaskRunner(options.scheduler, options.workers, progress)
    raise CxrcurateError(f"engine must be 'local' or 'dask', not {options.engine!r}")


def _merge_kinds(cand: pd.DataFrame) -> pd.DataFrame:
    """One row per ``(a, b)`` of pairs sorted by (a, b, rank): kinds joined by ``+`` in rank order, the first
    hamming. With numpy group bounds, not a pandas ``groupby`` lambda (which copied the frame's ``attrs`` once per
    group: 5% of the run, docs/dedup.md)."""
    ab = cand[["a", "b"]].to_numpy(np.int64)
    kinds, ham = cand["kind"].to_numpy(object), cand["hamming"].to_numpy()
    starts = np.flatnonzero(np.r_[True, (ab[1:] != ab[:-1]).any(axis=1)]) if len(ab) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(ab)]
    joined = ["+".join(dict.fromkeys(kinds[s:e])) for s, e in zip(starts, ends, strict=True)]
    return pd.DataFrame({"a": ab[starts, 0], "b": ab[starts, 1], "kind": joined, "hamming": ham[starts]})


def find_pairs(df: pd.DataFrame, data_root: Path, options: DedupOptions, progress: bool = True,
               stats: dict[str, int] | None = None) -> pd.DataFrame:
    """Every candidate pair with its kind(s) and verification evidence (positions refer to ``df`` rows).

    ``stats``, when given, receives how the per-picture features were obtained: ``features_reused`` (from the
    feature cache), ``features_computed`` (decoded here) and ``feature_cache_bad`` (stored entries that did not
    load and were recomputed).
    """
    import tempfile

    paths = [str(p) for p in row_paths(df, data_root)]  # each inside the data root (refused otherwise)
    exact = exact_pairs(df)
    parts = [exact, _hash_pairs(df["phash"].to_numpy(np.uint64), options.radius, "phash")]
    if options.same_name:
        parts.append(_name_pairs(df))
    runner = _runner(options, progress)
    with tempfile.TemporaryDirectory(prefix="cxrcurate-dedup-", dir=options.work_dir) as store:
        if options.feature_cache:
            raw, ok, counts = runner.fingerprint(paths, store, df["pixel_sha256"].tolist(),
                                                 feature_folder(options.feature_dir), feature_tag())
        else:
            raw, ok, counts = runner.fingerprint(paths, store)
        if stats is not None:
            stats.update(zip(("features_reused", "features_computed", "feature_cache_bad"),
                             (int(c) for c in counts), strict=True))
        if not ok.all():
            bad = [paths[i] for i in np.flatnonzero(~ok)]
            runner.close()
            raise CxrcurateError(f"{len(bad)} image(s) can no longer be decoded, e.g. {bad[0]}; rebuild the manifest")
        if options.knn > 0 and len(df) > 1:
            white = whiten(raw, *fit_whitening(raw))
            ann = (runner.candidates(white, options.knn) if options.search_threads is None else
                   candidate_pairs(white, options.knn, threads=options.search_threads))
            parts.append(pd.DataFrame({"a": ann[:, 0], "b": ann[:, 1], "kind": "ann", "hamming": -1}))
        del raw
        cand = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else exact
        if cand.empty:
            runner.close()
            return pd.DataFrame(columns=["a", "b", *PAIR_COLUMNS])
        cand = cand[cand["a"] != cand["b"]]
        order = {"file": 0, "pixel": 1, "phash": 2, "name": 3, "ann": 4}
        cand = _merge_kinds(cand.assign(rank=cand["kind"].map(order)).sort_values(["a", "b", "rank"]))
        ph = df["phash"].to_numpy(np.uint64)
        cand["hamming"] = hamming(ph[cand["a"]], ph[cand["b"]]).astype(int)
        is_exact = cand["kind"].str.startswith(("file", "pixel")).to_numpy()
        todo = cand.loc[~is_exact, ["a", "b"]].to_numpy(np.int64)
        verdicts = runner.verify(todo, store, (options.min_inliers, options.min_score, options.strong_inliers,
                                               options.gate))
        runner.close()
    cand["inliers"], cand["score"], cand["accepted"], cand["stage"] = -1, 1.0, True, "exact"
    cand.loc[~is_exact, "inliers"] = verdicts[:, 0].astype(int)
    cand.loc[~is_exact, "score"] = verdicts[:, 1]
    cand.loc[~is_exact, "accepted"] = verdicts[:, 2].astype(bool)
    cand.loc[~is_exact, "stage"] = np.asarray(STAGES, dtype=object)[verdicts[:, 3].astype(int)]
    cand["image_a"] = df["image_id"].to_numpy()[cand["a"]]
    cand["image_b"] = df["image_id"].to_numpy()[cand["b"]]
    return cand.reset_index(drop=True)


def _richness(df: pd.DataFrame) -> pd.Series:
    cols = [df["patient_id"].notna(), df["age_years"].notna(), df["sex"].notna(), df["view"] != "unknown",
            df["url"].notna(), df["license"].notna()]
    return sum(c.astype(int) for c in cols)


def assign_groups(df: pd.DataFrame, pairs: pd.DataFrame, options: DedupOptions) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fill ``dup_group``/``keep`` from accepted pairs; return the manifest and the conflicts table."""
    roots = components(len(df), pairs.loc[pairs["accepted"].astype(bool), ["a", "b"]].itertuples(index=False))
    out = df.copy()
    ids = out["image_id"].to_numpy()
    first_id = pd.Series(ids).groupby(roots).transform("min").to_numpy()
    out["dup_group"] = ["g" + hashlib.sha1(x.encode()).hexdigest()[:12] for x in first_id]
    pref = {s: i for i, s in enumerate(options.preference)}
    rank = pd.DataFrame({
        "unknown_label": (out["label"] == "unknown").astype(int),
        "source_rank": out["source"].map(pref).fillna(len(pref)),
        "pixels": -(out["width"].astype(np.int64) * out["height"].astype(np.int64)),
        "richness": -_richness(out),
        "image_id": out["image_id"],
        "group": out["dup_group"],
    })
    best = rank.sort_values(["group", "unknown_label", "source_rank", "pixels", "richness", "image_id"])
    keep_ids = set(best.groupby("group")["image_id"].first())
    out["keep"] = out["image_id"].isin(keep_ids)
    conflicts = find_conflicts(out)
    if options.label_conflict == "exclude" and not conflicts.empty:
        bad = conflicts.loc[conflicts["field"] == "label", "dup_group"]
        out.loc[out["dup_group"].isin(bad), "keep"] = False
    elif options.label_conflict not in {"exclude", "report"}:
        raise CxrcurateError(f"label_conflict must be 'exclude' or 'report', not {options.label_conflict!r}")
    return out, conflicts


def find_conflicts(df: pd.DataFrame) -> pd.DataFrame:
    """Groups whose copies disagree on label (known labels only), pediatric status, sex, or age (> 2 years)."""
    rows = []
    multi = df[df.duplicated("dup_group", keep=False)]
    for group, g in multi.groupby("dup_group"):
        labels = sorted(set(g["label"]) & set(KNOWN_LABELS))
        if len(labels) > 1:
            rows.append((group, "label", labels, g))
        ped = set(g["pediatric"].dropna())
        if len(ped) > 1:
            rows.append((group, "pediatric", sorted(ped), g))
        sexes = sorted(set(g["sex"].dropna()))
        if len(sexes) > 1:
            rows.append((group, "sex", sexes, g))
        ages = g["age_years"].dropna()
        if len(ages) > 1 and ages.max() - ages.min() > 2:
            rows.append((group, "age", [float(ages.min()), float(ages.max())], g))
    return pd.DataFrame([{
        "dup_group": group, "field": f, "values": json.dumps(v, default=str),
        "images": json.dumps(dict(zip(g["image_id"], g[{"label": "label", "pediatric": "pediatric", "sex": "sex",
                                                       "age": "age_years"}[f]].astype(str), strict=True))),
        "sources": ",".join(sorted(set(g["source"]))),
    } for group, f, v, g in rows], columns=["dup_group", "field", "values", "images", "sources"])


def cross_source_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per pair of sources: how many duplicate groups hold pictures of both (which collection copied which)."""
    multi = df[df.duplicated("dup_group", keep=False)]
    counts: dict[tuple[str, str], int] = {}
    for _, g in multi.groupby("dup_group"):
        s = sorted(set(g["source"]))
        for i in range(len(s)):
            for j in range(i, len(s)):
                if i != j or (g["source"] == s[i]).sum() > 1:
                    counts[(s[i], s[j])] = counts.get((s[i], s[j]), 0) + 1
    return pd.DataFrame([{"source_a": a, "source_b": b, "groups": n} for (a, b), n in sorted(counts.items())],
                        columns=["source_a", "source_b", "groups"])


def dedup(df: pd.DataFrame, data_root: str | os.PathLike, options: DedupOptions | None = None,
          progress: bool = True) -> DedupResult:
    """Deduplicate a manifest DataFrame (see the module docstring); the input is not modified.

    Raises:
        CxrcurateError: an image can no longer be decoded, or an option is invalid.
    """
    options = options or DedupOptions()
    if not 0 <= options.radius <= 32:
        raise CxrcurateError("radius must be between 0 and 32 (pHash bits); see docs/dedup.md for calibration")
    attrs = copy.deepcopy(df.attrs)
    df = df.reset_index(drop=True)
    df.attrs = {}  # pandas deep-copies attrs into every group a groupby yields: 5% of the run (docs/dedup.md)
    stats: dict[str, int] = {}
    pairs = find_pairs(df, Path(data_root), options, progress, stats)
    out, conflicts = assign_groups(df, pairs, options)
    sizes = out.groupby("dup_group").size()
    by_kind = pairs.loc[pairs["accepted"].astype(bool), "kind"].str.split("+").str[0].value_counts()
    summary = {
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.__dict__.items()},
        "images": len(out), "groups": int(len(sizes)), "groups_with_copies": int((sizes > 1).sum()),
        "copies_not_kept": int((~out["keep"]).sum()),
        "candidate_pairs": len(pairs), "accepted_pairs": int(pairs["accepted"].sum()),
        "accepted_by_kind": {k: int(v) for k, v in by_kind.items()},
        "label_conflict_groups": int((conflicts["field"] == "label").sum()) if len(conflicts) else 0,
        "cross_source": cross_source_table(out).to_dict("records"),
    }
    out.attrs = attrs
    return DedupResult(out, pairs[PAIR_COLUMNS], conflicts, summary, stats)


def dedup_manifest(manifest: str | os.PathLike, out: str | os.PathLike | None = None,
                   data_root: str | os.PathLike | None = None, options: DedupOptions | None = None,
                   progress: bool = True, in_place: bool = False) -> tuple[Path, DedupResult]:
    """Deduplicate a manifest file and write it to ``out`` (or over itself with ``in_place``) with
    ``dup_group``/``keep`` filled and every other column kept, plus ``<name>.pairs.parquet`` (every candidate pair
    with its evidence) and ``<name>.conflicts.parquet`` beside it.

    A release table (``open.parquet``) is read as a manifest; it carries no pixel fingerprints, so it is refused
    with the way forward (``cxrcurate materialise`` over your files).

    Raises:
        UsageError: neither ``out`` nor ``in_place``, or both.
        CxrcurateError: the data root is unknown or an image is missing; SchemaError: not a manifest, or a column
            dedup needs is empty.
    """
    target = output_path(manifest, out, in_place)
    df = read_manifest(manifest)
    if df.empty:
        raise CxrcurateError(f"{manifest} has no rows: nothing to deduplicate. See the dropped table beside it "
                             "(manifest.dropped.parquet) for why every input was left out")
    need_columns(df, ("file_sha256", "pixel_sha256", "phash", "width", "height"), "dedup",
                 "fill them with `cxrcurate build-manifest` (your folders) or `cxrcurate materialise` (a release "
                 "over your files)")
    root = resolve_data_root(df, data_root)
    result = dedup(df, root, options, progress)
    write_like(result.manifest, target, {**df.attrs.get("cxrcurate", {}), "dedup": result.summary})
    write_table(result.pairs, pairs_path(target), "pairs", {"dedup": result.summary["options"]})
    write_table(result.conflicts, conflicts_path(target), "conflicts")
    return target, result


def output_path(table: str | os.PathLike, out: str | os.PathLike | None, in_place: bool) -> Path:
    """Where a command that rewrites ``table`` writes: ``out``, or ``table`` itself only with ``in_place``.

    Raises:
        UsageError: neither is given (nothing is overwritten by surprise), or both.
    """
    if out is not None and in_place:
        raise UsageError(f"give either --out FILE or --in-place, not both (input {table})")
    if out is None and not in_place:
        raise UsageError(f"say where to write: --out FILE (a new table; {table} stays as it is) or --in-place "
                         f"(rewrite {table}, keeping every column this command does not own)")
    return Path(table) if in_place else Path(out)
