"""The source registry: ``cxrcurate sources`` lists it; a mistyped name answers "did you mean ...?".

Every module of this package that defines a ``@register``-ed ``Source`` is found and imported on first use; the
source's class is its one record (how to read it, how it is fetched, its license, its dedup rank), and the
fetchers and dedup read these records from here.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TypeVar

from ..errors import UnknownSourceError, did_you_mean
from .base import DirectDownload, Dropped, ManualDownload, Record, Repository, Scraped, Source

__all__ = ["Source", "Record", "Dropped", "Repository", "ManualDownload", "Scraped", "DirectDownload", "register",
           "get_source", "list_sources", "fetch_records", "dedup_preference"]

_HELPERS = {"base", "casejson"}  # modules without a source of their own
_REGISTRY: dict[str, type[Source]] = {}


def register(cls: type[Source]) -> type[Source]:
    """Class decorator adding a loader to the registry under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"source name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _HELPERS:
            importlib.import_module(f"{__name__}.{info.name}")


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
    raise UnknownSourceError(did_you_mean(name, known, "source"))


F = TypeVar("F", Repository, ManualDownload, Scraped, DirectDownload)


def fetch_records(kind: type[F]) -> dict[str, F]:
    """The sources fetched as ``kind`` (``Repository``, ``ManualDownload``, ``Scraped``, ``DirectDownload``)."""
    return {name: cls.fetch for name, cls in list_sources().items() if isinstance(cls.fetch, kind)}


def dedup_preference() -> tuple[str, ...]:
    """Source names by ``dedup_rank`` (the copy dedup keeps by default comes first); unranked sources are left out
    and rank after every listed one."""
    ranked = [(cls.dedup_rank, name) for name, cls in list_sources().items() if cls.dedup_rank is not None]
    return tuple(name for _, name in sorted(ranked))
