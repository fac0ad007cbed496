"""Export a manifest to a Hugging Face ``datasets.Dataset`` with an ``Image`` column."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import CxrcurateError


def _frame(manifest: Any):
    import pandas as pd

    from .manifest import read_manifest

    if isinstance(manifest, pd.DataFrame):
        return manifest
    return read_manifest(manifest)


def resolve_data_root(manifest: Any, data_root: str | os.PathLike | None) -> Path:
    """``data_root`` if given, else the one recorded in the manifest's metadata.

    Raises:
        CxrcurateError: neither is available, or the folder does not exist.
    """
    if data_root is None:
        info = getattr(manifest, "attrs", {}).get("cxrcurate", {})
        data_root = info.get("data_root")
    if data_root is None:
        raise CxrcurateError("no data root: pass data_root= (the folder manifest paths are relative to)")
    root = Path(data_root)
    if not root.is_dir():
        raise CxrcurateError(f"data root {root} is not a folder; pass data_root= pointing at your source folders")
    return root


def to_hf_dataset(manifest: Any, data_root: str | os.PathLike | None = None, keep_only: bool = False):
    """A ``datasets.Dataset`` with every manifest column plus ``image`` (``datasets.Image``, decoded lazily).

    Args:
        manifest: a manifest path or DataFrame (from ``read_manifest``).
        data_root: folder the manifest's paths are relative to (default: recorded in the manifest).
        keep_only: keep only rows with ``keep == True`` (one per duplicate group) when dedup has run.

    Raises:
        CxrcurateError: the data root is unknown or missing, or an image file is missing.
    """
    import datasets

    df = _frame(manifest)
    root = resolve_data_root(df, data_root)
    if keep_only:
        df = df[df["keep"].fillna(True).astype(bool)]
    paths = [str(root / p) for p in df["path"]]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise CxrcurateError(f"{len(missing)} image file(s) missing under {root}, e.g. {missing[0]}")
    df = df.reset_index(drop=True).copy()
    df["phash"] = df["phash"].astype("uint64")
    ds = datasets.Dataset.from_pandas(df, preserve_index=False)
    ds = ds.add_column("image", paths)
    return ds.cast_column("image", datasets.Image())
