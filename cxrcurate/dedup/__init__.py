"""Duplicates: exact (file and pixel hashes) and near copies (candidates from crop-tolerant descriptors searched
with faiss, perceptual hashes and shared names, verified by ORB/RANSAC), grouped by union-find with one kept copy
per group.

- ``hashindex``: all pairs of 64-bit hashes within a Hamming radius (multi-index hashing).
- ``descriptors``: canonical view, multi-crop descriptors, whitening, nearest-neighbour candidates.
- ``featcache``: each picture's features kept across runs by ``pixel_sha256`` (filled by the build's own decode).
- ``store``: each image's features from that cache or one decode; verification features on disk for the run.
- ``features``: the verification of a candidate pair.
- ``runners`` / ``distributed``: the per-image and per-pair maps in local processes or on a Dask cluster.
- ``groups``: the one union-find; the pairs and conflicts tables and where they live.
- ``engine``: candidates -> verified pairs -> groups, keep policy, label conflicts; ``dedup_manifest``.
"""

from __future__ import annotations

from .engine import (
    DedupOptions,
    DedupResult,
    assign_groups,
    cross_source_table,
    dedup,
    dedup_manifest,
    exact_pairs,
    find_conflicts,
    find_pairs,
    output_path,
)
from .groups import (
    PAIR_COLUMNS,
    UnionFind,
    carry_companions,
    components,
    conflicts_path,
    load_pairs,
    pairs_path,
    read_pairs,
)

__all__ = ["DedupOptions", "DedupResult", "assign_groups", "cross_source_table", "dedup", "dedup_manifest",
           "exact_pairs", "find_conflicts", "find_pairs", "output_path", "PAIR_COLUMNS", "carry_companions",
           "UnionFind", "components", "conflicts_path", "load_pairs", "pairs_path", "read_pairs"]
