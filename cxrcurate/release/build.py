"""``cxrcurate release build``: the one command that writes a release folder, deterministically.

From a data root holding the five open collections (resized copies are fine) and ``ORIGINALS.csv`` (which maps
every copy to the public repository, commit and path it came from, with the ORIGINAL file's sha256, size,
width, height and mode), it builds the manifest, finds duplicates, measures quality flags, makes the standard
split and checks it, then writes (rows sorted, no timestamps, zstd Parquet, so the same input gives the same
bytes):

- ``open.parquet``: one row per image, carrying the original file's identity (never the copy's), labels,
  patients, pediatric flags, ``dup_group``/``keep``, ``unit``, ``split`` and the quality flags;
- ``open.pairs.parquet`` (accepted duplicate pairs with evidence), ``open.conflicts.parquet``,
  ``open.dropped.parquet`` (every file or row left out, with the reason);
- ``nih-cxr14.parquet``: ChestX-ray14 metadata only (no files), with labels, patients, pediatric flags and the
  standard split by patient;
- ``release.json`` (counts, split settings, leakage report, flag precision/recall), ``README.md`` (the card) and
  ``croissant.json`` (the Croissant description of the files, ``croissant.py``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import CxrcurateError
from .quality import FLAGS, Thresholds, flags, measure

log = logging.getLogger(__name__)

VERSION = "v1"
OPEN_SOURCES = ("covid-cxnet", "cohen", "hannover", "figure1", "actualmed")
SPLIT = {"test": 0.2, "val": 0.1, "seed": 0, "stratify": "label"}
META_KEY = b"cxrcurate_release"
NIH_CSV = "nih-cxr14/Data_Entry_2017_v2020.csv.gz"
# 8-bit modes of the originals; a 16-bit original would be "I;16" (none in v1).
_BITS = {"1": 1, "L": 8, "P": 8, "RGB": 8, "RGBA": 8, "LA": 8, "CMYK": 8, "I;16": 16, "I": 32}


def _write(df: pd.DataFrame, path: Path, meta: dict[str, Any], schema: pa.Schema | None = None) -> None:
    """Deterministic Parquet: given row order, zstd, metadata without timestamps."""
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    payload = json.dumps(meta, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata({**{k: v for k, v in (table.schema.metadata or {}).items()
                                              if k != b"pandas"}, META_KEY: payload})
    pq.write_table(table, path, compression="zstd", row_group_size=1 << 20)


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
    from ..build import build_manifest
    from ..dedup.engine import DedupOptions, dedup
    from ..manifest import read_manifest

    with tempfile.TemporaryDirectory(prefix="cxrcurate-release-") as tmp:
        res = build_manifest([(s, data / s) for s in OPEN_SOURCES], tmp, data_root=data, workers=workers,
                             progress=progress)
        df = read_manifest(res.manifest)
        dropped = pd.read_parquet(res.dropped)
    result = dedup(df, data, DedupOptions(workers=workers), progress=progress)
    sources = {n: {k: v for k, v in s.items() if k in ("title", "homepage", "license", "records", "dropped", "notes")}
               for n, s in res.info["sources"].items()}
    return result.manifest, dropped, result, sources


def _quality(df: pd.DataFrame, data: Path, orig: pd.DataFrame, t: Thresholds) -> pd.DataFrame:
    from ..imageio import decode_image

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
    from ..splits import leakage_report, make_split, split_groups

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
    pairs = pairs[["image_a", "image_b", "kind", "hamming", "inliers", "score"]].sort_values(
        ["image_a", "image_b"]).reset_index(drop=True)
    pairs["score"] = pairs["score"].astype(float).round(4)
    conflicts = result.conflicts.copy()
    conflicts["images"] = [json.dumps({rename[k]: v for k, v in json.loads(s).items()}, sort_keys=True)
                           for s in conflicts["images"]]
    conflicts = conflicts.sort_values(["dup_group", "field"]).reset_index(drop=True)
    dropped = dropped.assign(path=dropped["path"].map(lambda p: path_map.get(p, p) if isinstance(p, str) else p))
    dropped = dropped.sort_values(["source", "reason", "path", "source_record"], na_position="last").reset_index(
        drop=True)
    facts = {"split": {**SPLIT, "method": split_info.get("method"), "units": split_info.get("units"),
                       "rows": split_info.get("rows")},
             "leakage": leak.to_dict(), "dedup": {k: v for k, v in result.summary.items() if k != "cross_source"},
             "sources": sources, "thresholds": vars(thresholds)}
    return {"open": out, "pairs": pairs, "conflicts": conflicts, "dropped": dropped, "facts": facts}


def build_nih(data: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """ChestX-ray14 metadata as release rows (no files: identity and pixel columns are null) and its split facts."""
    from ..labels import MAX_AGE, normalize_sex, normalize_view, pediatric_from_age
    from ..sources.nih_cxr14 import nih_label
    from ..splits import leakage_report, make_split

    path = data / NIH_CSV
    if not path.is_file():
        raise CxrcurateError(f"{path} not found; the NIH part of a release is built from it")
    csv = pd.read_csv(path, dtype=str, keep_default_na=False)
    ages = csv["Patient Age"].str.extract(r"^0*(\d+)", expand=False).astype(float)
    ages = ages.where(ages <= MAX_AGE)
    ped = [pediatric_from_age(None if a != a else float(a)) for a in ages]
    df = pd.DataFrame({
        "image_id": "nih-cxr14:" + csv["Image Index"], "source": "nih-cxr14",
        "source_record": [f"Data_Entry_2017_v2020.csv#{i}" for i in range(len(csv))],
        "patient_id": "nih-cxr14:" + csv["Patient ID"].astype(int).astype(str), "file_name": csv["Image Index"],
        "label": csv["Finding Labels"].map(nih_label), "finding_raw": csv["Finding Labels"],
        "view": csv["View Position"].map(normalize_view), "age_years": ages, "sex": csv["Patient Gender"].map(
            normalize_sex), "pediatric": pd.array([p for p, _ in ped], dtype="boolean"),
        "pediatric_reason": [r for _, r in ped], "follow_up": csv["Follow-up #"].astype(int),
        "width": csv["OriginalImage[Width"].astype(np.int32), "height": csv["Height]"].astype(np.int32),
    })
    df = make_split(df, test=SPLIT["test"], val=SPLIT["val"], seed=SPLIT["seed"], stratify=SPLIT["stratify"])
    info = df.attrs["cxrcurate"]["split"]
    leak = leakage_report(df)
    if not leak.ok:
        raise CxrcurateError("the NIH split leaks:\n" + leak.to_text())
    df = df.sort_values("image_id").reset_index(drop=True)
    return df, {"split": {**SPLIT, "method": info.get("method"), "units": info.get("units"), "rows": info.get("rows")},
                "leakage": leak.to_dict()}


def build_release(data: str | os.PathLike, out: str | os.PathLike, workers: int | None = None,
                  progress: bool = True, nih: bool = True) -> Path:
    """Write a release folder from ``data`` (see the module docstring); returns ``out``.

    Raises:
        CxrcurateError: ORIGINALS.csv or a source is missing, an image has no original, or a split leaks.
    """
    from .card import flag_scores, render_card
    from .croissant import write_croissant

    data, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = build_open(data, workers, progress)
    meta = {"release": VERSION, "table": "open", "split": parts["facts"]["split"],
            "sources": parts["facts"]["sources"], "thresholds": parts["facts"]["thresholds"],
            "null_columns": {"pixel_sha256": "needs the original pixels: filled by `cxrcurate materialise`",
                             "phash": "needs the original pixels: filled by `cxrcurate materialise`"}}
    _write(parts["open"], out / "open.parquet", meta)
    _write(parts["pairs"], out / "open.pairs.parquet", {"release": VERSION, "table": "pairs"})
    _write(parts["conflicts"], out / "open.conflicts.parquet", {"release": VERSION, "table": "conflicts"})
    _write(parts["dropped"], out / "open.dropped.parquet", {"release": VERSION, "table": "dropped"})
    facts = {"release": VERSION, "open": parts["facts"]}
    if nih:
        nih_df, nih_facts = build_nih(data)
        _write(nih_df, out / "nih-cxr14.parquet", {"release": VERSION, "table": "nih-cxr14",
                                                   "split": nih_facts["split"]})
        facts["nih-cxr14"] = nih_facts
    truth = out / "quality-truth.csv"
    if truth.is_file():
        facts["flag_scores"] = flag_scores(parts["open"], pd.read_csv(truth), data)
    (out / "release.json").write_text(json.dumps(facts, indent=1, sort_keys=True, default=str) + "\n")
    (out / "README.md").write_text(render_card(out))
    write_croissant(out)
    return out
