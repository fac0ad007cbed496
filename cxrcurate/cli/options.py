"""Numeric command-line options with stated ranges: a value outside its range is refused by argparse (exit 2) with
the range in the message, before anything is read or allocated (``preprocess --size 100000`` would need tens of GB).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

WORKERS = (1, 512)  # processes; more than this is a typo, not a machine


def ranged(kind: type[int] | type[float], low: float, high: float, unit: str = "") -> Callable[[str], int | float]:
    """An argparse ``type`` that parses ``kind`` and accepts only ``low <= value <= high`` (finite)."""
    noun = "a whole number" if kind is int else "a number"
    span = f"{low:g}..{high:g}{' ' + unit if unit else ''}"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}; expected {span}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text} is out of range; expected {span}")
        return value

    parse.__name__ = f"{noun} in {span}"
    return parse


def workers() -> Callable[[str], int | float]:
    """The ``--workers`` type: processes, 1..512."""
    return ranged(int, *WORKERS, "processes")
