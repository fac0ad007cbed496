"""Dedup past one machine on Dask distributed (``--engine dask [--scheduler tcp://HOST:8786]``).

Why Dask rather than Ray: the work is three embarrassingly parallel maps over numpy arrays, which
``Client.map`` expresses directly; ``distributed`` is pure Python (one small wheel, no daemon or object store to
size), so ``pip install cxrcurate[distributed]`` stays light and a test can start a two-process cluster in a
second. Ray would bring a ~70 MB binary wheel and its own runtime for no gain here.

The same functions as the local runner run on the workers (``store.fingerprint_chunk``, a faiss search,
``store.verify_chunk``), and the index is built once on the client from the gathered descriptors, so the pairs
and groups equal a local run's. Images and the ``--work-dir`` feature store must be on paths every worker can
read (a shared filesystem), exactly as the data root must be.
"""

from __future__ import annotations

import numpy as np

from ..errors import CxrcurateError
from .descriptors import build_index, neighbour_pairs, search
from .runners import CHUNK, _stack, pair_batches, path_chunks, unorder
from .store import fingerprint_chunk, verify_chunk

QUERY_BATCH = 20_000  # images whose whole view one search task queries


def search_task(index_bytes: np.ndarray | None, flat: np.ndarray, queries: np.ndarray, first: int, k: int,
                 n_crops: int) -> np.ndarray:
    index = None
    if index_bytes is not None:
        import faiss

        faiss.omp_set_num_threads(1)
        index = faiss.deserialize_index(index_bytes)
    labels = search(index, flat, queries, min(3 * k + n_crops, len(flat)))
    owner = np.repeat(np.arange(len(flat) // n_crops), n_crops)
    return neighbour_pairs(owner, labels, np.arange(first, first + len(queries)), k)


class DaskRunner:
    """Runs the three maps on a Dask cluster: the one at ``scheduler``, or a local one started here."""

    def __init__(self, scheduler: str | None, workers: int | None, progress: bool = False) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise CxrcurateError("--engine dask needs Dask distributed: pip install 'cxrcurate[distributed]'") from exc
        self._cluster = None
        if scheduler:
            self.client = Client(scheduler)
        else:
            self._cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                                         dashboard_address=None)
            self.client = Client(self._cluster)
        self.progress = progress

    def _gather(self, futures: list) -> list:
        if self.progress:
            from distributed import progress

            progress(futures)
        return self.client.gather(futures)

    def fingerprint(self, paths: list[str], store: str, keys: list[str] | None = None, cache: str | None = None,
                    tag: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        chunks = path_chunks(paths)
        n = len(chunks)
        key_chunks = path_chunks(keys) if keys is not None else [None] * n
        futures = self.client.map(fingerprint_chunk, chunks, range(n), [store] * n, key_chunks, [cache] * n,
                                  [tag] * n, pure=False)
        return _stack(self._gather(futures))

    def candidates(self, white: np.ndarray, k: int) -> np.ndarray:
        n, c, d = white.shape
        flat = white.reshape(-1, d)
        index = build_index(flat, threads=1)
        blob = None
        if index is not None:
            import faiss

            blob = faiss.serialize_index(index)
        [blob_f, flat_f] = self.client.scatter([blob, flat], broadcast=True)
        starts = list(range(0, n, QUERY_BATCH))
        futures = [self.client.submit(search_task, blob_f, flat_f, white[s:s + QUERY_BATCH, 0], s, k, c, pure=False)
                   for s in starts]
        pairs = np.concatenate(self._gather(futures)) if futures else np.zeros((0, 2), np.int64)
        return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(-1, 2)

    def verify(self, pairs: np.ndarray, store: str, thresholds: tuple[int, float, int, int]) -> np.ndarray:
        order, batches = pair_batches(pairs)
        n = len(batches)
        futures = self.client.map(verify_chunk, batches, [store] * n, [CHUNK] * n, *([t] * n for t in thresholds),
                                  pure=False)
        return unorder(self._gather(futures), order, len(pairs))

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
