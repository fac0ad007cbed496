"""The small real sample shipped inside the package (see README.md here for origins and licenses)."""

from __future__ import annotations

from pathlib import Path

SAMPLE_ROOT = Path(__file__).resolve().parent


def sample_sources() -> list[tuple[str, Path]]:
    """``(name, folder)`` pairs for ``build_manifest``, one per shipped source: each folder here is named after
    the source it samples."""
    return [(p.name, p) for p in sorted(SAMPLE_ROOT.iterdir()) if p.is_dir() and not p.name.startswith(("_", "."))]
