"""cxrcurate: honest, deduplicated, pediatric-bias-flagged manifests of public chest X-ray collections.

The public API, by stage of the data flow (fetch -> parse -> build -> dedup -> split -> datasets -> bench):
``fetch_source``; ``get_source``/``list_sources``; ``build_manifest``, ``read_manifest``/``write_manifest``;
``dedup_manifest`` (``cxrcurate.dedup.dedup`` on a DataFrame); ``make_split``/``leakage_report``;
``ManifestDataset``/``to_hf_dataset``; ``run_bench``; ``load_release`` (a published release as a DataFrame).
Every error cxrcurate raises on purpose is a ``CxrcurateError``.

``import cxrcurate`` stays light: the names load on first use, and torch, datasets and OpenCV are imported only
by the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "read_manifest": "cxrcurate.manifest",
    "write_manifest": "cxrcurate.manifest",
    "load_frame": "cxrcurate.manifest",
    "select_rows": "cxrcurate.manifest",
    "build_manifest": "cxrcurate.build",
    "get_source": "cxrcurate.sources",
    "list_sources": "cxrcurate.sources",
    "fetch_source": "cxrcurate.fetch",
    "dedup_manifest": "cxrcurate.dedup",
    "DedupOptions": "cxrcurate.dedup",
    "make_split": "cxrcurate.splits",
    "leakage_report": "cxrcurate.splits",
    "ManifestDataset": "cxrcurate.datasets",
    "to_hf_dataset": "cxrcurate.datasets",
    "run_bench": "cxrcurate.bench.run",
    "BenchOptions": "cxrcurate.bench.run",
    "CxrcurateError": "cxrcurate.errors",
    "load_release": "cxrcurate.release",
}

__all__ = [
    "__version__", "read_manifest", "write_manifest", "load_frame", "select_rows", "build_manifest", "get_source",
    "list_sources", "fetch_source", "dedup_manifest", "DedupOptions", "make_split", "leakage_report",
    "ManifestDataset", "to_hf_dataset", "run_bench", "BenchOptions", "CxrcurateError",
    "load_release",
]
assert set(__all__) == {"__version__", *_LAZY}

if TYPE_CHECKING:
    from .bench.run import BenchOptions, run_bench
    from .build import build_manifest
    from .datasets import ManifestDataset, to_hf_dataset
    from .dedup import DedupOptions, dedup_manifest
    from .errors import CxrcurateError
    from .fetch import fetch_source
    from .manifest import load_frame, read_manifest, select_rows, write_manifest
    from .release import load_release
    from .sources import get_source, list_sources
    from .splits import leakage_report, make_split


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cxrcurate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
