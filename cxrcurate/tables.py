"""Every table cxrcurate writes: one registry of kinds, one atomic and deterministic writer, one reader.

A *kind* (manifest, dropped, pairs, conflicts, release, split, predictions, ...) has one pyarrow schema of the
columns it owns, a version, the columns a foreign copy must at least carry, and how many decimals its floats are
written with. Every file carries one metadata key (``cxrcurate``, JSON) with ``table`` (its kind), ``table_version``
and the provenance its writer passed, so pandas, duckdb or ``datasets`` read it as plain Parquet and a reader knows
what it is without code.

Rules every writer follows (``write_table``):
- the kind's columns first, cast to its schema; columns the kind does not own are kept after them, untouched;
- floats are rounded to the kind's decimals, so a value that differs in its last bits between thread counts or
  machine load is written as the same bytes;
- no timestamps and no pandas metadata (which names the pandas version); zstd; one row group per 1M rows;
- a temporary file in the destination folder, renamed over the target only when complete.

The reader (``read_table``) dispatches by the kind in the file. A plain Parquet or CSV without cxrcurate metadata is
accepted for a kind when it holds the kind's required columns, with a warning (logged) that its provenance is unknown; a
missing column is named with the fix.

A kind is registered by the module that owns its facts (``register``); ``HOMES`` says which module that is, so the
reader can find a kind it has not seen yet without importing every stage.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from . import __version__
from .errors import CxrcurateError, MissingFileError, SchemaError, UsageError

log = logging.getLogger(__name__)

META_KEY = b"cxrcurate"
FILE_ATTR = "cxrcurate_file"  # DataFrame.attrs key: the file a table was read from (``read_table`` sets it)
_ROW_GROUP = 1 << 20

# kind -> the module that registers it (imported on first use of that kind)
HOMES: dict[str, str] = {
    "manifest": "cxrcurate.manifest",
    "dropped": "cxrcurate.manifest",
    "pairs": "cxrcurate.dedup.groups",
    "conflicts": "cxrcurate.dedup.groups",
    "release": "cxrcurate.release.schema",
    "nih-cxr14": "cxrcurate.release.schema",
    # a bench run's tables (cxrcurate.bench.record: torch-free)
    "run_split": "cxrcurate.bench.record",
    "predictions": "cxrcurate.bench.record",
    "history": "cxrcurate.bench.record",
    "attributions": "cxrcurate.bench.record",
    "overlays": "cxrcurate.bench.record",
}


@dataclass(frozen=True)
class TableKind:
    """One kind of table: its owned columns (``schema``), version and write/read rules.

    Attributes:
        name: the kind, as written in the file's metadata (``table``).
        version: ``major.minor``; a reader refuses another major version.
        schema: the columns the kind owns, in order, with their types (field metadata ``description``).
        required: columns a foreign (plain) table must have to be accepted; default: every non-nullable column.
        decimals: decimals floats are rounded to at write time (None: written as computed).
        validate: an extra check ``validate(table, origin)`` raising ``SchemaError`` (vocabularies, unique ids).
        aliases: older metadata keys or kind names that also mean this kind (read only).
    """

    name: str
    version: str
    schema: pa.Schema
    required: tuple[str, ...] | None = None
    decimals: int | None = 6
    validate: Callable[[pa.Table, str], None] | None = None
    aliases: tuple[str, ...] = field(default=())

    @property
    def needed(self) -> tuple[str, ...]:
        if self.required is not None:
            return self.required
        return tuple(f.name for f in self.schema if not f.nullable)


_KINDS: dict[str, TableKind] = {}


def register(kind: TableKind) -> TableKind:
    """Register ``kind`` (idempotent for the same definition) and return it."""
    old = _KINDS.get(kind.name)
    if old is not None and old != kind:
        raise CxrcurateError(f"table kind {kind.name!r} registered twice with different definitions")
    _KINDS[kind.name] = kind
    for alias in kind.aliases:
        _KINDS.setdefault(alias, kind)
    return kind


def get_kind(name: str) -> TableKind:
    """The registered kind ``name``, importing its home module on first use.

    Raises:
        UsageError: no such kind.
    """
    if name not in _KINDS and name in HOMES:
        importlib.import_module(HOMES[name])
    if name not in _KINDS:
        known = sorted(set(_KINDS) | set(HOMES))
        raise UsageError(f"unknown table kind {name!r}; known kinds: {known}")
    return _KINDS[name]


def kinds() -> list[str]:
    """Every kind name that can be read (registered or with a home)."""
    return sorted(set(_KINDS) | set(HOMES))


# ---------------------------------------------------------------------------------------------------- writing


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(table: pa.Table, path: str | os.PathLike) -> Path:
    """Write ``table`` to ``path`` deterministically (zstd, fixed row groups) through a temporary file + rename."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a .parquet file name to write the table to")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=_ROW_GROUP)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; a table is a shared file like any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _round(table: pa.Table, decimals: int | None) -> pa.Table:
    if decimals is None:
        return table
    import pyarrow.compute as pc

    cols = []
    for col in table.columns:
        if pa.types.is_floating(col.type):
            col = pc.round(col, ndigits=decimals)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=table.schema)


