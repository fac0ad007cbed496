"""How the bench feeds its model: the default tensor cache, worker count, loader settings, and where the training
augmentation runs. Measured in docs/bench.md ("Feeding the model", ``benchmarks/bench_feed.py``).

Decoding and preprocessing a picture costs 2-14 ms of one core (the lung U-Net most of it), reading it back from
the tensor cache well under 0.1 ms; so the bench fills the cache before training, by default in
``default_cache_dir()``, and reads from it every epoch after. On a GPU the augmentation moves to the device
(``BatchAugment``, one call per batch) and the loader workers only read, collate and pin memory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..fpcache import user_cache_dir
from ..preprocess.cache import build_cache

log = logging.getLogger(__name__)

CACHE_ENV = "CXRCURATE_CACHE"
MAX_AUTO_WORKERS = 16
PREFETCH = 4  # batches each worker prepares ahead on a GPU (torch's default is 2)


def default_cache_dir() -> Path:
    """The tensor cache the bench uses when ``--cache`` is not given: ``$CXRCURATE_CACHE``, else
    ``$XDG_CACHE_HOME/cxrcurate/tensors``, else ``~/.cache/cxrcurate/tensors``."""
    return user_cache_dir("tensors", CACHE_ENV)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_workers(cores: int | None = None) -> int:
    """DataLoader workers for this machine: one per core but one (the training process's), at most
    ``MAX_AUTO_WORKERS``; 0 (load in the main process) on a single core."""
    cores = available_cores() if cores is None else cores
    return max(0, min(MAX_AUTO_WORKERS, cores - 1))


def loader_settings(workers: int | None, cuda: bool) -> dict[str, Any]:
    """Keyword arguments of the bench's ``DataLoader``: worker count (None: ``auto_workers()``), and on CUDA
    pinned memory (asynchronous copies) and ``PREFETCH`` batches per worker."""
    n = auto_workers() if workers is None else int(workers)
    settings: dict[str, Any] = {"num_workers": n, "pin_memory": bool(cuda)}
    if n > 0 and cuda:
        settings["prefetch_factor"] = PREFETCH
    return settings


def wants_batch_augment(device: Any) -> bool:
    """True when the training augmentation should run per batch on ``device`` (a GPU) instead of per sample in
    the loader workers (a CPU: there both cost the same cores, and the per-sample path is the reference)."""
    return getattr(device, "type", str(device).split(":")[0]) == "cuda"


def fill_cache(rows: Any, root: Path, config: Any, cache: str | os.PathLike, device: Any = "cpu",
               workers: int | None = None, progress: bool = True) -> Any:
    """Preprocess the pictures of ``rows`` not yet in the tensor cache ``cache`` (``build_cache``); returns its
    ``CacheResult``, or None on a non-zero DDP rank (rank 0 fills, the others wait at a barrier).

    Raises:
        CxrcurateError: as ``build_cache`` (lung weights missing, unsafe paths).
    """
    import torch

    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    result = None
    if not dist or torch.distributed.get_rank() == 0:
        dev = str(device) if wants_batch_augment(device) else "cpu"
        result = build_cache(rows, cache, config, data_root=root, workers=workers or available_cores(),
                             progress=progress, device=dev)
        if result.computed or result.failed:
            log.info("tensor cache %s: %d computed, %d reused, %d failed, %d lung boxes reused (%.1f s)",
                     result.folder, result.computed, result.reused, result.failed, result.lungs_reused,
                     result.seconds)
    if dist:
        torch.distributed.barrier()
    return result
