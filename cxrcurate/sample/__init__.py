"""The small real sample shipped inside the package (see README.md here for origins and licenses)."""

from __future__ import annotations

from pathlib import Path

SAMPLE_ROOT = Path(__file__).resolve().parent
SAMPLE_SOURCES = ("cohen", "covid-cxnet", "hannover", "nih-cxr14")


def sample_sources() -> list[tuple[str, Path]]:
    """``(name, folder)`` pairs for ``build_manifest``, one per shipped source."""
    return [(name, SAMPLE_ROOT / name) for name in SAMPLE_SOURCES]
