"""The manifest: one pyarrow schema (here and nowhere else), versioned, written atomically with its provenance.

A manifest is plain Parquet. Its key-value metadata carries the schema version, the cxrcurate version, the
sources with their versions and the build options, so pandas, duckdb or ``datasets`` can read it (and a
reader can understand it) without importing cxrcurate.

``build-manifest`` fills every column it can; the schema requires only ``image_id``, ``source``, ``path`` and
``label``, so a table brought from elsewhere with those is accepted (other columns null) and a command that needs
more (dedup: the fingerprints) names what is missing (``need_columns``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from . import tables
from .errors import CxrcurateError, SchemaError, UnsafeManifestPath, UsageError
from .labels import LABELS, VIEWS
from .tables import TableKind, read_arrow, register, table_info, write_table

SCHEMA_VERSION = "1.1"  # 1.1: only image_id, source, path and label are required
META_KEY = b"cxrcurate"

_FIELDS: list[tuple[str, pa.DataType, bool, str]] = [
    ("image_id", pa.string(), False, "<source>:<path inside the source folder>; unique and stable"),
    ("source", pa.string(), False, "registry name of the source"),
    ("source_record", pa.string(), True, "row / case id / URL inside the source"),
    ("patient_id", pa.string(), True, "namespaced by source, e.g. cohen:311a; null when unknown"),
    ("path", pa.string(), False, "image path relative to the data root"),
    ("url", pa.string(), True, "where the image or its case was published"),
    ("license", pa.string(), True, "license of this image as the source states it"),
    ("label", pa.string(), False, "one of " + ", ".join(LABELS)),
    ("finding_raw", pa.string(), True, "what the source said, untouched"),
    ("view", pa.string(), True, "one of " + ", ".join(VIEWS)),
    ("frontal", pa.bool_(), True, "PA or AP; null when the view is unknown"),
    ("modality", pa.string(), True, "xray or ct"),
    ("age_years", pa.float64(), True, "age in years"),
    ("sex", pa.string(), True, "M, F or null"),
    ("pediatric", pa.bool_(), True, "patient under 18; null when unknown"),
    ("pediatric_reason", pa.string(), True, "age<18, age>=18, source:<name> or filename"),
    ("width", pa.int32(), True, "decoded width in pixels"),
    ("height", pa.int32(), True, "decoded height in pixels"),
    ("bit_depth", pa.int32(), True, "bits per sample of the file (8 or 16)"),
    ("file_sha256", pa.string(), True, "sha256 of the file bytes"),
    ("pixel_sha256", pa.string(), True, "sha256 of the decoded 8-bit grayscale pixels and their shape"),
    ("phash", pa.uint64(), True, "64-bit perceptual hash (imagehash pHash) of the 8-bit grayscale image"),
    ("mask_paths", pa.list_(pa.string()), True, "lung mask files relative to the data root, when the source has them"),
    ("extra", pa.string(), True, "source-specific fields as a JSON object"),
    ("dup_group", pa.string(), True, "same for every copy of one picture"),
    ("keep", pa.bool_(), True, "one True per dup_group"),
    ("split", pa.string(), True, "train, val or test when a split was made"),
]

MANIFEST_KINDS = ("manifest", "release")  # a release table is a manifest plus its declared extra columns
SCHEMA = pa.schema([pa.field(n, t, nullable=nl, metadata={"description": d}) for n, t, nl, d in _FIELDS])
COLUMNS: tuple[str, ...] = tuple(f[0] for f in _FIELDS)

DROPPED_SCHEMA = pa.schema([
    pa.field("source", pa.string(), nullable=False),
    pa.field("path", pa.string(), nullable=True, metadata={"description": "file relative to the data root"}),
    pa.field("source_record", pa.string(), nullable=True, metadata={"description": "metadata row, e.g. file#row"}),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("detail", pa.string(), nullable=True),
])

_CHECKS: dict[str, tuple[str, ...]] = {"label": LABELS, "view": VIEWS, "modality": ("xray", "ct"),
                                       "split": ("train", "val", "test"), "sex": ("M", "F")}


def _validate_dropped(table: pa.Table, origin: str) -> None:
    for name in ("source", "reason"):
        nulls = table.column(name).null_count
        if nulls:
            raise SchemaError(f"{origin}: column {name!r} has {nulls} null value(s); every dropped row names its "
                              "source and reason")


MANIFEST_KIND = register(TableKind("manifest", SCHEMA_VERSION, SCHEMA, validate=lambda t, o: validate_table(t, o)))
DROPPED_KIND = register(TableKind("dropped", "1.0", DROPPED_SCHEMA, validate=_validate_dropped))


def to_table(records: Any) -> pa.Table:
    """A manifest table from a pandas DataFrame or a list of record dicts, cast to ``SCHEMA``."""
    import pandas as pd

    df = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records), columns=list(COLUMNS))
    missing = [c for c in COLUMNS if c not in df.columns]
    for c in missing:
        df[c] = None
    df = df[list(COLUMNS)].copy()
    for c in df.columns:
        if df[c].isna().all():  # absent in every record: typed nulls, not float NaN
            df[c] = pd.Series([None] * len(df), index=df.index, dtype=object)
    try:
        return pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise SchemaError(f"records do not fit the manifest schema: {exc}") from exc


def write_manifest(records: Any, path: str | os.PathLike, info: Mapping[str, Any] | None = None) -> Path:
    """Validate and write a manifest atomically (temp file + rename) with provenance metadata.

    Args:
        records: a pandas DataFrame, a list of record dicts or a ``pyarrow.Table`` with the manifest columns.
        path: destination ``.parquet`` file.
        info: provenance stored in the Parquet metadata (sources, their versions, build options).

    Raises:
        SchemaError: a column is mistyped, a required value is null or a value is outside its vocabulary.
    """
    import pandas as pd

    if isinstance(records, pa.Table):
        records = records.to_pandas()
    elif not isinstance(records, pd.DataFrame):
        records = to_table(records).to_pandas()
    return write_table(records, path, "manifest", {"schema_version": SCHEMA_VERSION, **(info or {})})


_READER_KEYS = ("table", "table_version", "schema_version", "cxrcurate_version", "provenance")


def write_like(records: Any, path: str | os.PathLike, info: Mapping[str, Any] | None = None) -> Path:
    """Write a manifest a command has changed as the kind it was read as (``info['table']``: a manifest, or a
    release table keeping its declared columns), every column kept, versions refreshed.

    ``info`` is the metadata the table was read with (``df.attrs['cxrcurate']``) plus what the command adds; the
    keys the reader and writer own (kind, versions, provenance) are not copied.
    """
    info = dict(info or {})
    kind = info.get("table") if info.get("table") in MANIFEST_KINDS else "manifest"
    rest = {k: v for k, v in info.items() if k not in _READER_KEYS}
    if kind == "manifest":
        return write_manifest(records, path, rest)
    return write_table(records, path, kind, rest)


def write_dropped(rows: Any, path: str | os.PathLike, info: Mapping[str, Any] | None = None) -> Path:
    """Write the dropped table (every input file or row that did not become a manifest row, with a reason)."""
    import pandas as pd

    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows), columns=DROPPED_SCHEMA.names)
    return write_table(df, path, "dropped", info)


def read_dropped(path: str | os.PathLike):
    """Read a dropped table (``manifest.dropped.parquet``, ``open.dropped.parquet``) into a pandas DataFrame."""
    return tables.read_table(path, "dropped")


def validate_table(table: pa.Table, origin: str = "manifest") -> None:
    """Check columns, types, nulls, vocabularies and id uniqueness; say exactly what is wrong.

    Raises:
        SchemaError: naming ``origin``, the column and the problem.
    """
    names = set(table.column_names)
    missing = [f.name for f in SCHEMA if f.name not in names]
    if missing:
        raise SchemaError(f"{origin}: missing column(s) {missing}; rebuild it with `cxrcurate build-manifest`")
    for field in SCHEMA:
        actual = table.schema.field(field.name).type
        if actual != field.type:
            raise SchemaError(f"{origin}: column {field.name!r} has type {actual}, expected {field.type}")
        col = table.column(field.name)
        if not field.nullable and col.null_count:
            raise SchemaError(f"{origin}: column {field.name!r} has {col.null_count} null value(s)")
    import pyarrow.compute as pc

    for name, allowed in _CHECKS.items():
        values = set(pc.unique(table.column(name)).to_pylist()) - {None}
        bad = sorted(values - set(allowed))
        if bad:
            raise SchemaError(f"{origin}: column {name!r} has value(s) {bad[:5]} outside {list(allowed)}")
    _check_table_paths(table, origin)
    ids = table.column("image_id")
    if pc.count_distinct(ids).as_py() != len(ids):
        counts = pc.value_counts(ids).to_pylist()
        dup = [c["values"] for c in counts if c["counts"] > 1][:3]
        raise SchemaError(f"{origin}: image_id is not unique, e.g. {dup}")


def path_problem(rel: Any) -> str | None:
    """Why ``rel`` cannot be a manifest path (relative, inside the data root), or None when it can.

    The lexical half of the path rule: no absolute path, drive, ``..`` component, backslash or NUL byte. The other
    half (no link leading out of the data root) needs the disk: ``safe_path``.
    """
    if not isinstance(rel, str) or not rel:
        return "empty path"
    if "\x00" in rel:
        return "NUL byte in the path"
    if "\\" in rel:
        return "backslash in the path (manifest paths use /)"
    if rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
        return "absolute path"
    if ".." in rel.split("/"):
        return "'..' in the path"
    return None


def _check_table_paths(table: pa.Table, origin: str) -> None:
    ids = table.column("image_id").to_pylist()
    checks = [("path", table.column("path").to_pylist())]
    if "mask_paths" in table.column_names:
        checks.append(("mask_paths", table.column("mask_paths").to_pylist()))
    for column, values in checks:
        for image_id, value in zip(ids, values, strict=True):
            for rel in (value or []) if column == "mask_paths" else [value]:
                why = path_problem(rel)
                if why:
                    raise UnsafeManifestPath(
                        f"{origin}: row {image_id!r} names {column} {rel!r} ({why}); manifest paths must be relative "
                        "to the data root and stay inside it. Fix or drop that row, or rebuild the manifest")


def safe_path(root: str | os.PathLike, rel: Any, row: str | None = None) -> Path:
    """The file ``rel`` (a manifest path) names under ``root``, refused unless it stays inside ``root`` after
    resolving links. This is the one path rule for every file a manifest names.

    Raises:
        UnsafeManifestPath: ``rel`` is absolute, has ``..``, or resolves (through a link) outside ``root``.
    """
    where = f"row {row!r}" if row else "a manifest row"
    why = path_problem(rel)
    if why is None:
        base = Path(root).resolve()
        target = (base / rel).resolve()
        if target != base and base not in target.parents:
            why = f"resolves to {target}, outside the data root {base}"
    if why:
        raise UnsafeManifestPath(f"{where} names {rel!r} ({why}); refused: a manifest only names files inside "
                                 "its data root. Fix or drop that row, or rebuild the manifest")
    return Path(root) / rel


def row_paths(df: Any, root: str | os.PathLike, column: str = "path") -> list[Path]:
    """``safe_path`` of every row's ``column`` (one path per row), checked before anything is opened.

    Raises:
        UnsafeManifestPath: naming the first row whose path leaves ``root``.
    """
    return [safe_path(root, rel, iid) for iid, rel in zip(df["image_id"], df[column], strict=True)]


def read_info(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance metadata of a manifest (or any table cxrcurate wrote) without reading its rows.

    Returns ``{}`` for a plain Parquet without cxrcurate metadata.

    Raises:
        SchemaError: the file is not Parquet, or its cxrcurate metadata is damaged.
    """
    return table_info(path)


