"""What dedup's groups are made of, written once: the union-find, and the pairs and conflicts tables.

- ``UnionFind`` / ``components``: the one union-find of the project. Dedup joins the rows of accepted pairs into
  duplicate groups; ``splits`` joins rows sharing a patient, a group or a hash into units. In both the root of a
  component is its smallest row position, so a group or unit id never depends on the order links arrive in.
- The ``pairs`` table (every candidate pair with its evidence and the decision) and the ``conflicts`` table
  (groups whose copies disagree), as table kinds (``tables.register``), and where they live: beside the table they
  belong to (``tables.beside``: ``manifest.parquet`` -> ``manifest.pairs.parquet``, ``open.parquet`` ->
  ``open.pairs.parquet``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ..tables import TableKind, beside, read_table, register, table_info, write_table

PAIRS_SCHEMA = pa.schema([
    pa.field("image_a", pa.string(), nullable=False, metadata={"description": "image_id of one copy"}),
    pa.field("image_b", pa.string(), nullable=False, metadata={"description": "image_id of the other copy"}),
    pa.field("kind", pa.string(), metadata={"description": "how the pair was found: file, pixel, phash, name, ann "
                                                           "(joined by + when several)"}),
    pa.field("hamming", pa.int64(), metadata={"description": "pHash Hamming distance"}),
    pa.field("inliers", pa.int64(), metadata={"description": "RANSAC inliers, or matches at the stage reached; "
                                                             "-1 for exact copies"}),
    pa.field("score", pa.float64(), metadata={"description": "robust correlation of the aligned pixels"}),
    pa.field("accepted", pa.bool_(), nullable=False, metadata={"description": "verified as one picture"}),
    pa.field("stage", pa.string(), metadata={"description": "exact, gate, matches or ransac"}),
])
CONFLICTS_SCHEMA = pa.schema([
    pa.field("dup_group", pa.string(), nullable=False),
    pa.field("field", pa.string(), nullable=False, metadata={"description": "label, pediatric, sex or age"}),
    pa.field("values", pa.string(), metadata={"description": "the values the copies carry (JSON)"}),
    pa.field("images", pa.string(), metadata={"description": "image_id -> value (JSON)"}),
    pa.field("sources", pa.string(), metadata={"description": "comma-separated sources of the group"}),
])
PAIR_COLUMNS = list(PAIRS_SCHEMA.names)
_OWN_KEYS = ("table", "table_version", "cxrcurate_version", "provenance")

PAIRS_KIND = register(TableKind("pairs", "1.0", PAIRS_SCHEMA, decimals=4))
CONFLICTS_KIND = register(TableKind("conflicts", "1.0", CONFLICTS_SCHEMA))


class UnionFind:
    """Union-find over ``n`` row positions; the root of a component is its smallest position."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def roots(self) -> np.ndarray:
        """The root of every position (int64)."""
        return np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int64)


def components(n: int, links: Iterable[tuple[int, int]]) -> np.ndarray:
    """Root (smallest member) of each of ``n`` positions' connected component over ``links``."""
    uf = UnionFind(n)
    for a, b in links:
        uf.union(int(a), int(b))
    return uf.roots()


def pairs_path(table: str | os.PathLike) -> Path:
    """Where the pairs table of ``table`` lives: ``<name>.pairs.parquet`` beside it."""
    return beside(table, "pairs")


def conflicts_path(table: str | os.PathLike) -> Path:
    """Where the conflicts table of ``table`` lives: ``<name>.conflicts.parquet`` beside it."""
    return beside(table, "conflicts")


def read_pairs(table: str | os.PathLike) -> pd.DataFrame | None:
    """The pairs table beside ``table`` (a manifest or a release's ``open.parquet``), or None when there is none.

    Raises:
        SchemaError: the file beside it is not a pairs table.
    """
    path = pairs_path(table)
    return read_table(path, "pairs") if path.is_file() else None


def carry_companions(table: str | os.PathLike, copy: str | os.PathLike) -> list[Path]:
    """Copy the pairs and conflicts tables beside ``table`` to beside ``copy`` (a command that wrote ``table``'s rows
    to ``copy`` without changing its groups), so the copy keeps its evidence; returns the files written."""
    written = []
    if Path(table).resolve() == Path(copy).resolve():
        return written
    for kind in ("pairs", "conflicts"):
        src = beside(table, kind)
        if src.is_file():
            written.append(write_table(read_table(src, kind), beside(copy, kind), kind,
                                       {k: v for k, v in table_info(src).items() if k not in _OWN_KEYS}))
    return written


def load_pairs(pairs: pd.DataFrame | str | os.PathLike | None) -> pd.DataFrame | None:
    """``pairs`` itself if a DataFrame (or None), else the pairs table file it names, read and checked."""
    if pairs is None or isinstance(pairs, pd.DataFrame):
        return pairs
    return read_table(pairs, "pairs")
