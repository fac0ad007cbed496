"""The preprocessed-image cache: each picture preprocessed once per config, read back as ready tensors.

Layout (one folder per config hash, one ``.npy`` file per distinct picture)::

    CACHE/<config_hash>/config.json              the config, what its hash covers, the cxrcurate version
    CACHE/<config_hash>/<ab>/<pixel_sha256>.npy  (C, size, size) uint8; <ab> = first two hex digits of the hash
    CACHE/<config_hash>/info.jsonl               one JSON line per computed picture: lung status and crop box
    CACHE/lungs-<lung_hash>/boxes.jsonl          one lung box per picture, shared by every size and rung
                                                 (``preprocess.lungstore``: the U-Net runs once per picture)

The key is (``pixel_sha256``, ``config_hash``): copies of one picture (same pixels) share a file, and a changed
config (or changed lung weights, or reference image) lands in a fresh folder, so stale tensors are never served;
the old folder stays until deleted (``build_cache`` logs which ones are there). One file per picture, rather than
shards, keeps every write atomic and independent (temporary file + rename), so an interrupted build loses nothing
but the pictures in flight, a resumed one skips what exists, and no index can get out of step with the data.
Reading one 320x320x3 file is a single ``np.load`` (``mmap=True`` maps it instead). ``info.jsonl`` is
informational; a torn last line (after a kill) is ignored.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import CxrcurateError, UnsafeManifestPath
from ..imageio import decode_image, pixel_sha256
from ..manifest import load_frame, resolve_data_root, row_paths
from .config import PreprocessConfig
from .lungstore import LungStore

log = logging.getLogger(__name__)

_STALE_TMP_SECONDS = 600
_SHA256 = re.compile(r"[0-9a-f]{64}")
_WORKER: dict[str, Any] = {}


def cache_folder(cache: str | os.PathLike, config: PreprocessConfig) -> Path:
    """The folder of ``config``'s entries inside the cache ``cache``."""
    return Path(cache) / config.config_hash()


def entry_path(folder: Path, sha: str, row: str | None = None) -> Path:
    """Where the picture with pixel hash ``sha`` is stored in a config folder.

    Raises:
        UnsafeManifestPath: ``sha`` is not 64 lowercase hex digits (an entry name is never built from anything else).
    """
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        where = f"row {row!r}" if row else "a manifest row"
        raise UnsafeManifestPath(f"{where}: pixel_sha256 {str(sha)[:80]!r} is not a sha256 (64 lowercase hex digits); "
                                 "refused as a cache entry name. Rebuild the manifest with `cxrcurate build-manifest`")
    return folder / sha[:2] / f"{sha}.npy"


