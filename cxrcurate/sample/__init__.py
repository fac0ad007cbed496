"""The small real sample shipped inside the package (see README.md here for origins and licenses)."""

from __future__ import annotations

import shutil
from pathlib import Path

SAMPLE_ROOT = Path(__file__).resolve().parent


def sample_sources() -> list[tuple[str, Path]]:
    """``(name, folder)`` pairs for ``build_manifest``, one per shipped source: each folder here is named after
    the source it samples."""
    return [(p.name, p) for p in sorted(SAMPLE_ROOT.iterdir()) if p.is_dir() and not p.name.startswith(("_", "."))]


def copy_sample(out: str | Path) -> list[tuple[str, Path]]:
    """The shipped sample copied into ``out`` (one folder per source, 2 MB): ``(name, folder)`` pairs for
    ``build_manifest``. A manifest written into ``out`` then sits in its own data root, so every command finds its
    images without ``--data-root`` (a data root is never read from a manifest)."""
    out = Path(out)
    copied = []
    for name, folder in sample_sources():
        shutil.copytree(folder, out / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.py", "*.pyc"))
        copied.append((name, out / name))
    return copied
