"""Near-duplicate candidate index: every pair of 64-bit hashes within Hamming distance ``r``.

The method is multi-index hashing by the pigeonhole principle.  The 64 bits are cut into ``m = r + 1``
disjoint bands (see :func:`bands`).  Two hashes that differ in at most ``r`` bits cannot differ in every
one of ``r + 1`` bands, so they agree exactly on at least one band.  For each band the hashes are sorted
by their band value; every pair inside a bucket of equal band values is a *candidate*, whose exact
distance is computed with a vectorised popcount and kept when ``<= r``.  A pair that agrees on several
bands is emitted only from the first of them (a kept pair from band ``b`` is dropped when its XOR is
zero on some band ``b' < b``), so every pair comes out exactly once without a global set.

Cost and trade-off: with ``n`` uniformly random hashes a band of ``w`` bits yields about
``n**2 / 2**(w + 1)`` candidates, so a larger radius means more, shorter bands and many more candidates
(n=1e6: r=4 has 13/12-bit bands and ~3.7e8 candidates; r=8 has 7/8-bit bands and ~3.3e10), against
``n**2 / 2`` for brute force.  A candidate costs about 2-3x a brute-force comparison, so on 2 cores
(n=1e5, random): r=4 0.1 s, r=8 5 s, r=10 18 s, r=12 40-47 s, brute force 35-40 s at any r.  Around
r=12 the index stops paying off, though it stays exact up to r=32.  Real pHashes are far from uniform
(low-entropy images crowd a few buckets), which raises the candidate count (time), not memory.  Note that
imagehash's pHash thresholds 64 DCT terms at their median, so every hash has exactly 32 bits set and all
distances are even: radius 2k+1 finds the same pairs as 2k.

Memory: the per-band arrays are linear in ``n`` (a sort order and a few int64 vectors).  Candidates are
materialised at most ``max_candidates`` at a time (35-50 bytes each at the peak), whatever the bucket
sizes: a chunk may cover many small buckets or part of one huge bucket.  Results are streamed by
:func:`iter_pairs`; only :func:`pairs_within` holds them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

__all__ = ["MAX_RADIUS", "bands", "brute_force_pairs", "hamming", "iter_pairs", "pairs_within"]

MAX_RADIUS = 32
"""Largest accepted radius: beyond it the bands are 1-bit wide and brute force is the better tool."""

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]

_HAS_BITWISE_COUNT = hasattr(np, "bitwise_count")  # numpy >= 2.0
_BYTE_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distance between 64-bit hashes, element-wise with broadcasting.

    Args:
        a: uint64 hashes (or anything ``np.asarray(..., dtype=np.uint64)`` accepts exactly).
        b: uint64 hashes, broadcastable against ``a``.

    Returns:
        The popcount of ``a ^ b`` as uint8 (0..64), with the broadcast shape of ``a`` and ``b``.
    """
    x = np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    return _popcount(x)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Bits set in each element of a uint64 array, as uint8."""
    if _HAS_BITWISE_COUNT:
        return np.bitwise_count(x).astype(np.uint8, copy=False)
    x = np.ascontiguousarray(x, dtype=np.uint64)
    by = x.reshape(-1).view(np.uint8).reshape(-1, 8)  # numpy < 2.0: byte lookup table
    return _BYTE_POPCOUNT[by].sum(axis=1, dtype=np.uint8).reshape(x.shape)


def bands(radius: int) -> list[tuple[int, int]]:
    """The band layout used for ``radius``: ``radius + 1`` disjoint bit fields covering all 64 bits.

    Bands are listed from the least significant bits up, as equal as possible, the wider ones first:
    r=0 gives ``[(0, 64)]``, r=4 gives widths 13, 13, 13, 13, 12.  A band's value for hash ``h`` is
    ``(h >> shift) & (2**width - 1)``.

    Args:
        radius: Hamming radius, 0..:data:`MAX_RADIUS`.

    Returns:
        ``(shift, width)`` for each band.

    Raises:
        TypeError: ``radius`` is not an integer.
        ValueError: ``radius`` is outside 0..32.
    """
    radius = _check_radius(radius)
    m = radius + 1
    base, extra = divmod(64, m)
    out: list[tuple[int, int]] = []
    shift = 0
    for k in range(m):
        width = base + (1 if k < extra else 0)
        out.append((shift, width))
        shift += width
    return out


def _check_radius(radius: int) -> int:
    """Validate a radius and return it as a Python int."""
    if isinstance(radius, bool) or not isinstance(radius, int | np.integer):
        raise TypeError(f"radius must be an integer, got {type(radius).__name__} {radius!r}")
    radius = int(radius)
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(f"radius must be between 0 and {MAX_RADIUS} bits, got {radius}")
    return radius


def _as_hashes(hashes: Iterable[int] | np.ndarray) -> np.ndarray:
    """Validate hashes and return them as a 1-D uint64 array (no copy when already uint64)."""
    if not isinstance(hashes, np.ndarray) and hasattr(hashes, "__array__"):  # pandas, pyarrow
        hashes = np.asarray(hashes)
    if isinstance(hashes, np.ndarray) and hashes.dtype.kind in "ui":
        arr = hashes
        if arr.ndim != 1:
            raise ValueError(f"hashes must be a 1-D array, got shape {arr.shape}")
        if arr.dtype.kind == "i" and arr.size and int(arr.min()) < 0:
            raise ValueError("hashes must be non-negative 64-bit integers; got a negative value")
        return arr.astype(np.uint64, copy=False)
    if isinstance(hashes, np.ndarray) and hashes.dtype.kind != "O":
        raise TypeError(f"hashes must be unsigned 64-bit integers, got dtype {hashes.dtype}")
    # Python ints (possibly >= 2**63): np.asarray would silently make float64, so go through object.
    obj = np.array(hashes if isinstance(hashes, np.ndarray) else list(hashes), dtype=object)
    if obj.ndim != 1:
        raise ValueError(f"hashes must be a 1-D sequence, got shape {obj.shape}")
    if obj.size == 0:
        return np.zeros(0, dtype=np.uint64)
    try:
        arr = obj.astype(np.uint64)
    except OverflowError as exc:
        raise ValueError(f"hashes must be integers in 0..2**64-1: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise TypeError(f"hashes must be integers: {exc}") from exc
    if not bool(np.all(arr.astype(object) == obj)):
        raise TypeError("hashes must be integers; got non-integral values")
    return arr


def _band_values(h: np.ndarray, shift: int, width: int) -> np.ndarray:
    """Band values in the smallest unsigned dtype that holds ``width`` bits (small ones radix-sort)."""
    v = h >> np.uint64(shift) if shift else h
    if width < 64:
        v = v & np.uint64((1 << width) - 1)
    for dt, bits in ((np.uint8, 8), (np.uint16, 16), (np.uint32, 32)):
        if width <= bits:
            return v.astype(dt)
    return v


def iter_pairs(hashes: Iterable[int] | np.ndarray, radius: int, max_candidates: int = 10_000_000) -> Iterator[Pairs]:
    """Stream every pair of hashes within ``radius`` bits, chunk by chunk.

    Args:
        hashes: 1-D uint64 array, or non-negative integers below 2**64 (Python ints >= 2**63 included).
        radius: Largest Hamming distance reported, 0..32 (0 = exact duplicates only).
        max_candidates: Most candidate pairs materialised at once (35-50 bytes per candidate).

    Yields:
        ``(i, j, dist)`` arrays (int64, int64, uint8) of equal length: indices into ``hashes`` with
        ``i < j`` and ``dist <= radius``.  Across all chunks every such pair appears exactly once; chunks
        are never empty and are not sorted.

    Raises:
        TypeError: ``radius`` is not an integer, or ``hashes`` are not integers.
        ValueError: ``radius`` is outside 0..32, ``hashes`` are not 1-D or hold values outside
            0..2**64-1, or ``max_candidates`` < 1.
    """
    radius = _check_radius(radius)
    if int(max_candidates) < 1:
        raise ValueError(f"max_candidates must be at least 1, got {max_candidates}")
    h = _as_hashes(hashes)
    return _iter_pairs(h, radius, int(max_candidates))


def _iter_pairs(h: np.ndarray, radius: int, max_candidates: int) -> Iterator[Pairs]:
    """Generator behind :func:`iter_pairs` (split off so argument errors raise at call time)."""
    n = h.size
    if n < 2:
        return
    layout = bands(radius)
    positions = np.arange(n, dtype=np.int64)
    for b, (shift, width) in enumerate(layout):
        order = np.argsort(_band_values(h, shift, width), kind="stable")  # stable: i < j inside a bucket
        hs = h[order]
        sv = _band_values(hs, shift, width)
        # Bucket of sorted position p ends at end[p]; p pairs with the k = end - p - 1 positions after it.
        starts = np.flatnonzero(np.concatenate(([True], sv[1:] != sv[:-1])))
        del sv
        ends = np.append(starts[1:], n)
        k = np.repeat(ends, ends - starts) - positions - 1
        del starts, ends
        rows = np.flatnonzero(k)  # sorted positions with at least one later bucket mate
        k = k[rows]
        if rows.size == 0:
            continue
        cum = np.cumsum(k)  # candidates are numbered 0..cum[-1]-1, row by row
        earlier = layout[:b]
        for left, right in _candidate_chunks(rows, k, cum, max_candidates):
            x = hs[left]
            x ^= hs[right]
            dist = _popcount(x)
            keep = np.flatnonzero(dist <= radius)
            if keep.size == 0:
                continue
            x, dist, left, right = x[keep], dist[keep], left[keep], right[keep]
            if earlier:  # emitted from an earlier band already when the pair agrees there too
                first = np.ones(keep.size, dtype=bool)
                for s, w in earlier:
                    first &= (x >> np.uint64(s)) & np.uint64((1 << w) - 1) != 0
                dist, left, right = dist[first], left[first], right[first]
                if dist.size == 0:
                    continue
            i, j = order[left], order[right]
            yield np.minimum(i, j).astype(np.int64), np.maximum(i, j).astype(np.int64), dist


def _candidate_chunks(
    rows: np.ndarray, k: np.ndarray, cum: np.ndarray, max_candidates: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Candidate pairs of one band as (left, right) sorted positions, at most ``max_candidates`` at a time.

    Row ``rows[q]`` (a sorted position ``p``) owns candidates ``cum[q] - k[q] .. cum[q] - 1``, which pair
    ``p`` with ``p + 1 .. p + k[q]``.  A chunk is a contiguous range ``t0 .. t1 - 1`` of candidate numbers,
    so it may start or end inside a row: one huge bucket is split across chunks like many small ones.
    """
    total = int(cum[-1])
    for t0 in range(0, total, max_candidates):
        t1 = min(t0 + max_candidates, total)
        qa = int(np.searchsorted(cum, t0, side="right"))
        qb = int(np.searchsorted(cum, t1 - 1, side="right")) + 1
        p, c_end = rows[qa:qb], cum[qa:qb]
        c_start = c_end - k[qa:qb]
        count = np.minimum(c_end, t1) - np.maximum(c_start, t0)
        left = np.repeat(p, count)
        right = np.arange(t0, t1, dtype=np.int64)  # candidate t of row p is right position p + 1 + t - c_start
        right += np.repeat(p + 1 - c_start, count)
        yield left, right


