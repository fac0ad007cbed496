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
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CxrcurateError, ImageDecodeError, UnsafeManifestPath, UsageError
from .fpcache import FingerprintCache
from .imageio import fingerprint_decoded, max_file_bytes, max_pixels_limit
from .labels import FRONTAL_VIEWS, VIEWS
from .manifest import check_output_folder, safe_path, write_dropped, write_manifest
from .sources import get_source
from .sources.base import MASK_WITHOUT_IMAGE, OUTSIDE_ROOT, UNREADABLE, VIEW_EXCLUDED, Dropped, Record

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


PictureHook = Callable[[str, np.ndarray], None]


def _fingerprint_job(args: tuple[str, int, int, PictureHook | None]) -> tuple[str, dict | None, str | None]:
    path, max_pixels, max_bytes, on_decode = args
    try:
        fp, pixels = fingerprint_decoded(path, max_pixels=max_pixels, max_bytes=max_bytes)
        if on_decode is not None:
            try:
                on_decode(fp["pixel_sha256"], pixels)
            except Exception as exc:  # noqa: BLE001 - the hook's work is optional; the picture is fingerprinted
                log.warning("%s: the per-picture hook failed on it (%s); the build goes on", path, exc)
        return path, fp, None
    except ImageDecodeError as exc:
        return path, None, str(exc)
    except MemoryError:  # hashing or pHash of a huge picture: this file is dropped, the build goes on
        return path, None, (f"{path}: out of memory while fingerprinting it; free memory, or lower "
                            "CXRCURATE_MAX_PIXELS / CXRCURATE_MAX_FILE_MB so such files are refused unread")


def fingerprint_files(files: Sequence[str], workers: int | None = None, cache: Path | None = None,
                      max_pixels: int | None = None, progress: bool = True, rehash: bool = False,
                      max_bytes: int | None = None, on_decode: PictureHook | None = None
                      ) -> dict[str, dict | str]:
    """Fingerprint ``files`` in parallel; each maps to its fingerprint dict or to the decode error message.

    ``cache`` (a JSON-lines file, see ``fpcache``) keeps finished fingerprints across runs; ``rehash`` ignores what
    it holds. ``max_pixels`` and ``max_bytes`` default to the limits in force (``imageio.max_pixels_limit``).
    ``on_decode(pixel_sha256, pixels)`` is called in the decoding worker for each picture decoded (not for files
    the fingerprint cache answers), so later stages can use the decode the build already paid for (``build-manifest
    --dedup`` passes ``dedup.featcache.store_decoded``). It must pickle (a module-level function or a
    ``functools.partial`` of one); an exception it raises is logged and the build goes on.
    """
    from tqdm.auto import tqdm

    max_pixels, max_bytes = max_pixels_limit(max_pixels), max_file_bytes(max_bytes)
    store = FingerprintCache(cache, rehash)
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
        jobs = ((f, max_pixels, max_bytes, on_decode) for f in todo)
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


