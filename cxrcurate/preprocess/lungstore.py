"""Lung boxes computed once per picture and lung model, beside the tensor cache.

A lung box depends only on the pixels and on the lung config (weights and post-processing: ``lung_hash``), not on
the output size, the channels or the histogram step. The U-Net is the slowest step of preprocessing by far (about
7x the enhancement per image on a CPU, docs/bench.md), so ``build_cache`` stores each picture's box here and every
later config with the same lung hash (another size, another rung, a rebuilt cache folder) crops with it instead of
running the network again.

Layout: ``CACHE/lungs-<lung_hash>/boxes.jsonl``, one JSON line per picture: ``sha`` (pixel_sha256), ``lungs``
(``found`` / ``not_found``), ``box`` (top, bottom, left, right; end-exclusive, image coordinates, or null),
``shape`` (height, width). Only the process that runs ``build_cache`` appends to it (workers return their boxes),
so lines never interleave; a torn last line after a kill is ignored and its picture segmented again. Torch-free.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import CxrcurateError
from .config import PreprocessConfig

KNOWN_STATUS = ("found", "not_found")


def lung_folder(cache: str | os.PathLike, config: PreprocessConfig) -> Path | None:
    """The folder of ``config``'s lung boxes in the cache ``cache`` (None when the config crops nothing)."""
    h = config.lung_hash()
    return None if h is None else Path(cache) / f"lungs-{h}"


class LungStore:
    """The lung boxes of one lung config in one cache: ``get`` what is known, ``add`` what was computed.

    Args:
        cache: the tensor cache folder.
        config: the preprocessing config (only its lung fields matter).

    Raises:
        LungWeightsError: the config names lung weights that do not exist.
        CxrcurateError: the config crops nothing (no lung weights).
    """

    def __init__(self, cache: str | os.PathLike, config: PreprocessConfig) -> None:
        folder = lung_folder(cache, config)
        if folder is None:
            raise CxrcurateError("a lung store needs a config with lung weights (lungs is none)")
        self.folder = folder
        self.path = folder / "boxes.jsonl"
        self.boxes: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    if rec["lungs"] in KNOWN_STATUS:
                        self.boxes[rec["sha"]] = {"lungs": rec["lungs"], "box": rec["box"], "shape": rec["shape"]}
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue

    def __len__(self) -> int:
        return len(self.boxes)

    def get(self, sha: str) -> dict[str, Any] | None:
        """``{"lungs", "box", "shape"}`` of the picture ``sha``, or None when it was never segmented."""
        return self.boxes.get(sha)

    def add(self, records: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Append ``(sha, info)`` pairs (info as ``Preprocessor`` returns it) that are new; returns how many."""
        lines = []
        for sha, info in records:
            if sha in self.boxes or info.get("lungs") not in KNOWN_STATUS:
                continue
            rec = {"lungs": info["lungs"], "box": info.get("box"), "shape": info.get("shape")}
            self.boxes[sha] = rec
            lines.append(json.dumps({"sha": sha, **rec}) + "\n")
        if lines:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as fh:
                fh.writelines(lines)
        return len(lines)