def _sorted(i: np.ndarray, j: np.ndarray, d: np.ndarray) -> Pairs:
    """Pairs ordered by (i, j)."""
    o = np.lexsort((j, i))
    return i[o], j[o], d[o]


def _empty() -> Pairs:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)


def _concat(chunks: list[Pairs]) -> Pairs:
    if not chunks:
        return _empty()
    return tuple(np.concatenate(parts) for parts in zip(*chunks, strict=True))  # type: ignore[return-value]


def pairs_within(hashes: Iterable[int] | np.ndarray, radius: int, max_candidates: int = 10_000_000) -> Pairs:
    """All pairs of hashes within ``radius`` bits, in one sorted batch (see :func:`iter_pairs`).

    Args:
        hashes: 1-D uint64 array, or non-negative integers below 2**64.
        radius: Largest Hamming distance reported, 0..32.
        max_candidates: Most candidate pairs materialised at once.

    Returns:
        ``(i, j, dist)`` (int64, int64, uint8), ``i < j``, each pair once, sorted by ``(i, j)``.

    Raises:
        TypeError: ``radius`` or ``hashes`` are not integers.
        ValueError: ``radius`` outside 0..32, or ``hashes`` not 1-D or outside 0..2**64-1.
    """
    return _sorted(*_concat(list(iter_pairs(hashes, radius, max_candidates))))


