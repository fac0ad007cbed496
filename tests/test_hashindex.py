"""The near-duplicate index must find exactly the pairs an all-vs-all scan finds, each once."""

from __future__ import annotations

import numpy as np
import pytest

from cxrcurate.dedup import hashindex
from cxrcurate.dedup.hashindex import bands, brute_force_pairs, hamming, iter_pairs, pairs_within


def _flip(rng: np.random.Generator, h: np.ndarray, max_bits: int, exact: bool = False) -> np.ndarray:
    """Copies of ``h`` with 0..max_bits (or exactly max_bits) distinct random bits flipped."""
    out = h.copy()
    for k in range(out.size):
        d = max_bits if exact else int(rng.integers(0, max_bits + 1))
        for bit in rng.choice(64, size=d, replace=False):
            out[k] ^= np.uint64(1) << np.uint64(bit)
    return out


def _planted(seed: int, n: int, radius: int, n_planted: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False)
    copies = _flip(rng, h[rng.choice(n, size=n_planted, replace=False)], radius + 1)  # some just outside r
    both = np.concatenate([h, copies])
    return both[rng.permutation(both.size)]


def _clustered(seed: int, n: int, n_centres: int, max_bits: int = 12) -> np.ndarray:
    """Low-entropy hashes like real CXR pHashes: a few centres, each copy 0..max_bits bits away."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2**64, size=n_centres, dtype=np.uint64)
    return _flip(rng, centres[rng.integers(0, n_centres, size=n)], max_bits)


def _assert_same(got: tuple[np.ndarray, ...], want: tuple[np.ndarray, ...]) -> None:
    assert [a.dtype for a in got] == [np.dtype(np.int64), np.dtype(np.int64), np.dtype(np.uint8)]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def _check_stream(h: np.ndarray, radius: int, max_candidates: int) -> tuple[np.ndarray, ...]:
    """Collect iter_pairs, checking i < j, each pair once, and the reported distance."""
    chunks = list(iter_pairs(h, radius, max_candidates=max_candidates))
    assert all(c[0].size > 0 for c in chunks)
    i, j, d = (np.concatenate([c[k] for c in chunks]) if chunks else np.zeros(0) for k in range(3))
    assert np.all(i < j)
    assert np.unique(i.astype(np.int64) * h.size + j.astype(np.int64)).size == i.size, "a pair came out twice"
    if i.size:
        np.testing.assert_array_equal(d, hamming(h[i.astype(np.int64)], h[j.astype(np.int64)]))
        assert d.max() <= radius
    return i, j, d


@pytest.mark.parametrize(("radius", "n"), [(0, 4000), (1, 4000), (4, 5000), (8, 3000), (10, 2000)])
def test_matches_brute_force_with_planted_pairs(radius: int, n: int) -> None:
    h = _planted(seed=radius, n=n, radius=radius, n_planted=n // 5)
    want = brute_force_pairs(h, radius)
    assert want[0].size > n // 20, "the planted pairs should be found"
    _assert_same(pairs_within(h, radius), want)
    _check_stream(h, radius, max_candidates=10_000_000)


def test_exact_duplicates_radius_0() -> None:
    rng = np.random.default_rng(3)
    h = rng.integers(0, 2**64, size=300, dtype=np.uint64)
    h = np.concatenate([h, h[:50], h[:10], h[:1] ^ np.uint64(1)])  # triples, pairs, one 1-bit neighbour
    i, j, d = pairs_within(h, 0)
    assert i.size == 50 + 10 + 10  # a-b for 50, a-c and b-c for 10
    assert not d.any()
    assert (0, 310) not in set(zip(i.tolist(), j.tolist(), strict=True))


@pytest.mark.parametrize("radius", [2, 4, 6])
def test_clustered_low_entropy_hashes_with_tiny_chunks(radius: int) -> None:
    h = _clustered(seed=radius, n=1500, n_centres=4)  # buckets of hundreds: candidates >> chunk size
    want = brute_force_pairs(h, radius)
    assert want[0].size > 1000
    small = _check_stream(h, radius, max_candidates=1000)
    _assert_same(hashindex._sorted(*small), want)  # noqa: SLF001
    _assert_same(pairs_within(h, radius), want)
    tiny = h[:80]  # one candidate per chunk: every chunk starts and ends inside a row
    _assert_same(pairs_within(tiny, radius, max_candidates=1), brute_force_pairs(tiny, radius))


def test_one_giant_bucket_split_across_chunks() -> None:
    h = np.zeros(400, dtype=np.uint64)  # every pair is a duplicate: 79,800 pairs in one bucket
    h[::7] = np.uint64(0b1011)
    for mc in (999, 4096, 10_000_000):
        i, j, d = _check_stream(h, 3, max_candidates=mc)
        assert i.size == 400 * 399 // 2
    assert _check_stream(h[:30], 3, max_candidates=1)[0].size == 30 * 29 // 2
    _assert_same(pairs_within(h, 3, max_candidates=777), brute_force_pairs(h, 3))


def test_empty_and_single() -> None:
    for hashes in ([], np.zeros(0, dtype=np.uint64), [12345], np.array([2**64 - 1], dtype=np.uint64)):
        assert list(iter_pairs(hashes, 4)) == []
        for got in (pairs_within(hashes, 4), brute_force_pairs(hashes, 4)):
            _assert_same(got, (np.zeros(0), np.zeros(0), np.zeros(0)))


@pytest.mark.parametrize("radius", [-1, 33, 64])
def test_invalid_radius(radius: int) -> None:
    with pytest.raises(ValueError, match="radius must be between 0 and 32"):
        pairs_within(np.arange(5, dtype=np.uint64), radius)
    with pytest.raises(ValueError, match="radius"):
        iter_pairs([1, 2], radius)  # raised at call time, before iteration
    with pytest.raises(ValueError, match="radius"):
        bands(radius)


def test_invalid_inputs() -> None:
    with pytest.raises(TypeError, match="radius must be an integer"):
        pairs_within([1, 2], 2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="radius must be an integer"):
        pairs_within([1, 2], True)
    with pytest.raises(ValueError, match="1-D"):
        pairs_within(np.zeros((2, 2), dtype=np.uint64), 1)
    with pytest.raises(ValueError, match="non-negative"):
        pairs_within(np.array([3, -1]), 1)
    with pytest.raises(ValueError, match="0..2\\*\\*64-1"):
        pairs_within([1, -5], 1)
    with pytest.raises(ValueError, match="0..2\\*\\*64-1"):
        pairs_within([1, 2**64], 1)
    with pytest.raises(TypeError, match="dtype float64"):
        pairs_within(np.array([1.0, 2.0]), 1)
    with pytest.raises(TypeError, match="non-integral"):
        pairs_within([1, 2.5], 1)
    with pytest.raises(ValueError, match="max_candidates"):
        iter_pairs([1, 2], 1, max_candidates=0)


def test_full_uint64_range_python_ints() -> None:
    top = 2**64 - 1
    values = [top, top ^ 1, 2**63, 2**63 + 3, 0, 1, 2**63 - 1, top ^ (1 << 63)]
    i, j, d = pairs_within(values, 2)  # a plain list: np.asarray would turn these into float64
    got = {(a, b): int(c) for a, b, c in zip(i.tolist(), j.tolist(), d.tolist(), strict=True)}
    want = {
        (a, b): (values[a] ^ values[b]).bit_count()
        for a in range(len(values))
        for b in range(a + 1, len(values))
        if (values[a] ^ values[b]).bit_count() <= 2
    }
    assert got == want
    assert got[(0, 1)] == 1 and got[(2, 3)] == 2 and got[(0, 7)] == 1
    _assert_same(pairs_within(np.array(values, dtype=np.uint64), 2), brute_force_pairs(values, 2))
    pd = pytest.importorskip("pandas")
    _assert_same(pairs_within(pd.Series(np.array(values, dtype=np.uint64)), 2), (i, j, d))
    signed = np.array([5, 4, 2**62], dtype=np.int64)  # non-negative signed ints are accepted
    _assert_same(pairs_within(signed, 1), brute_force_pairs(signed.astype(np.uint64), 1))


def test_bands_layout() -> None:
    assert bands(0) == [(0, 64)]
    assert bands(4) == [(0, 13), (13, 13), (26, 13), (39, 13), (52, 12)]
    for r in range(33):
        b = bands(r)
        assert len(b) == r + 1
        assert sum(w for _, w in b) == 64 and b[0][0] == 0
        assert all(s + w == s2 for (s, w), (s2, _) in zip(b, b[1:], strict=False))
        assert max(w for _, w in b) - min(w for _, w in b) <= 1


def test_hamming_and_byte_table_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    a = rng.integers(0, 2**64, size=(50, 3), dtype=np.uint64)
    b = rng.integers(0, 2**64, size=3, dtype=np.uint64)
    want = np.array([[(int(x) ^ int(y)).bit_count() for x, y in zip(row, b, strict=True)] for row in a])
    np.testing.assert_array_equal(hamming(a, b), want)
    assert hamming(a, b).dtype == np.uint8
    monkeypatch.setattr(hashindex, "_HAS_BITWISE_COUNT", False)  # the numpy < 2.0 path
    np.testing.assert_array_equal(hamming(a, b), want)
    assert hamming(np.uint64(2**64 - 1), np.uint64(0)) == 64
    h = _clustered(seed=11, n=600, n_centres=3)
    _assert_same(pairs_within(h, 5, max_candidates=500), brute_force_pairs(h, 5))
