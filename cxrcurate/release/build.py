"""``cxrcurate release build``: the one command that writes a release folder, deterministically.

From a data root holding the five open collections (resized copies are fine) and ``ORIGINALS.csv`` (which maps
every copy to the public repository, commit and path it came from, with the ORIGINAL file's sha256, size,
width, height and mode), it builds the manifest, finds duplicates, measures quality flags, makes the standard
split and checks it, then writes every table through ``tables.write_table`` (rows sorted, floats rounded, no
timestamps, zstd Parquet) with the math libraries held to one thread (``pinned_threads``), so the same input gives
the same bytes on any machine, under any load, with any ``--workers``:

- ``open.parquet`` (kind ``release``: the manifest's columns plus ``schema.EXTRA_FIELDS``): one row per image,
  carrying the original file's identity (never the copy's), labels, patients, pediatric flags,
  ``dup_group``/``keep``, ``unit``, ``split`` and the quality flags;
- ``open.pairs.parquet`` (accepted duplicate pairs, with the columns and evidence ``dedup`` writes),
  ``open.conflicts.parquet``,
  ``open.dropped.parquet`` (every file or row left out, with the reason);
- ``nih-cxr14.parquet``: ChestX-ray14 metadata only (no files; from the source's metadata-only mode,
  ``NIHChestXray14.metadata_table``), with labels, patients, pediatric flags and the standard split by patient;
- ``release.json`` (counts, split settings, leakage report, flag precision/recall, and the sha256 of every other
  file of the folder, which ``verify`` checks first), ``README.md`` (the card) and ``croissant.json`` (the Croissant
  description of the files, ``croissant.py``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..build import build_manifest
from ..dedup import PAIR_COLUMNS, DedupOptions, dedup
from ..errors import CxrcurateError
from ..fetch.download import file_sha256
from ..imageio import decode_image
from ..manifest import read_dropped, read_manifest
from ..sources import get_source
from ..splits import leakage_report, make_split, split_groups
from ..tables import write_table
from .card import flag_scores, render_card
from .croissant import write_croissant
from .quality import FLAGS, Thresholds, flags, measure
from .schema import FACTS, TABLE_FILES

log = logging.getLogger(__name__)

VERSION = "v1"
OPEN_SOURCES = ("covid-cxnet", "cohen", "hannover", "figure1", "actualmed")
SPLIT = {"test": 0.2, "val": 0.1, "seed": 0, "stratify": "label"}
NIH_FOLDER = "nih-cxr14"
# 8-bit modes of the originals; a 16-bit original would be "I;16" (none in v1).
_BITS = {"1": 1, "L": 8, "P": 8, "RGB": 8, "RGBA": 8, "LA": 8, "CMYK": 8, "I;16": 16, "I": 32}


@contextmanager
def pinned_threads() -> Iterator[None]:
    """BLAS/LAPACK and OpenMP (numpy, scipy, faiss), OpenCV and faiss held to one thread, restored afterwards.

    A float reduction split over threads is summed in another order with another thread count, so its last bits
    (and, near a tie or a rounding boundary, a decision or a written digit) would depend on the machine. Worker
    processes still share the per-image and per-pair work, whose results do not depend on how it is shared.
    """
    import cv2
    import faiss
    from threadpoolctl import threadpool_limits

    cv_threads, faiss_threads = cv2.getNumThreads(), faiss.omp_get_max_threads()
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        cv2.setNumThreads(cv_threads)
        faiss.omp_set_num_threads(faiss_threads)


def read_originals(data: Path) -> pd.DataFrame:
    """``ORIGINALS.csv`` of a data root, keyed by the copy's path.

    Raises:
        CxrcurateError: the file is missing or lacks a column.
    """
    path = data / "ORIGINALS.csv"
    if not path.is_file():
        raise CxrcurateError(f"{path} not found: a release is built from a data root with ORIGINALS.csv")
    df = pd.read_csv(path, dtype=str)
    need = {"path", "repo", "commit", "repo_path", "original_sha256", "original_bytes", "original_width",
            "original_height", "original_mode"}
    if need - set(df.columns):
        raise CxrcurateError(f"{path} lacks column(s) {sorted(need - set(df.columns))}")
    return df.set_index("path")


def _open_frame(data: Path, workers: int | None, progress: bool) -> tuple[pd.DataFrame, pd.DataFrame, Any, dict]:
    with tempfile.TemporaryDirectory(prefix="cxrcurate-release-") as tmp:
        res = build_manifest([(s, data / s) for s in OPEN_SOURCES], tmp, data_root=data, workers=workers,
                             progress=progress)
        df = read_manifest(res.manifest)
        dropped = read_dropped(res.dropped)
    result = dedup(df, data, DedupOptions(workers=workers, search_threads=1), progress=progress)
    sources = {n: {k: v for k, v in s.items() if k in ("title", "homepage", "license", "records", "dropped", "notes")}
               for n, s in res.info["sources"].items()}
    return result.manifest, dropped, result, sources


def _quality(df: pd.DataFrame, data: Path, orig: pd.DataFrame, t: Thresholds) -> pd.DataFrame:
    rows = []
    for path, view in zip(df["path"], df["view"], strict=True):
        m = measure(decode_image(data / path).pixels)
        o = orig.loc[path]
        rows.append({**flags(m, int(o["original_width"]), int(o["original_height"]), view, t),
                     "quality": json.dumps(m, sort_keys=True)})
    return pd.DataFrame(rows, index=df.index)


def build_open(data: Path, workers: int | None = None, progress: bool = True,
               thresholds: Thresholds | None = None) -> dict[str, Any]:
    """The open-collections part of a release as DataFrames (see the module docstring) plus its facts."""
    thresholds = thresholds or Thresholds()
    orig = read_originals(data)
    df, dropped, result, sources = _open_frame(data, workers, progress)
    unknown = sorted(set(df["path"]) - set(orig.index))
    if unknown:
        raise CxrcurateError(f"{len(unknown)} image(s) have no ORIGINALS.csv row, e.g. {unknown[:3]}")
    df = pd.concat([df, _quality(df, data, orig, thresholds)], axis=1)
    accepted = result.pairs[result.pairs["accepted"].astype(bool)].reset_index(drop=True)
    df = make_split(df, test=SPLIT["test"], val=SPLIT["val"], seed=SPLIT["seed"], stratify=SPLIT["stratify"])
    split_info = df.attrs["cxrcurate"]["split"]
    df["unit"] = split_groups(df)
    leak = leakage_report(df, pairs=accepted)
    if not leak.ok:
        raise CxrcurateError("the standard split leaks:\n" + leak.to_text())

    o = orig.loc[df["path"]]
    new_rel = pd.Series(o["repo_path"].to_numpy(), index=df.index)
    rename = dict(zip(df["image_id"], df["source"] + ":" + new_rel, strict=True))
    path_map = {p: f"{p.split('/', 1)[0]}/{r['repo_path']}" for p, r in orig.iterrows()}
    out = pd.DataFrame({
        "image_id": df["image_id"].map(rename), "source": df["source"],
        "source_record": [s if s != old.split(":", 1)[1] else nr
                          for s, old, nr in zip(df["source_record"], df["image_id"], new_rel, strict=True)],
        "patient_id": df["patient_id"], "path": df["source"] + "/" + new_rel,
        "repository": o["repo"].to_numpy(), "commit": o["commit"].to_numpy(), "repo_path": new_rel,
        "url": df["url"], "license": df["license"], "label": df["label"], "finding_raw": df["finding_raw"],
        "view": df["view"], "frontal": df["frontal"], "modality": df["modality"], "age_years": df["age_years"],
        "sex": df["sex"], "pediatric": df["pediatric"], "pediatric_reason": df["pediatric_reason"],
        "file_sha256": o["original_sha256"].to_numpy(), "file_bytes": o["original_bytes"].astype(np.int64).to_numpy(),
        "width": o["original_width"].astype(np.int32).to_numpy(),
        "height": o["original_height"].astype(np.int32).to_numpy(), "mode": o["original_mode"].to_numpy(),
        "bit_depth": o["original_mode"].map(_BITS).astype("Int32").to_numpy(),
        "pixel_sha256": None, "phash": None, "extra": df["extra"],
        "dup_group": df["dup_group"], "keep": df["keep"], "unit": df["unit"].map(lambda u: "unit:" + rename.get(
            u.split(":", 1)[1], u.split(":", 1)[1])), "split": df["split"],
        **{f: df[f] for f in FLAGS}, "quality": df["quality"],
    }).sort_values("image_id").reset_index(drop=True)
    out["pixel_sha256"] = pd.Series([None] * len(out), dtype="string")
    out["phash"] = pd.Series([None] * len(out), dtype="UInt64")

    pairs = accepted.assign(image_a=accepted["image_a"].map(rename), image_b=accepted["image_b"].map(rename))
    swap = pairs["image_a"] > pairs["image_b"]
    pairs.loc[swap, ["image_a", "image_b"]] = pairs.loc[swap, ["image_b", "image_a"]].to_numpy()
    pairs = pairs[PAIR_COLUMNS].sort_values(["image_a", "image_b"]).reset_index(drop=True)
    conflicts = result.conflicts.copy()
    conflicts["images"] = [json.dumps({rename[k]: v for k, v in json.loads(s).items()}, sort_keys=True)
                           for s in conflicts["images"]]
    conflicts = conflicts.sort_values(["dup_group", "field"]).reset_index(drop=True)
    dropped = dropped.assign(path=dropped["path"].map(lambda p: path_map.get(p, p) if isinstance(p, str) else p))
    dropped = dropped.sort_values(["source", "reason", "path", "source_record"], na_position="last").reset_index(
        drop=True)
    facts = {"split": {**SPLIT, "method": split_info.get("method"), "units": split_info.get("units"),
                       "rows": split_info.get("rows")},
             "leakage": leak.to_dict(), "dedup": _dedup_facts(result.summary),
             "sources": sources, "thresholds": vars(thresholds)}
    return {"open": out, "pairs": pairs, "conflicts": conflicts, "dropped": dropped, "facts": facts}


# Options that say where dedup's work ran, not what it computed: left out so the facts are the same bytes whatever
# the machine, --workers or engine.
_WHERE_IT_RAN = ("workers", "engine", "scheduler", "work_dir", "search_threads", "feature_cache", "feature_dir")


def _dedup_facts(summary: dict[str, Any]) -> dict[str, Any]:
    options = {k: v for k, v in summary["options"].items() if k not in _WHERE_IT_RAN}
    return {**{k: v for k, v in summary.items() if k != "cross_source"}, "options": options}


def build_nih(data: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """ChestX-ray14 metadata as release rows (no files; the source's metadata-only mode) and its split facts.

    Raises:
        CxrcurateError: the NIH folder or its CSV is missing, a CSV row is unparseable, or the split leaks.
    """
    source = get_source(NIH_FOLDER)(data / NIH_FOLDER)
    df, dropped = source.metadata_table()
    if dropped:
        raise CxrcurateError(f"{data / NIH_FOLDER}: {len(dropped)} ChestX-ray14 CSV row(s) left out, e.g. "
                             f"{dropped[0].source_record}: {dropped[0].reason} ({dropped[0].detail}); a release "
                             "describes every row: fix the CSV or take it again from NIH")
    df = make_split(df, test=SPLIT["test"], val=SPLIT["val"], seed=SPLIT["seed"], stratify=SPLIT["stratify"])
    info = df.attrs["cxrcurate"]["split"]
    leak = leakage_report(df)
    if not leak.ok:
        raise CxrcurateError("the NIH split leaks:\n" + leak.to_text())
    df = df.sort_values("image_id").reset_index(drop=True)
    return df, {"split": {**SPLIT, "method": info.get("method"), "units": info.get("units"), "rows": info.get("rows")},
                "leakage": leak.to_dict(), "notes": source.notes}


def file_hashes(folder: Path) -> dict[str, str]:
    """``{name: sha256}`` of every file of a release folder but ``release.json`` itself (hidden files skipped)."""
    return {p.name: file_sha256(p) for p in sorted(folder.iterdir())
            if p.is_file() and p.name != FACTS and not p.name.startswith(".")}


def build_release(data: str | os.PathLike, out: str | os.PathLike, workers: int | None = None,
                  progress: bool = True, nih: bool = True) -> Path:
    """Write a release folder from ``data`` (see the module docstring); returns ``out``.

    Raises:
        CxrcurateError: ORIGINALS.csv or a source is missing, an image has no original, or a split leaks.
    """
    data, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with pinned_threads():
        parts = build_open(data, workers, progress)
        nih_parts = build_nih(data) if nih else None
    meta = {"release": VERSION, "split": parts["facts"]["split"], "sources": parts["facts"]["sources"],
            "thresholds": parts["facts"]["thresholds"],
            "null_columns": {"pixel_sha256": "needs the original pixels: filled by `cxrcurate materialise`",
                             "phash": "needs the original pixels: filled by `cxrcurate materialise`"}}
    write_table(parts["open"], out / TABLE_FILES["open"], "release", meta)
    for role in ("pairs", "conflicts", "dropped"):
        write_table(parts[role], out / TABLE_FILES[role], role, {"release": VERSION})
    facts: dict[str, Any] = {"release": VERSION, "open": parts["facts"]}
    if nih_parts is not None:
        write_table(nih_parts[0], out / TABLE_FILES["nih-cxr14"], "nih-cxr14",
                    {"release": VERSION, "split": nih_parts[1]["split"]})
        facts["nih-cxr14"] = {k: v for k, v in nih_parts[1].items() if k != "notes"}
    else:
        (out / TABLE_FILES["nih-cxr14"]).unlink(missing_ok=True)  # never a stale table from an earlier build
    truth = out / "quality-truth.csv"
    if truth.is_file():
        with pinned_threads():
            facts["flag_scores"] = flag_scores(parts["open"], pd.read_csv(truth), data)
    _write_text(out / FACTS, _facts_text(facts))
    _write_text(out / "README.md", render_card(out))  # the card reads the facts, never the digests
    write_croissant(out)
    facts["files"] = file_hashes(out)
    _write_text(out / FACTS, _facts_text(facts))
    return out


def _facts_text(facts: dict[str, Any]) -> str:
    return json.dumps(facts, indent=1, sort_keys=True, default=str) + "\n"


def _write_text(path: Path, text: str) -> None:
    """Write a text file atomically (a temporary file renamed over it)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
