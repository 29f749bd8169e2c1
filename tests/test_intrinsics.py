"""The LLVM intrinsics of pixelmix.kernels.intrinsics, against NumPy."""

import numpy as np
import pytest
from numba import njit, prange, typeof, types
from numba.core.errors import TypingError

from pixelmix.kernels.intrinsics import (
    address, aligned, c_contiguous_or_empty, call_compiled, claim, compiled_address, contiguous_row, prefetch,
    trailing_zeros, transpose8, transpose8_diff,
)


@njit(cache=True)
def _blocks(x3, cand, partner, pair, shift, tile, col):
    for j0 in range(0, cand.size - 7, 8):
        for c0 in range(0, x3.shape[1] - 7, 8):
            if pair:
                transpose8_diff(x3, cand, partner, j0, c0, shift, tile, col + j0)
            else:
                transpose8(x3, cand, partner, j0, c0, shift, tile, col + j0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16, np.int16, np.uint8, np.int32])
@pytest.mark.parametrize("pair", [False, True])
def test_transpose8_is_the_channel_by_pixel_copy(rng, dtype, pair):
    # 16 scattered pixels of a (A, 24, 1) channels-last block, into tile columns 3.. (not on a vector boundary).
    x3 = (rng.random((50, 24, 1)) * 200 - (50 if np.dtype(dtype).kind != "u" else 0)).astype(dtype)
    cand = np.sort(rng.choice(49, 16, replace=False)).astype(np.int64)
    partner = cand + 1
    shift = rng.random(24) * 10
    tile = np.full((25, 40), -7.0)
    _blocks(x3, cand, partner, pair, shift, tile, 3)
    values = x3[cand, :, 0].astype(np.float64)
    if pair:
        values = values - x3[partner, :, 0].astype(np.float64)
    expected = np.full_like(tile, -7.0)
    expected[:24, 3:19] = (values - shift).T
    assert np.array_equal(tile, expected)


@njit(cache=True)
def _aligned_start(n, dtype_probe):
    return address(aligned(np.empty(n + 64 // dtype_probe.itemsize, dtype=dtype_probe.dtype), n))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_aligned_starts_on_a_cache_line(dtype):
    for n in (1, 100, 4096):
        assert _aligned_start(n, np.zeros(1, dtype)) % 64 == 0


@njit(cache=True)
def _prefetch_all(x):
    for i in range(0, x.size, 8):
        prefetch(x, i)
    return address(x)


def test_prefetch_and_address_change_nothing():
    x = np.arange(100.0).reshape(10, 10)
    assert _prefetch_all(x) == x.ctypes.data
    assert np.array_equal(x, np.arange(100.0).reshape(10, 10))


@njit(cache=True)
def _lowest_bit(word):
    return trailing_zeros(word)


def test_trailing_zeros():
    for bit in (0, 1, 7, 40, 63):
        assert _lowest_bit(np.uint64(1 << bit) | np.uint64(1 << 63)) == bit


@njit(cache=True)
def _scaled(a, k):
    if k < 0:
        raise ValueError("k must not be negative")
    for i in range(a.size):
        a[i] *= k
    return a.sum()


@njit(cache=True)
def _through(at, a, k):
    return call_compiled(_scaled, at, (a, k))


def test_call_compiled_calls_the_overload_at_its_address():
    a = np.arange(5.0)
    at = compiled_address(_scaled, (typeof(a), types.int64))
    assert _through(at, a, 3) == 30.0
    assert a.tolist() == [0.0, 3.0, 6.0, 9.0, 12.0]
    # The callee's exception reaches the caller's caller, as with a call Numba links in.
    with pytest.raises(ValueError, match="must not be negative"):
        _through(at, a, -1)
    # Argument types with no compiled overload: a typing error, never a call into another signature's code.
    with pytest.raises(TypingError, match="no compiled overload"):
        _through(at, a.astype(np.float32), 3)


@njit(cache=True)
def _rows_sum(x):
    total = np.zeros(x.shape[2])
    for a in range(x.shape[0]):
        for c in range(x.shape[1]):
            row = contiguous_row(x, a, c)
            total += row
    return total, c_contiguous_or_empty(x).size


def test_contiguous_row_reads_a_strided_block_in_place():
    x = np.arange(4 * 5 * 30, dtype=np.float64).reshape(4, 5, 30)
    for block in (x, x[1:3, ::2, 4:20]):  # C-contiguous, and rows of unit stride far apart
        total, size = _rows_sum(block)
        np.testing.assert_array_equal(total, block.sum(axis=(0, 1)))
        assert size == (block.size if block.flags.c_contiguous else 0)


@njit(cache=True)
def _runs(n, workers):
    counter = np.zeros(1, dtype=np.int64)
    runs = []
    first, last = claim(counter, n, workers)
    while first < last:
        runs.append((first, last))
        first, last = claim(counter, n, workers)
    return runs, first, last, counter[0]


def test_claim_hands_out_shrinking_runs_of_consecutive_tiles():
    runs, first, last, counter = _runs(1000, 2)
    assert runs[0] == (0, 250)  # a quarter to the first claim of two workers
    assert [a for a, _ in runs[1:]] == [b for _, b in runs[:-1]]  # consecutive, no gap or overlap
    sizes = [b - a for a, b in runs]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 1 and runs[-1][1] == 1000
    assert (first, last, counter) == (1000, 1000, 1000)  # none left: an empty run, and the count stays at n
    assert _runs(0, 4)[0] == []


@njit(cache=True, parallel=True)
def _claim_counts(n, workers):
    counts = np.zeros(n, dtype=np.int64)
    counter = np.zeros(1, dtype=np.int64)
    for _ in prange(workers):
        first, last = claim(counter, n, workers)
        while first < last:
            for t in range(first, last):
                counts[t] += 1  # only the thread that claimed t writes here
            first, last = claim(counter, n, workers)
    return counts


def test_claim_gives_each_tile_to_exactly_one_thread():
    for n, workers in ((1, 2), (7, 3), (100_000, 2), (100_000, 16)):
        assert (_claim_counts(n, workers) == 1).all()