def _owned_first(df: pd.DataFrame, kind: TableKind) -> pa.Table:
    """The kind's columns (cast to its schema, absent ones null), then every other column as it is."""
    df = df.copy()
    for name in kind.schema.names:
        if name not in df.columns:
            df[name] = None
    extras = [c for c in df.columns if c not in kind.schema.names]
    for name in kind.schema.names:
        if df[name].isna().all():  # absent in every record: typed nulls, not float NaN
            df[name] = pd.Series([None] * len(df), index=df.index, dtype=object)
    try:
        owned = pa.Table.from_pandas(df[list(kind.schema.names)], schema=kind.schema, preserve_index=False)
        rest = pa.Table.from_pandas(df[extras], preserve_index=False) if extras else None
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise SchemaError(f"rows do not fit the {kind.name} table schema: {exc}") from exc
    if rest is None:
        return owned
    for name, col in zip(rest.column_names, rest.columns, strict=True):
        owned = owned.append_column(rest.schema.field(name), col)
    return owned


def _metadata(kind: TableKind, info: Mapping[str, Any] | None) -> dict[bytes, bytes]:
    info = {k: v for k, v in (info or {}).items() if k != "provenance"}  # the reader's verdict, never stored
    payload = {"cxrcurate_version": __version__, **info, "table": kind.name, "table_version": kind.version}
    return {META_KEY: json.dumps(payload, sort_keys=True, default=str).encode()}


def write_table(data: Any, path: str | os.PathLike, kind: str, info: Mapping[str, Any] | None = None) -> Path:
    """Write ``data`` (DataFrame, records or ``pyarrow.Table``) as a table of ``kind``, atomically and byte-stably.

    Columns the kind does not own are kept (after its own). ``info`` is stored in the metadata beside the kind.

    Raises:
        SchemaError: the rows do not fit the kind's schema or fail its validation.
    """
    k = get_kind(kind)
    if isinstance(data, pa.Table):
        data = data.to_pandas()
    elif not isinstance(data, pd.DataFrame):
        data = pd.DataFrame(list(data))
    table = _round(_owned_first(data, k), k.decimals)
    if k.validate is not None:
        k.validate(table, f"{kind} table to write to {path}")
    return write_atomic(table.replace_schema_metadata(_metadata(k, info)), path)


# ---------------------------------------------------------------------------------------------------- reading


def _open(path: Path, reader: Callable[[Path], Any]) -> Any:
    if path.is_dir():
        raise SchemaError(f"{path} is a folder, not a table file; pass the .parquet (or .csv) file inside it")
    if not path.exists():
        raise MissingFileError(f"{path}: no such file; check the path (manifests are made by `cxrcurate "
                               "build-manifest`, the other tables by the command that names them)")
    if not path.is_file():
        raise SchemaError(f"{path} is not a regular file (a pipe or device?); pass a .parquet or .csv file")
    try:
        return reader(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        what = "CSV" if _is_csv(path) else "Parquet"
        raise SchemaError(f"{path}: not a readable {what} file (truncated, damaged or another format: {exc}); "
                          "write it again or copy it again") from exc


def beside(path: str | os.PathLike, kind: str) -> Path:
    """Where the ``kind`` table that belongs to the table file ``path`` lives: ``<stem>.<kind>.parquet`` beside it.

    The one location rule for companion tables: ``manifest.parquet`` -> ``manifest.pairs.parquet``,
    ``open.parquet`` -> ``open.conflicts.parquet``.
    """
    path = Path(path)
    stem = path.name
    for suffix in (".parquet", ".csv.gz", ".tsv.gz", ".csv", ".tsv"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return path.with_name(f"{stem}.{kind}.parquet")


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() in {".csv", ".tsv", ".txt"} or path.name.lower().endswith((".csv.gz", ".tsv.gz"))


def table_info(path: str | os.PathLike) -> dict[str, Any]:
    """The cxrcurate metadata of a table file, without reading its rows; ``{}`` for a plain Parquet or a CSV.

    A file from before table kinds (a manifest or release written by cxrcurate 0.1) is reported with the kind it
    is: ``table`` is filled in from the old keys.

    Raises:
        SchemaError: not a readable Parquet file, or its cxrcurate metadata is damaged.
    """
    path = Path(path)
    if _is_csv(path):
        _open(path, lambda p: None)
        return {}
    meta = _open(path, pq.read_schema).metadata or {}
    raw = meta.get(META_KEY)
    if raw is None:
        for key, value in meta.items():  # older keys, e.g. b"cxrcurate_release"
            if key.startswith(META_KEY + b"_"):
                raw = value
                legacy = key[len(META_KEY) + 1:].decode()
                break
        else:
            return {}
    else:
        legacy = None
    try:
        info = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path}: its cxrcurate metadata is not valid JSON ({exc}); the file was edited or "
                          "damaged: write it again with the command that made it") from exc
    if not isinstance(info, dict):
        raise SchemaError(f"{path}: its cxrcurate metadata is not a JSON object; write it again")
    if "table" not in info:
        info["table"] = legacy or ("manifest" if "schema_version" in info else None)
    return info