def read_table(path: str | os.PathLike) -> pa.Table:
    """Read and validate a manifest as a ``pyarrow.Table`` (columns the schema does not own are kept after it).

    A release table (a manifest plus its declared extra columns) and a plain Parquet/CSV with the manifest's
    required columns are read too; the latter with a warning that its provenance is unknown.

    Raises:
        SchemaError: the file is not a manifest or does not match the schema.
    """
    return read_arrow(path, MANIFEST_KINDS)[0]


def read_manifest(path: str | os.PathLike):
    """Read and validate a manifest into a pandas DataFrame (``df.attrs['cxrcurate']`` holds its provenance).

    A release table (``manifests/v1/open.parquet``) is a manifest too; a plain Parquet/CSV needs only
    ``image_id``, ``source``, ``path`` and ``label`` (read with a warning that its provenance is unknown).
    """
    return tables.read_table(path, MANIFEST_KINDS)


def need_columns(df: Any, columns: Sequence[str], command: str, fix: str) -> None:
    """Refuse a table lacking values a command needs (a manifest you bring may leave them out, a release leaves
    the pixel fingerprints null).

    Raises:
        SchemaError: naming the columns, how many rows lack them, and ``fix``.
    """
    gaps = {c: (len(df) if c not in df.columns else int(df[c].isna().sum())) for c in columns}
    gaps = {c: n for c, n in gaps.items() if n}
    if gaps:
        where = df.attrs.get(tables.FILE_ATTR, "the manifest")
        said = ", ".join(f"{c} ({n:,} row(s))" for c, n in gaps.items())
        raise SchemaError(f"{where}: {command} needs {said} filled; {fix}")


