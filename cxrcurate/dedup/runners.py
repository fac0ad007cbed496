"""Where the per-image and per-pair work of dedup runs: local processes, or a Dask cluster (``distributed``).

A runner has three methods, each a map of a plain function over chunks, so every engine computes the same
numbers: ``fingerprint`` (each image's features from the per-picture cache or from one decode; verification
features to the store, candidate descriptors back), ``candidates`` (nearest-neighbour pairs from the whitened
descriptors) and ``verify``.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np

from .descriptors import N_CROPS, SIDE, candidate_pairs
from .store import fingerprint_chunk, verify_chunk

CHUNK = 256  # images per fingerprint task (one set of feature files in the store)
PAIR_BATCH = 512  # candidate pairs per verification task


def pair_batches(pairs: np.ndarray, chunk: int = CHUNK, batch: int = PAIR_BATCH) -> tuple[np.ndarray, list[np.ndarray]]:
    """Pairs ordered by the store chunks they read (few open files per task), cut into batches; with the order."""
    if not len(pairs):
        return np.zeros(0, np.int64), []
    order = np.lexsort((pairs[:, 1], pairs[:, 0], pairs[:, 1] // chunk, pairs[:, 0] // chunk))
    ordered = pairs[order]
    return order, [ordered[s:s + batch] for s in range(0, len(ordered), batch)]


def path_chunks(paths: list[str], chunk: int = CHUNK) -> list[list[str]]:
    return [paths[s:s + chunk] for s in range(0, len(paths), chunk)]


class LocalRunner:
    """Process pool on this machine (``workers`` processes; 1 = in this process)."""

    def __init__(self, workers: int, progress: bool = False) -> None:
        self.workers = workers
        self.progress = progress

    def _map(self, fn, *iterables, total: int, desc: str) -> list:
        from tqdm.auto import tqdm

        if self.workers > 1 and total > 1:
            with ProcessPoolExecutor(max_workers=self.workers) as pool:
                return list(tqdm(pool.map(fn, *iterables), total=total, desc=desc, disable=not self.progress))
        return [fn(*a) for a in tqdm(zip(*iterables, strict=True), total=total, desc=desc, disable=not self.progress)]

    def fingerprint(self, paths: list[str], store: str, keys: list[str] | None = None, cache: str | None = None,
                    tag: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        chunks = path_chunks(paths)
        n = len(chunks)
        key_chunks = path_chunks(keys) if keys is not None else [None] * n
        out = self._map(fingerprint_chunk, chunks, range(n), [store] * n, key_chunks, [cache] * n, [tag] * n,
                        total=n, desc="dedup features")
        return _stack(out)

    def candidates(self, white: np.ndarray, k: int) -> np.ndarray:
        return candidate_pairs(white, k, threads=self.workers)

    def verify(self, pairs: np.ndarray, store: str, thresholds: tuple[int, float, int, int]) -> np.ndarray:
        order, batches = pair_batches(pairs)
        n = len(batches)
        out = self._map(verify_chunk, batches, [store] * n, [CHUNK] * n, *([t] * n for t in thresholds), total=n,
                        desc="verifying")
        return unorder(out, order, len(pairs))

    def close(self) -> None:
        pass


def _stack(out: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunk results joined: descriptors, ok flags, and the feature-cache counts summed."""
    if not out:
        return np.zeros((0, N_CROPS, SIDE * SIDE), np.float32), np.zeros(0, bool), np.zeros(3, np.int64)
    return (np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out]),
            np.sum([o[2] for o in out], axis=0))


def unorder(results: list[np.ndarray], order: np.ndarray, n: int) -> np.ndarray:
    """Verification results back in the order of the pairs given to ``verify``."""
    out = np.zeros((n, 4))
    if n:
        out[order] = np.concatenate(results)
    return out
