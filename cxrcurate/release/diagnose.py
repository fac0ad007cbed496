"""Why a user's files do not match a release, and the way forward.

``verify_release`` says which files are missing, changed or extra; ``diagnose`` says why where the files show it:

- **another layout**: a missing file whose file name sits elsewhere under the root (``ROOT/covid-chestxray-dataset-
  main/images/x.jpg`` for the release's ``cohen/images/x.jpg``). The folders are mapped (release folder -> the
  user's) so the message can say which folder to move where.
- **resized copies**: a changed file (or a same-named file elsewhere) whose width/height differ from the release's
  original file (read from the image header, nothing decoded).
- **re-encoded or edited copies**: the release's dimensions, other bytes.

Kept apart from ``verify`` (which only compares) so each reads on its own.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..fetch.download import file_sha256
from ..imageio import is_image_name
from .verify import VerifyReport, _table

MAX_EXAMPLES = 3


@dataclass
class Diagnosis:
    """What the files under a root say about a mismatch with a release (see the module docstring)."""

    release: str
    root: Path
    moved: dict[str, str] = field(default_factory=dict)  # release path -> same file name elsewhere under root
    moved_identical: int = 0  # of ``moved``, byte-identical to the release's file
    folders: Counter = field(default_factory=Counter)  # (release folder, folder under root) -> files
    resized: list[dict[str, Any]] = field(default_factory=list)  # path, found, release_size, found_size
    reencoded: list[dict[str, Any]] = field(default_factory=list)  # path, found, size

    def to_dict(self) -> dict[str, Any]:
        """The diagnosis for ``verify --format json``."""
        return {"moved": len(self.moved), "moved_identical": self.moved_identical,
                "folders": [{"release": a, "found": b, "files": n} for (a, b), n in self.folders.most_common()],
                "moved_examples": dict(list(self.moved.items())[:MAX_EXAMPLES]),
                "resized": self.resized, "reencoded": self.reencoded, "advice": self.lines()}

    def lines(self) -> list[str]:
        """What the mismatch most likely is, with the way forward (empty when nothing is recognised)."""
        fetch = f"`cxrcurate fetch --release {self.release} --out {self.root}`"
        out = []
        if self.moved:
            moves = [f"{_move(self.root, a, b)} ({n:,} files)" for (a, b), n in self.folders.most_common(5)]
            out.append(f"ANOTHER LAYOUT: {len(self.moved):,} missing files have the same file name elsewhere under "
                       f"{self.root} ({self.moved_identical:,} of them byte-identical to the release's). The release "
                       "expects ROOT/<source>/<path in the repository>; move the folders (" + "; ".join(moves)
                       + f") or fetch into the release's layout with {fetch}.")
        if self.resized:
            e = self.resized[0]
            out.append(f"RESIZED COPIES: {len(self.resized):,} files have other dimensions than the release's "
                       f"original files (e.g. {e['found']}: {e['found_size']} here, {e['release_size']} published). "
                       "These are not the published files; the release identifies originals by sha256. Fetch the "
                       f"originals with {fetch}.")
        if self.reencoded:
            e = self.reencoded[0]
            out.append(f"RE-ENCODED OR EDITED COPIES: {len(self.reencoded):,} files have the release's dimensions "
                       f"but other bytes (e.g. {e['found']}, {e['size']}): saved again or edited after download. "
                       f"Fetch the originals with {fetch}.")
        return out


def _move(root: Path, release_folder: str, found_folder: str) -> str:
    """The step that puts ``root/found_folder`` where the release expects ``root/release_folder``."""
    if release_folder == ".":  # the release's layout sits one level down
        return f"pass --root {root / found_folder}"
    if found_folder == ".":  # the root is itself the folder the release calls release_folder
        return f"pass the folder holding it as --root, with this folder named {release_folder}"
    target = root / release_folder
    return f"`mkdir -p {target.parent} && mv {root / found_folder} {target}`"


def _header_size(path: Path) -> str | None:
    """``WxH`` from the image header (not decoded), or None when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return f"{im.width}x{im.height}"
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _names(root: Path, skip: set[str]) -> dict[str, list[str]]:
    """Every image file under ``root`` by file name (paths relative to root, ``skip`` left out)."""
    index: dict[str, list[str]] = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            rel = Path(dirpath, name).relative_to(root).as_posix()
            if is_image_name(name) and not name.startswith(".") and rel not in skip:
                index.setdefault(name, []).append(rel)
    return index


def _common_tail(a: str, b: str) -> int:
    n = 0
    for x, y in zip(reversed(a.split("/")), reversed(b.split("/")), strict=False):
        if x != y:
            break
        n += 1
    return n


def diagnose(release: str | os.PathLike, root: str | os.PathLike, report: VerifyReport) -> Diagnosis:
    """Look at the files under ``root`` for the reasons of ``report``'s missing and changed files."""
    root = Path(root)
    df = _table(release).set_index("path")
    result = Diagnosis(str(release), root)
    checks: list[tuple[str, str]] = [(p, p) for p in report.changed]  # (release path, file under root)
    if report.missing:
        index = _names(root, set(df.index))
        for path in report.missing:
            found = index.get(path.rsplit("/", 1)[-1])
            if not found:
                continue
            best = max(found, key=lambda c, p=path: _common_tail(p, c))
            result.moved[path] = best
            tail = _common_tail(path, best)
            result.folders[("/".join(path.split("/")[:-tail]) or ".", "/".join(best.split("/")[:-tail]) or ".")] += 1
            if file_sha256(root / best) == df.at[path, "file_sha256"]:
                result.moved_identical += 1
            else:
                checks.append((path, best))
    for path, found in checks:
        here = _header_size(root / found)
        published = f"{int(df.at[path, 'width'])}x{int(df.at[path, 'height'])}"
        if here is None:
            continue
        if here != published:
            result.resized.append({"path": path, "found": found, "release_size": published, "found_size": here})
        else:
            result.reencoded.append({"path": path, "found": found, "size": here})
    return result