def load_frame(manifest: Any):
    """A manifest as a pandas DataFrame: ``manifest`` itself if it is one, else ``read_manifest(manifest)``."""
    import pandas as pd

    if isinstance(manifest, pd.DataFrame):
        return manifest
    return read_manifest(manifest)


def resolve_data_root(manifest: Any, data_root: str | os.PathLike | None) -> Path:
    """The folder a manifest's paths are relative to: ``data_root`` when the caller gives one, else the folder that
    holds the manifest file itself.

    Never a folder the file names: the path rule keeps every row inside the data root, so a root taken from the
    file being checked would let that file choose its own walls (a manifest recording ``data_root: "/"`` could
    name any file on the machine). The ``data_root`` a manifest records (``build-manifest`` writes it) is provenance
    and is only quoted in the error, for you to pass if the manifest is yours.

    Args:
        manifest: a manifest path, or a DataFrame read by ``read_manifest`` (it knows the file it came from).
        data_root: the caller's data root (``--data-root``), or None for the manifest's own folder.

    Raises:
        CxrcurateError: no data root can be found, it is not a folder, or (by default) none of the first rows' files
            is under the manifest's own folder.
    """
    if data_root is not None:
        if not isinstance(data_root, str | os.PathLike) or not Path(data_root).is_dir():
            raise CxrcurateError(f"data root {data_root} is not a folder; pass data_root= (--data-root) pointing at "
                                 "the folder holding your source folders")
        return Path(data_root)
    where = manifest if isinstance(manifest, str | os.PathLike) else getattr(manifest, "attrs", {}).get(
        tables.FILE_ATTR)
    if where is None:
        raise CxrcurateError("no data root: pass data_root= (--data-root), the folder the manifest paths are relative "
                             "to (a manifest read from a file defaults to that file's folder)")
    root = Path(where).resolve().parent
    df = manifest if hasattr(manifest, "columns") else None
    if df is not None and len(df) and "path" in df.columns:
        sample = [p for p in df["path"].head(5) if path_problem(p) is None]
        if sample and not any((root / p).exists() for p in sample):
            recorded = getattr(df, "attrs", {}).get("cxrcurate", {}).get("data_root")
            said = (f"; it records that it was built with data root {recorded} (never used on its own: pass it "
                    "if this manifest is yours)") if recorded else ""
            raise CxrcurateError(f"{sample[0]} is not under {root}, the manifest's own folder (the data root when "
                                 f"none is given){said}. Pass --data-root (data_root=): the folder the manifest's "
                                 "paths are relative to")
    return root


