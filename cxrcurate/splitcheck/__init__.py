"""Checking a split made elsewhere, and measuring what a leak is worth (torch-free).

- ``files``: read other people's split files (COVIDx label files of every published shape, CSV/TSV/Parquet tables,
  a saved Hugging Face ``DatasetDict``, a folder of per-split Parquet files) into entries.
- ``match``: map entries onto the rows of a full manifest (sha256 of the file or of the original, path, file name
  within a source); every unmatched entry keeps its reason.
- ``crossings``: every pair of rows on two sides and what links them; a montage of them.
- ``measure``: nearest neighbours across a split, the k-NN memorisation gain against a unit-aware split of the same
  rows, and source confounds, with unit-bootstrap CIs (``measure_leak``).

Units and leaks come from ``splits`` (``split_groups``, ``leakage_report``); nothing here links rows on its own.
"""

from __future__ import annotations

from .crossings import crossings, montage
from .files import read_split_files
from .match import MatchResult, match_entries
from .measure import LeakMeasure, measure_leak, measure_split_table, per_image_split

__all__ = ["LeakMeasure", "MatchResult", "crossings", "match_entries", "measure_leak", "measure_split_table", "montage",
           "per_image_split", "read_split_files"]