def brute_force_pairs(hashes: Iterable[int] | np.ndarray, radius: int, block: int = 4096) -> Pairs:
    """Reference answer by an all-vs-all scan, ``block x block`` tiles at a time (O(n**2) time).

    Args:
        hashes: 1-D uint64 array, or non-negative integers below 2**64.
        radius: Largest Hamming distance reported, 0..64 (brute force has no band limit).
        block: Tile side; memory is about ``9 * block**2`` bytes.

    Returns:
        Same format as :func:`pairs_within`: ``(i, j, dist)``, ``i < j``, sorted by ``(i, j)``.

    Raises:
        TypeError: ``radius`` or ``hashes`` are not integers.
        ValueError: ``radius`` outside 0..64, ``block`` < 1, or ``hashes`` not 1-D or out of range.
    """
    if isinstance(radius, bool) or not isinstance(radius, int | np.integer):
        raise TypeError(f"radius must be an integer, got {type(radius).__name__} {radius!r}")
    if not 0 <= int(radius) <= 64:
        raise ValueError(f"radius must be between 0 and 64 bits, got {radius}")
    if int(block) < 1:
        raise ValueError(f"block must be at least 1, got {block}")
    h = _as_hashes(hashes)
    n, block = h.size, int(block)
    chunks: list[Pairs] = []
    for a in range(0, n, block):
        rows = h[a : a + block]
        for c in range(a, n, block):
            d = hamming(rows[:, None], h[None, c : c + block])
            hit = d <= radius
            if c == a:  # diagonal tile: only j > i
                hit &= np.triu(np.ones(hit.shape, dtype=bool), k=1)
            ii, jj = np.nonzero(hit)
            if ii.size:
                chunks.append((ii.astype(np.int64) + a, jj.astype(np.int64) + c, d[ii, jj]))
    return _sorted(*_concat(chunks))
