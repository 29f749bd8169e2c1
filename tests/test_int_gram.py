"""The exact int16 Gram product (pixelmix.kernels.int_gram) and the moments that take it, against int64 NumPy."""

import llvmlite.binding as ll
import numba
import numpy as np
import pytest
from numba import njit

from pixelmix.kernels import int_gram
from pixelmix.kernels.int_gram import (LANES, MAX_WIDTH, MIN_STEPS, NARROW, fast_here, flush_i16, gram_tile_i16,
                                       whole_width)
from pixelmix.learn import stats
from pixelmix.learn.stats import INT_GRAM_WIDTH, block_moments


def _filled(rows):
    """The entries gram_tile_i16 sums: on and above the diagonal, and below it inside the 4 x 2 blocks."""
    a, b = np.indices((rows, rows))
    return b >= a - a % 4


def _exact(tile, n):
    t = tile[:, :n].astype(np.int64)
    return t @ t.T


def _extreme_tile(rng, rows, bound=32767):
    """Values at +-bound (and -32768 for the whole range) and small ones, with two rows all at the lowest."""
    values = np.array([-bound, bound, -1, 0, 1, 255, 256, -256] + ([-32768] if bound == 32767 else []), np.int16)
    tile = rng.choice(values, (rows, MAX_WIDTH))
    tile[3] = tile[6] = values.min()  # the largest sums an int32 lane takes
    return tile


# The split product; one product per pair in one piece (NARROW), in pieces of 512 and of 256 columns (the fewest
# steps a piece takes); and just past that, the split product again.
BOUNDS = [32767, NARROW, 8191, 11585, 11586]


def test_whole_width_keeps_the_int32_lanes_from_overflowing():
    reach = np.arange(32769)
    width = np.array([whole_width(r) for r in reach])
    steps = width // LANES
    assert np.all(width % LANES == 0) and width.max() == MAX_WIDTH and whole_width(NARROW) == MAX_WIDTH
    assert np.all(steps * 2 * np.maximum(reach, 1) ** 2 <= 2**31 - 1)
    assert np.all((steps == 0) | (steps >= MIN_STEPS))
    assert [whole_width(r) for r in BOUNDS] == [0, MAX_WIDTH, 16 * LANES, MIN_STEPS * LANES, 0]
    assert np.all(np.diff(width) <= 0)  # wider values, narrower pieces


@pytest.mark.parametrize("bound", BOUNDS)
def test_gram_tile_is_exact_at_the_bounds(rng, bound):
    tile = _extreme_tile(rng, 12, bound)
    gram = np.full((12, 12), 5, np.int64)
    gram_tile_i16(tile, MAX_WIDTH, gram, bound)
    filled = _filled(12)
    assert np.array_equal(gram[filled], 5 + _exact(tile, MAX_WIDTH)[filled])
    assert np.array_equal(gram[~filled], np.full((~filled).sum(), 5))


@njit(cache=True)
def _flush(x3, tile, n, gram):
    flush_i16(x3, tile, n, gram, 32768)


def test_flush_takes_any_count_of_columns(rng):
    tile = _extreme_tile(rng, 8)
    expected = _exact(tile, 1000)
    gram = np.zeros((8, 8), np.int64)
    _flush(np.zeros((1, 1, 1), np.uint16), tile, 1000, gram)  # the columns up to 1024 are zeroed, then summed
    assert np.array_equal(gram[_filled(8)], expected[_filled(8)])
    assert not tile[:, 1000:1024].any() and tile[:, 1024:].any()
    assert 1024 % LANES == 0
    before = tile.copy()
    _flush(np.zeros((1, 1, 1), np.float32), tile, 1000, gram)  # float data: nothing
    assert np.array_equal(tile, before) and np.array_equal(gram[_filled(8)], expected[_filled(8)])


def test_the_portable_form_is_exact_too(monkeypatch, rng):
    """Without AVX512-BW the product is plain LLVM vector arithmetic: exact on any target."""
    monkeypatch.setattr(int_gram, "_has_avx512bw", lambda codegen: False)

    @njit  # compiled here, under the patch
    def portable(tile, n, gram, width):
        for a0 in range(0, tile.shape[0], 4):
            if width > 0:
                for b0 in range(a0, tile.shape[0], 4):
                    int_gram._block_whole(tile, np.int64(a0), np.int64(b0), np.int64(n), np.int64(width), gram)
            else:
                for b0 in range(a0, tile.shape[0], 2):
                    int_gram._block_split(tile, np.int64(a0), np.int64(b0), np.int64(n), np.int64(n), gram)

    for bound in (32767, NARROW, 8191):
        tile = _extreme_tile(rng, 8, bound)
        gram = np.zeros((8, 8), np.int64)
        portable(tile, MAX_WIDTH, gram, whole_width(bound))
        assert np.array_equal(gram[_filled(8)], _exact(tile, MAX_WIDTH)[_filled(8)])


