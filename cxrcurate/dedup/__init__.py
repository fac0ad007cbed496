"""Duplicates: exact (file and pixel hashes) and near copies (candidates from perceptual hashes, thumbnails and
shared names, verified by ORB/RANSAC), grouped by union-find with one kept copy per group.

- ``hashindex``: all pairs of 64-bit hashes within a Hamming radius (multi-index hashing).
- ``features``: per-image features and the verification of a candidate pair (run in worker processes).
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
    pairs_path,
    read_pairs,
)

__all__ = ["DedupOptions", "DedupResult", "assign_groups", "cross_source_table", "dedup", "dedup_manifest",
           "exact_pairs", "find_conflicts", "find_pairs",
           "pairs_path", "read_pairs"]
