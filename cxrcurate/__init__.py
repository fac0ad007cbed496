"""cxrcurate: honest, deduplicated, pediatric-bias-flagged manifests of public chest X-ray collections.

``import cxrcurate`` stays light: torch, datasets and OpenCV are imported only by the functions that need them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "read_manifest", "write_manifest", "build_manifest", "to_hf_dataset",
           "ManifestDataset", "get_source", "list_sources"]

_LAZY = {
    "read_manifest": "cxrcurate.manifest",
    "write_manifest": "cxrcurate.manifest",
    "build_manifest": "cxrcurate.build",
    "to_hf_dataset": "cxrcurate.hf",
    "ManifestDataset": "cxrcurate.torchdata",
    "get_source": "cxrcurate.sources",
    "list_sources": "cxrcurate.sources",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cxrcurate' has no attribute {name!r}")