def test_fast_here_reads_numbas_target_features():
    assert fast_here() == ("+avx512bw" in ll.get_host_cpu_features().flatten().split(","))


def test_moments_take_the_int16_tiles_for_channels_first_integers_only():
    def width(shape, dtype, extra=0):
        x3 = np.zeros(shape, dtype)
        return stats._int_width(x3, np.zeros((shape[0], extra, shape[2]), dtype))

    stats._kernels()
    assert INT_GRAM_WIDTH <= MAX_WIDTH and INT_GRAM_WIDTH % LANES == 0  # the int32 sums cannot overflow
    fast = INT_GRAM_WIDTH if fast_here() else 0
    assert width((1, 5, 100), np.uint16) == width((1, 5, 100), np.int16) == width((1, 5, 100), np.uint8) == fast
    assert width((1, 5, 100), np.float32) == width((1, 5, 100), np.int32) == 0
    assert width((100, 5, 1), np.uint16) == 0  # channels last
    assert width((1, 5, 100), np.uint16, extra=2) == 0  # least squares' extra channels


def _reference(x, keep):
    """Count, mean and scatter of the kept pixels of a channels-first block, from exact int64 sums."""
    p = x.reshape(x.shape[0], -1)[:, keep].astype(np.int64)
    n = p.shape[1]
    s1 = p.sum(axis=1)
    scatter = (p @ p.T).astype(np.float64) - np.outer(s1, s1) / n
    return n, s1 / n, scatter


# (uint8 takes the same code as uint16: left out, as one more compile of the kernels.)
@pytest.mark.parametrize("dtype, low, high", [(np.uint16, 0, 65536), (np.int16, -32768, 32768), (np.uint16, 1000, 1400),
                                              (np.int16, -4000, 4001)])
def test_integer_moments_match_exact_sums(rng, dtype, low, high):
    """Values that fit int16 after the shift take the int16 tiles (narrow ones, one product per pair); full-range
    16-bit data leaves them at the first run that does not fit, and mask, nodata and noise pairs work either way."""
    x = rng.integers(low, high, (9, 70, 130)).astype(dtype)
    x[4, 69, 129] = np.iinfo(dtype).max  # the last pixel: for narrow uint16 data, a run that does not fit
    mask = rng.random((70, 130)) < 0.7
    for kw, keep in (({}, np.ones(70 * 130, bool)), ({"mask": mask}, mask.reshape(-1)),
                     ({"nodata": int(x[2, 5, 5])}, ~(x == x[2, 5, 5]).any(0).reshape(-1))):
        m = block_moments(x, 0, **kw)
        n, mean, scatter = _reference(x, keep)
        assert m.count == n
        np.testing.assert_allclose(m.mean, mean, rtol=1e-14, atol=1e-12)
        np.testing.assert_allclose(m.scatter, scatter, rtol=1e-12, atol=1e-6 * np.abs(scatter).max())
    d = x[:, :-1, :-1].astype(np.int64) - x[:, 1:, 1:]
    m = block_moments(x, 0, pair="diagonal")
    n, mean, scatter = _reference(d, np.ones(d[0].size, bool))
    assert m.count == n
    np.testing.assert_allclose(m.scatter, scatter, rtol=1e-12, atol=1e-6 * np.abs(scatter).max())


def test_integer_moments_do_not_depend_on_the_thread_count(rng):
    x = rng.integers(0, 3000, (13, 90, 200)).astype(np.uint16)
    x[0, 80, 150] = 60000  # one run falls back to float64 tiles
    before = numba.get_num_threads()
    try:
        results = []
        for n in range(1, numba.config.NUMBA_NUM_THREADS + 1):
            numba.set_num_threads(n)
            results.append(block_moments(x, 0, pair="right"))
    finally:
        numba.set_num_threads(before)
    for r in results[1:]:
        np.testing.assert_array_equal(r.scatter, results[0].scatter)
        np.testing.assert_array_equal(r.mean, results[0].mean)