def check_output_folder(folder: str | os.PathLike, option: str = "--out") -> Path:
    """Create ``folder`` if needed and prove it is writable, before any long work starts.

    Raises:
        UsageError: ``folder`` (or a parent) is an existing file.
        CxrcurateError: the folder cannot be created or written to (read-only, no permission, disk full).
    """
    path = Path(folder)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise UsageError(f"{option} {path}: {p} is a file, not a folder; give a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise CxrcurateError(f"{option} {path}: cannot write there ({exc.strerror or exc}); choose a folder you can "
                             "write to") from exc
    return path


def check_output_file(file: str | os.PathLike, option: str = "--out") -> Path:
    """Check that ``file`` can be written (not a folder, its folder writable), before any long work starts.

    Raises:
        UsageError: ``file`` is an existing folder.
        CxrcurateError: its folder cannot be created or written to.
    """
    path = Path(file)
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name, e.g. {path / 'out.png'}")
    check_output_folder(path.parent, option)
    return path


def select_rows(df: Any, classes: Sequence[str] | None = None, split: str | None = None,
                keep_only: bool = True) -> Any:
    """The rows of a manifest DataFrame that a dataset serves: one copy per picture, the labels and split asked for.

    The one row selection of ``ManifestDataset`` and ``to_hf_dataset``, so both serve the same rows.

    Args:
        df: a manifest DataFrame.
        classes: labels to keep (default: every label).
        split: keep only this split (``train``/``val``/``test``).
        keep_only: keep only ``keep == True`` rows, one per duplicate group (the default: the honest count);
            rows whose ``keep`` is null (dedup has not run) are kept. False serves every copy.

    Raises:
        CxrcurateError: an unknown class or split, or no row is left.
    """
    if classes is not None:
        bad = [c for c in classes if c not in LABELS]
        if bad:
            raise CxrcurateError(f"unknown class(es) {bad}; labels are {list(LABELS)}")
        df = df[df["label"].isin(classes)]
    if split is not None:
        if split not in ("train", "val", "test"):
            raise CxrcurateError(f"unknown split {split!r}; choose train, val or test")
        df = df[df["split"] == split]
    if keep_only:
        df = df[df["keep"].fillna(True).astype(bool)]
    if df.empty:
        what = f"labels {list(classes)}" if classes is not None else "any label"
        raise CxrcurateError(f"no rows with {what}" + (f" in split {split!r}" if split else "")
                             + (" among the kept copies (keep_only=True)" if keep_only else ""))
    return df