def _collect(it: Iterable, results: dict, store: FingerprintCache, bar: Any) -> None:
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
                   workers: int | None = None, max_pixels: int | None = None, progress: bool = True,
                   rehash: bool = False, max_bytes: int | None = None,
                   on_decode: PictureHook | None = None) -> BuildResult:
    """Build ``<out>/manifest.parquet`` and ``<out>/manifest.dropped.parquet`` from local source folders.

    Args:
        sources: ``(name, folder)`` pairs; names are registry names (see ``cxrcurate sources``).
        out: output folder (created).
        views: views to keep; others go to the dropped table as ``view_excluded``. The default keeps frontal
            views and ``unknown`` (most web-sourced COVID-19 images state no view; their ``frontal`` is null).
        data_root: folder that manifest paths are relative to; default: the sources' common parent.
        workers: decoding processes (default: all cores).
        max_pixels: larger images are refused as decompression bombs (default: ``$CXRCURATE_MAX_PIXELS`` or 100M).
        max_bytes: larger files are refused unread (default: ``$CXRCURATE_MAX_FILE_MB`` MiB or 512 MiB).
        progress: show a progress bar.
        rehash: decode every file again instead of reusing the fingerprint cache in ``out``.
        on_decode: called with ``(pixel_sha256, pixels)`` of each picture the build decodes, in its worker (see
            ``fingerprint_files``); ``build-manifest --dedup`` stores dedup's features with it, so the dedup that
            follows reads them instead of decoding the collection again.

    Raises:
        UnknownSourceError, SourceError, ParseError: a source name, folder or metadata file is wrong.
        UsageError: ``out`` is a file, or a source folder is not inside ``data_root``.
        CxrcurateError: ``out`` cannot be written (checked before any file is decoded).
    """
    started = time.time()
    max_pixels, max_bytes = max_pixels_limit(max_pixels), max_file_bytes(max_bytes)
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
    for (name, _), r in zip(loaded, roots, strict=True):
        if r != root and root not in r.parents:
            raise UsageError(f"--source {name}={r} is not inside --data-root {root}; manifest paths must stay inside "
                             "the data root: pass a data root that holds every source folder")
    out = check_output_folder(out)  # after the sources' layouts are checked: a refused source creates no folder
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

    safe: list[dict[str, Any]] = []
    for r in rows:
        try:  # the loaders keep links inside their folder; this is the manifest's own rule, checked once more
            r["_file"] = str(safe_path(root, r["path"], r["image_id"]))
            safe.append(r)
        except UnsafeManifestPath as exc:
            dropped.append({"source": r["source"], "path": r["path"], "source_record": r["source_record"],
                            "reason": OUTSIDE_ROOT, "detail": str(exc)})
    rows = safe
    files = [r.pop("_file") for r in rows]
    fps = fingerprint_files(files, workers=workers, cache=out / CACHE_NAME, max_pixels=max_pixels,
                            progress=progress, rehash=rehash, max_bytes=max_bytes, on_decode=on_decode)
    kept = []
    for r, f in zip(rows, files, strict=True):
        fp = fps[f]
        if isinstance(fp, str):
            dropped.append({"source": r["source"], "path": r["path"], "source_record": r["source_record"],
                            "reason": UNREADABLE, "detail": fp})
            dropped.extend({"source": r["source"], "path": mask, "source_record": None, "reason": MASK_WITHOUT_IMAGE,
                            "detail": f"its image {r['path']} is unreadable"} for mask in r["mask_paths"] or [])
        else:
            fp = dict(fp)
            frames = fp.pop("frames", 1)
            if frames > 1:  # noted, not silent: the manifest describes the first frame only
                extra = {**json.loads(r["extra"] or "{}"), "frames": frames, "frame_used": 0}
                r = {**r, "extra": json.dumps(extra, sort_keys=True, default=str)}
                log.warning("%s: %d frames; only the first is used", r["path"], frames)
            kept.append({**r, **fp})
    import pandas as pd

    for name, counts in source_info.items():
        counts["records"] = sum(r["source"] == name for r in kept)
        counts["dropped"] = sum(d["source"] == name for d in dropped)
        log.info("%s: %d records, %d dropped", name, counts["records"], counts["dropped"])
    info = {
        "data_root": str(root), "sources": source_info,
        "build": {"views": list(views), "max_pixels": max_pixels, "max_file_bytes": max_bytes,
                  "command": "build-manifest",
                  "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "seconds": round(time.time() - started, 1)},
    }
    df = pd.DataFrame(kept)
    manifest = write_manifest(df if kept else [], out / "manifest.parquet", info)
    dropped_path = write_dropped(dropped, out / "manifest.dropped.parquet", info)
    by_reason = dict(Counter(d["reason"] for d in dropped).most_common())
    return BuildResult(manifest, dropped_path, len(kept), len(dropped), by_reason, info)
