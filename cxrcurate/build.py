"""``build-manifest``: run source loaders, decode every image once, and write the manifest and dropped table.

Every file and metadata row a loader sees ends in exactly one of the two tables. Decoding runs in worker
processes with a progress bar; fingerprints are appended to a cache as they complete, so an interrupted build
resumes where it stopped and a rebuild only decodes new or changed files.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CxrcurateError, ImageDecodeError, UsageError
from .imageio import DEFAULT_MAX_PIXELS, fingerprint
from .labels import FRONTAL_VIEWS, VIEWS
from .manifest import write_dropped, write_manifest
from .sources import get_source
from .sources.base import MASK_WITHOUT_IMAGE, UNREADABLE, VIEW_EXCLUDED, Dropped, Record

log = logging.getLogger(__name__)

DEFAULT_VIEWS = ("PA", "AP", "AP_supine", "unknown")
CACHE_NAME = ".fingerprints.jsonl"


@dataclass
class BuildResult:
    """What a build wrote and counted."""

    manifest: Path
    dropped: Path
    n_images: int
    n_dropped: int
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def parse_source_spec(spec: str) -> tuple[str, Path]:
    """``NAME=PATH`` as given to ``--source``.

    Raises:
        CxrcurateError: when the spec has no ``=``.
    """
    if "=" not in spec:
        raise UsageError(f"--source {spec!r}: expected NAME=PATH, e.g. --source cohen=raw/cohen")
    name, path = spec.split("=", 1)
    return name.strip(), Path(path.strip()).expanduser()


def _fingerprint_job(args: tuple[str, int]) -> tuple[str, dict | None, str | None]:
    path, max_pixels = args
    try:
        return path, fingerprint(path, max_pixels=max_pixels), None
    except ImageDecodeError as exc:
        return path, None, str(exc)


class _FingerprintCache:
    """Fingerprints of decoded files keyed by (absolute path, size, mtime), appended as they complete."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[tuple[str, int, int], dict] = {}
        if path and path.exists():
            for line in path.read_text().splitlines():
                try:
                    e = json.loads(line)
                    self.entries[(e["file"], e["size"], e["mtime_ns"])] = e["fp"]
                except (json.JSONDecodeError, KeyError):
                    continue  # a line cut by an interrupted run
        self._fh = None

    @staticmethod
    def key(file: str) -> tuple[str, int, int]:
        st = os.stat(file)
        return file, st.st_size, st.st_mtime_ns

    def get(self, file: str) -> dict | None:
        return self.entries.get(self.key(file))

    def put(self, file: str, fp: dict) -> None:
        if self.path is None:
            return
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a")
        k = self.key(file)
        self._fh.write(json.dumps({"file": k[0], "size": k[1], "mtime_ns": k[2], "fp": fp}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh:
            self._fh.close()


def fingerprint_files(files: Sequence[str], workers: int | None = None, cache: Path | None = None,
                      max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = True) -> dict[str, dict | str]:
    """Fingerprint ``files`` in parallel; each maps to its fingerprint dict or to the decode error message."""
    from tqdm.auto import tqdm

    store = _FingerprintCache(cache)
    results: dict[str, dict | str] = {}
    todo = []
    for f in files:
        hit = store.get(f)
        if hit is not None:
            results[f] = hit
        else:
            todo.append(f)
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(files), initial=len(files) - len(todo), desc="decoding", unit="img", disable=not progress)
    try:
        jobs = ((f, max_pixels) for f in todo)
        if workers > 1 and len(todo) > 8:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                it: Iterable = pool.map(_fingerprint_job, jobs, chunksize=8)
                _collect(it, results, store, bar)
        else:
            _collect(map(_fingerprint_job, jobs), results, store, bar)
    finally:
        bar.close()
        store.close()
    return results


def _collect(it: Iterable, results: dict, store: _FingerprintCache, bar: Any) -> None:
    for path, fp, err in it:
        if fp is not None:
            results[path] = fp
            store.put(path, fp)
        else:
            results[path] = err
        bar.update(1)


def _record_row(name: str, rec: Record, root: Path, data_root: Path) -> dict[str, Any]:
    def data_rel(rel: str) -> str:
        return os.path.relpath(root / rel, data_root).replace(os.sep, "/")

    return {
        "image_id": f"{name}:{rec.rel}", "source": name, "source_record": rec.source_record,
        "patient_id": rec.patient_id, "path": data_rel(rec.rel), "url": rec.url, "license": rec.license,
        "label": rec.label, "finding_raw": rec.finding_raw, "view": rec.view,
        "frontal": None if rec.view == "unknown" else rec.view in FRONTAL_VIEWS, "modality": rec.modality,
        "age_years": rec.age_years, "sex": rec.sex, "pediatric": rec.pediatric,
        "pediatric_reason": rec.pediatric_reason, "mask_paths": [data_rel(m) for m in rec.mask_rels] or None,
        "extra": json.dumps(rec.extra, sort_keys=True, default=str) if rec.extra else None,
    }


def build_manifest(sources: Sequence[tuple[str, str | os.PathLike]], out: str | os.PathLike,
                   views: Iterable[str] = DEFAULT_VIEWS, data_root: str | os.PathLike | None = None,
                   workers: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = True,
                   ) -> BuildResult:
    """Build ``<out>/manifest.parquet`` and ``<out>/manifest.dropped.parquet`` from local source folders.

    Args:
        sources: ``(name, folder)`` pairs; names are registry names (see ``cxrcurate sources``).
        out: output folder (created).
        views: views to keep; others go to the dropped table as ``view_excluded``. The default keeps frontal
            views and ``unknown`` (most web-sourced COVID-19 images state no view; their ``frontal`` is null).
        data_root: folder that manifest paths are relative to; default: the sources' common parent.
        workers: decoding processes (default: all cores).
        max_pixels: larger images are refused as decompression bombs.
        progress: show a progress bar.

    Raises:
        UnknownSourceError, SourceError, ParseError: a source name, folder or metadata file is wrong.
    """
    started = time.time()
    views = tuple(views)
    bad = sorted(set(views) - set(VIEWS))
    if bad:
        raise CxrcurateError(f"unknown view(s) {bad}; choose from {list(VIEWS)}")
    if not sources:
        raise CxrcurateError("no sources given; use --source NAME=PATH (see `cxrcurate sources`)")
    loaded = [(get_source(n).name, get_source(n)(p)) for n, p in sources]
    names = [n for n, _ in loaded]
    if len(set(names)) != len(names):
        raise CxrcurateError(f"a source is given twice: {names}")
    roots = [src.root.resolve() for _, src in loaded]
    root = Path(data_root).resolve() if data_root else Path(os.path.commonpath([r.parent for r in roots]))
    out = Path(out)
    rows: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    source_info: dict[str, Any] = {}
    for name, src in loaded:
        for item in src.parse():
            if isinstance(item, Dropped):
                path = os.path.relpath(src.root.resolve() / item.rel, root).replace(os.sep, "/") if item.rel else None
                dropped.append({"source": name, "path": path, "source_record": item.source_record,
                                "reason": item.reason, "detail": item.detail})
            elif item.view not in views:
                row = _record_row(name, item, src.root.resolve(), root)
                dropped.append({"source": name, "path": row["path"], "source_record": item.source_record,
                                "reason": VIEW_EXCLUDED, "detail": f"view {item.view} not in {list(views)}"})
                dropped.extend({"source": name, "path": mask, "source_record": None, "reason": MASK_WITHOUT_IMAGE,
                                "detail": f"its image {row['path']} was excluded (view {item.view})"}
                               for mask in row["mask_paths"] or [])
            else:
                rows.append(_record_row(name, item, src.root.resolve(), root))
        source_info[name] = {"title": src.title, "homepage": src.homepage, "license": src.license,
                             **src.version(), "notes": src.notes}

    files = [str(root / r["path"]) for r in rows]
    fps = fingerprint_files(files, workers=workers, cache=out / CACHE_NAME, max_pixels=max_pixels,
                            progress=progress)
    kept = []
    for r, f in zip(rows, files, strict=True):
        fp = fps[f]
        if isinstance(fp, str):
            dropped.append({"source": r["source"], "path": r["path"], "source_record": r["source_record"],
                            "reason": UNREADABLE, "detail": fp})
            dropped.extend({"source": r["source"], "path": mask, "source_record": None, "reason": MASK_WITHOUT_IMAGE,
                            "detail": f"its image {r['path']} is unreadable"} for mask in r["mask_paths"] or [])
        else:
            kept.append({**r, **fp})
    import pandas as pd

    for name, counts in source_info.items():
        counts["records"] = sum(r["source"] == name for r in kept)
        counts["dropped"] = sum(d["source"] == name for d in dropped)
        log.info("%s: %d records, %d dropped", name, counts["records"], counts["dropped"])
    info = {
        "data_root": str(root), "sources": source_info,
        "build": {"views": list(views), "max_pixels": max_pixels, "command": "build-manifest",
                  "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "seconds": round(time.time() - started, 1)},
    }
    df = pd.DataFrame(kept)
    manifest = write_manifest(df if kept else [], out / "manifest.parquet", info)
    dropped_path = write_dropped(dropped, out / "manifest.dropped.parquet", info)
    by_reason = dict(Counter(d["reason"] for d in dropped).most_common())
    return BuildResult(manifest, dropped_path, len(kept), len(dropped), by_reason, info)
