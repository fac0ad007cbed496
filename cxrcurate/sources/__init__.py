"""The source registry: ``cxrcurate sources`` lists it; a mistyped name answers "did you mean ...?"."""

from __future__ import annotations

import difflib
import importlib

from ..errors import UnknownSourceError
from .base import Dropped, Record, Source

__all__ = ["Source", "Record", "Dropped", "register", "get_source", "list_sources"]

_MODULES = ("cohen", "covid_cxnet", "hannover", "agchung", "nih_cxr14", "kermany", "nlm_tb", "radiopaedia", "sirm",
            "eurorad")
_REGISTRY: dict[str, type[Source]] = {}


def register(cls: type[Source]) -> type[Source]:
    """Class decorator adding a loader to the registry under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"source name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    for mod in _MODULES:
        importlib.import_module(f"{__name__}.{mod}")


def list_sources() -> dict[str, type[Source]]:
    """All registered loaders by name."""
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def get_source(name: str) -> type[Source]:
    """The loader class for ``name``.

    Raises:
        UnknownSourceError: with the closest names ("did you mean ...?") and the full list.
    """
    known = list_sources()
    key = name.strip().lower().replace("_", "-")
    if key in known:
        return known[key]
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownSourceError(f"unknown source {name!r}.{hint} Known sources: {', '.join(known)}")
