"""Check a user's downloaded sources against a release, materialise the release over them, load it.

``verify_release`` compares every file a release names with the file under the user's data root by sha256
(missing, changed) and lists image files the release does not know (extra). ``materialise`` turns the release
plus the user's files into a full manifest (paths, pixel fingerprints) with the release's split, dup groups and
flags, which ``cxrcurate bench --split-policy manifest`` trains on. ``load_release`` returns either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import CxrcurateError

TABLES = ("open", "nih-cxr14")
MAX_LISTED = 20


def _table(release: str | os.PathLike, table: str = "open") -> pd.DataFrame:
    folder = Path(release)
    if table not in TABLES:
        raise CxrcurateError(f"unknown release table {table!r}; choose from {list(TABLES)}")
    path = folder / f"{table}.parquet"
    if not path.is_file():
        raise CxrcurateError(release_folder_error(folder, path))
    return with_release_provenance(pd.read_parquet(path), path)


def release_folder_error(folder: Path, path: Path) -> str:
    """Why ``folder`` cannot be read as a release, and where a release is found."""
    what = "does not exist" if not folder.exists() else ("is a file" if not folder.is_dir() else f"has no {path.name}")
    return (f"release folder {folder} {what}: a release folder holds open.parquet, nih-cxr14.parquet and "
            "release.json (the published one is manifests/v1 in a clone of the cxrcurate repository); pass its path")


def with_release_provenance(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``df`` with the release's own metadata (the ``cxrcurate_release`` key of ``path``) in ``df.attrs``.

    ``attrs["cxrcurate"]`` holds it as a manifest's provenance is held (release, sources, split, dedup, ...), plus
    ``release_folder`` and ``table``, so a frame from ``load_release`` still says where it came from.
    """
    import json

    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    info = json.loads(meta[b"cxrcurate_release"]) if b"cxrcurate_release" in meta else {}
    df.attrs["cxrcurate"] = {**info, "release_folder": str(path.parent), "file": path.name}
    return df