def _read_arrow(path: Path) -> pa.Table:
    if _is_csv(path):
        delimiter = "\t" if ".tsv" in path.name.lower() else ","
        return _open(path, lambda p: pacsv.read_csv(p, parse_options=pacsv.ParseOptions(delimiter=delimiter)))
    return _open(path, pq.read_table)


def _conform(table: pa.Table, kind: TableKind, origin: str, strict: bool) -> pa.Table:
    """A table made to fit ``kind``: required columns checked, owned columns in order (absent ones null).

    ``strict`` (a table cxrcurate wrote): a column of another type is an error, never cast. A foreign table's
    columns are cast where Arrow can (a CSV's int64 width to int32).
    """
    # a table cxrcurate wrote has every column its kind owns (the writer adds absent ones as nulls): one missing was
    # removed since; a foreign table needs only the kind's required columns
    missing = [c for c in (kind.schema.names if strict else kind.needed) if c not in table.column_names]
    if missing:
        why = "" if strict else "no cxrcurate metadata, and "
        raise SchemaError(f"{origin}: {why}not a {kind.name} table: missing column(s) {missing}. Add them (the "
                          f"{kind.name} columns are {list(kind.schema.names)}) or write it with the cxrcurate "
                          "command that makes this kind")
    cols, fields = [], []
    for f in kind.schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            if col.type != f.type and (strict or pa.types.is_null(f.type)):
                raise SchemaError(f"{origin}: column {f.name!r} has type {col.type}, expected {f.type}; the file was "
                                  "edited or damaged: write it again with the command that made it")
            if col.type != f.type:
                try:
                    col = col.cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise SchemaError(f"{origin}: column {f.name!r} has type {col.type} and cannot be read as "
                                      f"{f.type} ({exc}); fix that column") from exc
        else:
            col = pa.nulls(table.num_rows, f.type)
        cols.append(col)
        fields.append(f)
    for name in table.column_names:
        if name not in kind.schema.names:
            cols.append(table.column(name))
            fields.append(table.schema.field(name))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def read_arrow(path: str | os.PathLike, kind: str | Sequence[str] | None = None) -> tuple[pa.Table, dict[str, Any]]:
    """Read and validate a table; return it with its metadata (``info['provenance']``: ``cxrcurate`` or ``unknown``).

    Args:
        path: a Parquet file (or CSV/TSV for a foreign table).
        kind: the kind(s) the caller can use; None accepts any kind written by cxrcurate.

    Raises:
        SchemaError: unreadable, another kind, another major version, or a required column missing.
    """
    path = Path(path)
    wanted = [kind] if isinstance(kind, str) else list(kind or [])
    info = table_info(path)
    table = _read_arrow(path)
    found = info.get("table")
    if found is None:
        if not wanted:
            raise SchemaError(f"{path}: no cxrcurate metadata, so its kind is unknown; pass the kind it should be "
                              f"read as (one of {kinds()})")
        k = get_kind(wanted[0])
        table = _conform(table, k, str(path), strict=False)
        msg = (f"{path}: no cxrcurate metadata; read as a {k.name} table because it has the required columns. "
               "Its provenance (sources, versions, build options) is unknown")
        log.warning(msg)
        info = {"table": k.name, "provenance": "unknown"}
    else:
        k = get_kind(found)
        if wanted and k.name not in [get_kind(w).name for w in wanted]:
            raise SchemaError(f"{path} is a {k.name} table; this needs a {' or '.join(wanted)} table")
        version = str(info.get("table_version", info.get("schema_version", k.version)))
        if version.split(".")[0] != k.version.split(".")[0]:
            raise SchemaError(f"{path}: {k.name} schema version {version} is not readable by this cxrcurate (version "
                              f"{k.version}); write it again with this version, or upgrade cxrcurate")
        table = _conform(table, k, str(path), strict=True)
        info = {**info, "table": k.name, "provenance": "cxrcurate"}
    if k.validate is not None:
        k.validate(table, str(path))
    return table, info


def read_table(path: str | os.PathLike, kind: str | Sequence[str] | None = None) -> pd.DataFrame:
    """``read_arrow`` as a pandas DataFrame; ``df.attrs['cxrcurate']`` holds the metadata (with ``table``) and
    ``df.attrs[FILE_ATTR]`` the resolved path it was read from."""
    table, info = read_arrow(path, kind)
    df = table.to_pandas()
    df.attrs["cxrcurate"] = info
    df.attrs[FILE_ATTR] = str(Path(path).resolve())  # set by the reader, never by the file: where it was read from
    return df