def _write_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` atomically (a temporary file in the same folder, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _init_worker(config: dict[str, Any], device: str, single_thread: bool = True) -> None:
    """Set up one preprocessor per process; in a pool, single-threaded (the pool is the parallelism)."""
    if single_thread:
        import cv2

        cv2.setNumThreads(1)
        if PreprocessConfig.from_dict(config).lungs_path is not None:
            import torch

            torch.set_num_threads(1)
    # cv2: loaded only when a cache is built
    from .pipeline import Preprocessor

    _WORKER["pre"] = Preprocessor(PreprocessConfig.from_dict(config), device)


def _job(item: tuple[str, str, str, str, dict | None]) -> tuple[str, str, dict[str, Any] | None, str | None]:
    """Preprocess one picture and store it: ``(sha, image_id, info, error)``; exactly one of info/error is set.
    The item's last field is the picture's stored lung box (None: segment it here)."""
    sha, image_id, path, folder, lungs = item
    try:
        pixels = decode_image(path).pixels
        if pixel_sha256(pixels) != sha:
            return sha, image_id, None, (f"{path}: pixels differ from the manifest's pixel_sha256 (the file changed "
                                         "since the manifest was built); rebuild the manifest")
        output, info = _WORKER["pre"](pixels, lungs)
        _write_npy(entry_path(Path(folder), sha), output)
        return sha, image_id, info, None
    except (CxrcurateError, ValueError) as exc:  # this picture only (unreadable, odd); disk errors still stop the build
        return sha, image_id, None, str(exc)


def _lung_input(item: tuple, size: int) -> tuple[str, np.ndarray | None, list[int]]:
    """A picture's U-Net input at ``size`` (None for a blank or tiny picture: no lungs) and its shape; ``(sha,
    None, [])`` when it cannot be read (the main pass reports why)."""
    import cv2

    # torch: loaded only when lungs are segmented
    from .lungs import too_plain

    sha, path = item[0], item[2]
    try:
        pixels = decode_image(path).pixels
    except (CxrcurateError, ValueError):
        return sha, None, []
    if pixel_sha256(pixels) != sha:
        return sha, None, []
    if too_plain(pixels):
        return sha, None, list(pixels.shape)
    return sha, cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA), list(pixels.shape)


def segment_batched(items: list[tuple], store: LungStore, config: PreprocessConfig, device: str, workers: int,
                    batch_size: int = 128) -> int:
    """Segment the pictures of ``items`` in batches on ``device`` and add their boxes to ``store``; returns how
    many were added. Worker processes decode and shrink the pictures to the U-Net's input; the network sees
    ``batch_size`` at a time (a GPU's way: on a CPU one picture at a time in each worker is as fast, and the build
    does that instead, without decoding twice)."""
    import multiprocessing

    # torch: loaded only when lungs are segmented
    from .lungs import LungSegmenter

    c = config
    seg = LungSegmenter(c.lungs_path, threshold=c.mask_threshold, dilate=c.mask_dilate, margin=c.crop_margin,
                        min_fraction=c.min_lung_fraction, device=device)
    job = partial(_lung_input, size=seg.size)
    added = 0

    def flush(batch: list[tuple[str, np.ndarray | None, list[int]]]) -> int:
        ready = [b for b in batch if b[1] is not None]
        probs = seg.probabilities_batch([b[1] for b in ready], batch_size) if ready else []
        boxes = {sha: seg.box_from_probabilities(p, shape)[1] for (sha, _, shape), p in zip(ready, probs, strict=True)}
        records = [(sha, {"lungs": "found" if boxes.get(sha) else "not_found", "shape": shape,
                          "box": list(boxes[sha]) if boxes.get(sha) else None}) for sha, _, shape in batch if shape]
        return store.add(records)

    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else None
    try:
        results = pool.map(job, items, chunksize=8) if pool else map(job, items)
        batch: list[tuple[str, np.ndarray | None, list[int]]] = []
        for res in results:
            batch.append(res)
            if len(batch) >= 8 * batch_size:
                added += flush(batch)
                batch = []
        added += flush(batch)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    return added


@dataclass
class CacheResult:
    """What ``build_cache`` did: counts are of distinct pictures (copies share one entry)."""

    folder: Path
    config_hash: str
    computed: int = 0
    reused: int = 0
    failed: int = 0
    no_lungs: int = 0
    lungs_reused: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)


def read_info(folder: Path) -> dict[str, dict[str, Any]]:
    """``info.jsonl`` of a config folder as ``{pixel_sha256: info}`` (unreadable lines skipped)."""
    out: dict[str, dict[str, Any]] = {}
    path = folder / "info.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
                out[rec["sha"]] = rec
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return out


def _prepare_folder(cache: Path, config: PreprocessConfig) -> tuple[Path, str]:
    """Create the config folder with its ``config.json``; clear temporary files left by a killed build."""
    h = config.config_hash()
    folder = cache / h
    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / "config.json"
    if not meta.exists():
        tmp = folder / ".config.json.tmp"
        tmp.write_text(json.dumps({"config_hash": h, "config": config.to_dict(), "hashed": config.hash_payload(),
                                   "cxrcurate_version": __version__, "layout": "<ab>/<pixel_sha256>.npy, (C, H, W) "
                                   "uint8"}, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, meta)
    now = time.time()
    for tmp in folder.glob("*/.*.tmp"):
        if now - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
            tmp.unlink(missing_ok=True)
    others = sorted(p.name for p in cache.iterdir() if p.is_dir() and p.name != h and (p / "config.json").exists())
    if others:
        log.info("other configs cached in %s (delete their folders to free space): %s", cache, ", ".join(others))
    return folder, h


def build_cache(manifest: Any, cache: str | os.PathLike, config: PreprocessConfig,
                data_root: str | os.PathLike | None = None, workers: int | None = None, progress: bool = True,
                device: str = "cpu") -> CacheResult:
    """Preprocess every distinct picture of ``manifest`` that is not cached yet for ``config``.

    Parallel over ``workers`` processes (default: all cores), with a progress bar; resumable (existing entries are
    skipped) and safe to interrupt (atomic writes). With lung weights, each picture's lung box is read from the
    cache's ``LungStore`` when an earlier build (any size or rung with the same lung model) computed it, and
    stored there otherwise; on a ``device`` other than the CPU the missing boxes are first computed in batches.
    A picture that fails (unreadable file, changed file) is counted and reported, not fatal; it is retried by the
    next run. Workers are spawned, not forked (torch and fork do not mix), so a script that calls this with
    ``workers > 1`` needs the ``if __name__ == "__main__":`` guard.

    Raises:
        CxrcurateError: the data root is unknown, or the lung weights the config names cannot be loaded.
        UnsafeManifestPath: a row names a file outside the data root or a pixel_sha256 that is not a sha256.
    """
    from tqdm.auto import tqdm

    start = time.monotonic()
    df = load_frame(manifest)
    root = resolve_data_root(df, data_root)
    firsts = df.drop_duplicates("pixel_sha256")
    paths = row_paths(firsts, root)  # every path and entry name checked before any file is opened or written
    for sha, iid in zip(firsts["pixel_sha256"], firsts["image_id"], strict=True):
        entry_path(Path(cache), sha, iid)
    folder, h = _prepare_folder(Path(cache), config)
    items = [(sha, iid, str(p), str(folder), None) for sha, iid, p in
             zip(firsts["pixel_sha256"], firsts["image_id"], paths, strict=True)]
    todo = [it for it in items if not entry_path(folder, it[0]).exists()]
    result = CacheResult(folder, h, reused=len(items) - len(todo))
    workers = max(1, workers or os.cpu_count() or 1)
    store = None
    if todo and config.lungs_path is not None:
        # torch: loaded only when lung weights are read
        from .lungs import load_weights

        load_weights(config.lungs_path)  # fail here, once, with the clear message, not in every worker
        store = LungStore(cache, config)
        missing = [it for it in todo if store.get(it[0]) is None]
        if missing and str(device) != "cpu":
            segment_batched(missing, store, config, str(device), workers)
            device = "cpu"  # every readable picture has its box now: the workers only crop and enhance
        todo = [(*it[:4], store.get(it[0])) for it in todo]
        result.lungs_reused = sum(1 for it in todo if it[4] is not None)
    bar = tqdm(total=len(items), initial=result.reused, desc="preprocess", unit="img",
               disable=not progress or not todo)
    with open(folder / "info.jsonl", "a") as info_fh:
        def collect(results: Any) -> None:
            for sha, image_id, info, error in results:
                if error is None:
                    result.computed += 1
                    if store is not None:
                        store.add([(sha, info or {})])
                    info_fh.write(json.dumps({"sha": sha, "image_id": image_id, **(info or {})}) + "\n")
                    info_fh.flush()
                else:
                    result.failed += 1
                    result.errors.append((image_id, error))
                    log.warning("%s: %s", image_id, error)
                bar.update(1)

        try:
            if workers > 1 and len(todo) > 2 * workers:
                import multiprocessing

                pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_init_worker, initargs=(config.to_dict(), device))
                try:
                    collect(pool.map(_job, todo, chunksize=4))
                finally:
                    pool.shutdown(wait=True, cancel_futures=True)
            elif todo:
                _init_worker(config.to_dict(), device, single_thread=False)  # leave the caller's threads alone
                collect(map(_job, todo))
        finally:
            bar.close()
    infos = read_info(folder)
    result.no_lungs = sum(1 for it in items if infos.get(it[0], {}).get("lungs") == "not_found")
    result.seconds = time.monotonic() - start
    return result