def read_any(path: str | os.PathLike, read_manifest: Any) -> pd.DataFrame:
    """A manifest (validated by ``read_manifest``) or a release table (``open.parquet``, read as it is)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..errors import SchemaError

    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid) as exc:  # truncated, or not Parquet at all
        raise SchemaError(f"{path} is not a readable Parquet file ({exc}); rebuild it or check the path") from exc
    if b"cxrcurate_release" in meta:
        return pd.read_parquet(path)
    return read_manifest(path)


@dataclass
class VerifyReport:
    """What ``verify_release`` found; ``ok`` when nothing is missing or changed (extra files are reported only)."""

    root: Path
    checked: int
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    sources_absent: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.changed

    def to_text(self) -> str:
        """A plain-text report: counts, then up to 20 paths per kind."""
        head = (f"verified {self.checked:,} release files under {self.root}: "
                f"{self.checked - len(self.missing) - len(self.changed):,} match, {len(self.missing):,} missing, "
                f"{len(self.changed):,} changed (sha256 differs), {len(self.extra):,} extra image files")
        lines = [head, "OK" if self.ok else "MISMATCH: your files are not the release's"]
        if self.sources_absent:
            lines.append(f"  source folders absent: {', '.join(self.sources_absent)} "
                         "(fetch them at the release's commits with `cxrcurate fetch --release RELEASE --out ROOT`)")
        for kind in ("missing", "changed", "extra"):
            items = getattr(self, kind)
            lines += [f"  {kind}: {p}" for p in items[:MAX_LISTED]]
            if len(items) > MAX_LISTED:
                lines.append(f"  ... and {len(items) - MAX_LISTED:,} more {kind}")
        return "\n".join(lines)


def verify_release(release: str | os.PathLike, root: str | os.PathLike) -> VerifyReport:
    """Check the files under ``root`` against the release in ``release`` by sha256.

    Args:
        release: a release folder (``manifests/v1``).
        root: the folder holding one folder per source (``root/cohen``, ``root/hannover``, ...).

    Raises:
        CxrcurateError: the release or the root is not a folder.
    """
    from ..fetch.download import file_sha256
    from ..imageio import is_image_name

    root = Path(root)
    if not root.is_dir():
        raise CxrcurateError(f"data root {root} is not a folder; pass the folder holding one folder per source")
    df = _table(release)
    dropped_path = Path(release) / "open.dropped.parquet"
    known = set(df["path"])
    if dropped_path.is_file():
        known |= set(pd.read_parquet(dropped_path)["path"].dropna())
    report = VerifyReport(root, len(df))
    for path, sha in zip(df["path"], df["file_sha256"], strict=True):
        f = root / path
        if not f.is_file():
            report.missing.append(path)
        elif file_sha256(f) != sha:
            report.changed.append(path)
    for source in sorted(set(df["source"])):
        folder = root / source
        if not folder.is_dir():
            report.sources_absent.append(source)
            continue
        for dirpath, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                rel = Path(dirpath, name).relative_to(root).as_posix()
                if is_image_name(name) and not name.startswith(".") and rel not in known:
                    report.extra.append(rel)
    return report


def materialise(release: str | os.PathLike, root: str | os.PathLike, out: str | os.PathLike | None = None,
                allow_missing: bool = False, workers: int | None = None, progress: bool = True) -> pd.DataFrame:
    """The release over the user's files as a full manifest (validated), written to ``out`` when given.

    Pixel fingerprints (``pixel_sha256``, ``phash``) are computed from the user's files; the release's labels,
    patients, ``dup_group``/``keep``, ``split``, ``unit`` and flags are carried (extra columns of the Parquet).

    Args:
        release: a release folder.
        root: the user's data root (one folder per source).
        out: where to write the manifest (``.parquet``); None writes nothing.
        allow_missing: leave out rows whose file is missing instead of refusing (changed files always refuse).
        workers: decoding processes.

    Raises:
        CxrcurateError: a file is changed, or missing without ``allow_missing``.
    """
    import pyarrow as pa

    from ..build import fingerprint_files
    from ..manifest import COLUMNS, read_manifest, to_table, validate_table, write_manifest

    report = verify_release(release, root)
    if report.changed or (report.missing and not allow_missing):
        raise CxrcurateError(report.to_text() + "\nfix these files before materialising, or pass --allow-missing "
                             "(allow_missing=True in Python) to leave the missing ones out")
    df = _table(release)
    df = df[~df["path"].isin(set(report.missing))].reset_index(drop=True)
    files = [str(Path(root) / p) for p in df["path"]]
    fps = fingerprint_files(files, workers=workers, progress=progress)
    bad = [f for f in files if isinstance(fps[f], str)]
    if bad:
        raise CxrcurateError(f"{len(bad)} file(s) cannot be decoded, e.g. {bad[0]}: {fps[bad[0]]}")
    for col in ("width", "height", "bit_depth", "pixel_sha256", "phash"):
        df[col] = [fps[f][col] for f in files]
    df["mask_paths"] = None
    table = to_table(df)
    extra_cols = [c for c in df.columns if c not in COLUMNS]
    table = pa.Table.from_arrays(table.columns + [pa.array(df[c].tolist()) for c in extra_cols],
                                 names=table.column_names + extra_cols)
    table = table.cast(pa.schema([to_table(df.head(0)).schema.field(n) if n in COLUMNS else table.schema.field(n)
                                  for n in table.column_names]))
    validate_table(table, origin=f"release {release} over {root}")
    info: dict[str, Any] = {"data_root": str(Path(root).resolve()), "release": str(release),
                            "missing_left_out": len(report.missing), "build": {"command": "materialise"}}
    if out is None:
        result = table.to_pandas()
        result.attrs["cxrcurate"] = info
        return result
    write_manifest(table, out, info)
    return read_manifest(out)


def load_release(release: str | os.PathLike = "manifests/v1", table: str = "open",
                 root: str | os.PathLike | None = None, **kwargs: Any) -> pd.DataFrame:
    """A release table as a pandas DataFrame: as published, or materialised over ``root`` (see ``materialise``).

    Args:
        release: a release folder.
        table: ``open`` (the five open collections) or ``nih-cxr14`` (metadata only).
        root: the user's data root; when given (``open`` only), the full manifest with paths and fingerprints.
        **kwargs: passed to ``materialise`` (``allow_missing``, ``workers``, ``progress``, ``out``).

    Raises:
        CxrcurateError: an unknown table, a missing release, or (with ``root``) files that do not match.
    """
    if root is None:
        return _table(release, table)
    if table != "open":
        raise CxrcurateError("only the 'open' table can be materialised over files; nih-cxr14 is metadata only")
    return materialise(release, root, **kwargs)
