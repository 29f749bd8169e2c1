"""Streaming first and second moments of pixels: count, mean, C x C scatter.

The statistics every fit needs are gathered one block at a time, in one pass,
in O(C^2) memory, and two partial results merge exactly (Chan, Golub and
LeVeque's pairwise update), so blocks, files and Dask chunks can be
processed in any order and combined afterwards.

Functions
---------
``block_moments(values, channel_axis, ...)``
    The :class:`Moments` of one block (an ndarray with channels on
    ``channel_axis``): honours a boolean ``mask`` (True = use), skips pixels
    with NaN or a channel equal to ``nodata`` (and counts them), subsamples
    with ``sample=``, with ``pair=`` gathers the differences between
    neighbouring pixels that noise estimates need, and with ``extra=`` adds
    more channels of the same pixels (least squares' target) without a
    copy. Blocks of float16, int8, uint32 or non-native byte order are first
    converted exactly to :func:`pixelmix.plan.working_dtype`; complex or
    bool blocks are refused.
``Moments.merge`` / :func:`merge`
    Combine partial results.

How it stays accurate, and fast
-------------------------------
Within a block, a Numba kernel (:func:`_fill_py`) writes the selected pixels
of a tile of GRAM_WIDTH pixels as float64 columns (channels last, eight
pixels by eight channels at a time through a vector transpose), minus a *shift*: the mean
of the block's first tile. Because the shift is close to the mean, no large
numbers cancel: uint16 data around 60000 with a variance of 0.01 keeps its
covariance to ~12 digits, where the textbook ``E[xx'] - E[x]E[x]'`` loses it
all. Below the channels the tile has a row of ones (zeros for a pixel with
NaN or nodata, whose column is all zeros), so that one Gram product of the
tile with itself (:func:`_gram_tile_py`) holds the count, the shifted sums
and the cross-products at once. That product is the whole cost of a fit; it
runs in four-by-four blocks of dot products, vectorised over the pixels and
summed in float64, in fixed groups of tiles on all threads
(:func:`_block_gram_py`). On AVX-512 CPUs it runs at close to the
float64 peak, about twice what the AVX2 kernels of the OpenBLAS that NumPy
ships reach for the same product, and the groups do not depend on the thread
count, so neither do the results. Per-class moments (``labels=``) run the
same kernel once per class, with the class as the mask: the selection reads
no pixel value, so each pass reads only its class's pixels. The values of
a run's selected pixels are prefetched before they are copied
(:func:`_prefetch_run_py`): the hardware prefetchers do not foresee
scattered pixels, or a hundred channel planes read side by side. (Selecting
and prefetching one run ahead gained nothing more.)

Channels-first 8- and 16-bit data (multi-page TIFF stacks) fill int16 tiles
of ``INT_GRAM_WIDTH`` pixels instead, in runs as wide, the values minus an
integer shift (the first tile's mean, rounded), on CPUs where their product
is fast (:mod:`pixelmix.kernels.int_gram`): the products and their sums are
exact, and two to four times as fast as in float64. A run with a value that
does not fit int16 (16-bit data more than 32767 from the shift, or
differences of such data) and the group's later runs take the float64
tiles. Tiles whose values all lie within 11585 of the shift take one
product per pair of values instead of two (in pieces whose int32 sums
cannot overflow): within ``NARROW`` (4095, 12-bit sensor data) the moments
of 1M pixels of 128 bands took 80 ms instead of 327 on Zen 4; within 5734
(the bench's stack), a PCA streamed from its 1 GiB uint16 TIFF took 0.36-0.47
s instead of 0.59-0.66 (1.19 s before the int16 tiles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ..plan import dtype_problem, view3, working_dtype

__all__ = ["Moments", "GroupMoments", "block_moments", "merge", "PAIRS", "parse_sample"]

# Neighbour pairs for difference-based noise estimates: name -> kernel code.
PAIRS = {None: 0, "right": 1, "lower": 2, "diagonal": 3}

# Pixels per tile of the Gram kernel: 256 x 132 float64 rows sit in L2 while
# every 4 x 4 block of dot products runs over them.
GRAM_WIDTH = 256
# Pixels per int16 tile (kernels/int_gram.py's MAX_WIDTH: 540 KB for 128 bands, in L2).
INT_GRAM_WIDTH = 2048
# Groups of tiles summed apart (in parallel), and the memory their sums may take.
GRAM_GROUPS = 16
GRAM_BYTES = 32 * 2**20


def _kernels() -> None:
    """Compile (on first use) the Numba kernels."""
    global _select, _candidates, _prefetch_run, _fill, _aligned_tile, _aligned_tile16, _gram_tile, _group_gram, \
        _block_gram, _first_mean, prange, aligned, c_contiguous_or_empty, claim, contiguous_row, prefetch, \
        transpose8, transpose8_diff, fill_i16, flush_i16, int_gram_fast
    if _block_gram is None:
        from numba import njit
        from numba import prange  # a global name of _block_gram_py, looked up when it compiles

        # The same, for _group_gram_py (and _int_width),
        from ..kernels.int_gram import fast_here as int_gram_fast
        from ..kernels.int_gram import fill_i16, flush_i16

        # and for _aligned_tile_py, _prefetch_run_py, _fill_py and _block_gram_py.
        from ..kernels.intrinsics import (aligned, c_contiguous_or_empty, claim, contiguous_row, prefetch,
                                          transpose8, transpose8_diff)

        # Order matters: a kernel's callees are compiled before it is first called.
        _select = njit(cache=True, nogil=True, inline="always")(_select_py)
        _candidates = njit(cache=True, nogil=True, inline="always")(_candidates_py)
        _prefetch_run = njit(cache=True, nogil=True, inline="always")(_prefetch_run_py)
        _fill = njit(cache=True, nogil=True)(_fill_py)
        _aligned_tile = njit(cache=True, nogil=True)(_aligned_tile_py)
        _aligned_tile16 = njit(cache=True, nogil=True)(_aligned_tile16_py)
        # reassoc: the dot products are vectorised over the pixels (never the no-NaN/no-Inf flags).
        _gram_tile = njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})(_gram_tile_py)
        _first_mean = njit(cache=True, nogil=True)(_first_mean_py)
        _group_gram = njit(cache=True, nogil=True)(_group_gram_py)
        _block_gram = njit(cache=True, nogil=True, parallel=True)(_block_gram_py)


_select = _candidates = _prefetch_run = _fill = _aligned_tile = _aligned_tile16 = _gram_tile = _group_gram = None
_block_gram = None
_first_mean = None
prange = range  # numba.prange once the kernels are compiled
# From pixelmix.kernels.intrinsics once compiled.
aligned = c_contiguous_or_empty = claim = contiguous_row = prefetch = transpose8 = transpose8_diff = None
# From pixelmix.kernels.int_gram once compiled.
fill_i16 = flush_i16 = int_gram_fast = None


def _select_py(p, mask, use_mask, stride, threshold, seed, pair, n_cols, n_rows):
    """The pixel that ``p`` pairs with (``p`` itself without ``pair``) if ``p`` is selected, else -1.

    Selected: by the sampling rule (every ``stride``-th pixel, then a hash of
    ``(seed, p)`` below ``threshold``), in ``mask``, and with its neighbour
    inside the image and in ``mask`` too. No pixel value is read.
    """
    if stride > 1 and p % stride != 0:
        return -1
    if threshold < 1.0:
        # splitmix64 of (seed, p): a fixed pseudo-random subset, no RNG state.
        z = np.uint64(p) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        if np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0) >= threshold:
            return -1
    if use_mask and not mask[p]:
        return -1
    q = p
    if pair > 0:
        col = p % n_cols
        row = (p // n_cols) % n_rows
        if pair != 2:
            if col == n_cols - 1:
                return -1
            q += 1
        if pair != 1:
            if row == n_rows - 1:
                return -1
            q += n_cols
        if use_mask and not mask[q]:
            return -1
    return q


def _candidates_py(a, b0, b1, B, mask, use_mask, stride, threshold, seed, pair, n_cols, n_rows, cand, partner):
    """The selected pixels of one tile into ``cand`` (and their partners into ``partner``); returns how many.

    The tile is pixels ``a * B + b`` for ``b0 <= b < b1`` (channels last,
    B == 1: pixels ``b0 .. b1``). Selection as in :func:`_select_py`.
    """
    n = 0
    for t in range(b0, b1):
        p = t if B == 1 else a * B + t
        q = _select(p, mask, use_mask, stride, threshold, seed, pair, n_cols, n_rows)
        if q < 0:
            continue
        cand[n] = p
        partner[n] = q
        n += 1
    return n


def _prefetch_run_py(x3, a, n, cand, partner, pair):
    """Prefetch the values of a run's ``n`` selected pixels (and their partners): every cache line they lie on.

    The hardware prefetchers miss both patterns this is for: channels first,
    C planes read side by side, and scattered pixels (a mask, a class: a
    channels-first uint16 stack under a random mask of 12% of its pixels
    took 20% less time). Channels last, pixels that (nearly) fill the span
    they lie in are one stream that the hardware follows: they are left to
    it (prefetching them too cost 2-5%).
    """
    A, C, B = x3.shape
    if B == 1 and (n == 0 or cand[n - 1] - cand[0] < n + n // 8):
        return
    step = max(1, 64 // x3.itemsize)
    for side in range(2 if pair > 0 else 1):
        pixels = cand if side == 0 else partner
        if B == 1:
            xl = c_contiguous_or_empty(x3)  # channels last: always C-contiguous
            for j in range(n):
                for k in range(pixels[j] * C, (pixels[j] + 1) * C, step):
                    prefetch(xl, k)
                prefetch(xl, (pixels[j] + 1) * C - 1)
        elif n > 0:
            first, last = pixels[0] - a * B, pixels[n - 1] - a * B
            for c in range(C):
                row = contiguous_row(x3, a, c)
                for k in range(first, last, step):
                    prefetch(row, k)
                prefetch(row, last)


def _fill_py(x3, y3, a, b0, b1, n, nodata, use_nodata, check_nan, pair, shift, tile, at, cand, partner, bad):
    """The ``n`` selected pixels of one run as columns ``at, at + 1, ...`` of ``tile`` (channel by pixel), minus ``shift``.

    The run and its selected pixels (``cand``, ``partner``) as
    :func:`_candidates_py` gives them. Rows 0 to C - 1 are the channels of
    ``x3``, the next ``Y`` those of ``y3`` (the same pixels' extra channels,
    (A, Y, B); ``Y`` is 0 but for least squares, which has no ``pair``).
    Row C + Y is 1 for a kept pixel, so that the tile's Gram matrix holds
    the count and the sums too; a pixel with NaN (looked for when
    ``check_nan``, and always in ``y3``) or ``nodata`` (in ``x3``) is a
    column of zeros, which adds nothing. Returns how many those are.
    """
    A, C, B = x3.shape
    Y = y3.shape[1]
    channels_last = B == 1
    # Rows sliced at ``at`` rather than indexed at ``at + j``: an index Numba cannot prove
    # non-negative is wrapped around on every store (measured 13% slower).
    if channels_last:
        # Channels-last blocks are C-contiguous (see _x3); channels first may be a slab of a file, read in place.
        xl = c_contiguous_or_empty(x3)
        x2 = xl.reshape((xl.shape[0], C))
        # Eight pixels at a time: eight channels at a time by a vector
        # transpose (eight loads and eight stores), the rest channel by
        # channel (each channel's eight values are one contiguous store).
        j0 = 0
        while j0 < n:
            m = min(8, n - j0)
            blocked = C - C % 8 if m == 8 else 0
            for c0 in range(0, blocked, 8):
                if pair > 0:
                    transpose8_diff(xl, cand, partner, j0, c0, shift, tile, at + j0)
                else:
                    transpose8(xl, cand, partner, j0, c0, shift, tile, at + j0)
            for c in range(blocked, C):
                s = shift[c]
                row = tile[c, at:]
                for jj in range(m):
                    v = np.float64(x2[cand[j0 + jj], c])
                    if pair > 0:
                        v = v - np.float64(x2[partner[j0 + jj], c])
                    row[j0 + jj] = v - s
            j0 += 8
        # Missing pixels, from the values read (each pixel's channels are contiguous).
        for j in range(n):
            flag = False
            if check_nan or use_nodata:
                for side in range(2 if pair > 0 else 1):
                    p = cand[j] if side == 0 else partner[j]
                    for c in range(C):
                        v = x2[p, c]
                        if check_nan:
                            flag |= v != v
                        if use_nodata:
                            flag |= v == nodata
            bad[j] = flag
        y2 = y3.reshape((A, Y))
        for c in range(Y):
            row = tile[C + c, at:]
            s = shift[C + c]
            for j in range(n):
                v = y2[cand[j], c]
                bad[j] |= v != v
                row[j] = np.float64(v) - s
    else:
        plain = n == b1 - b0 and pair == 0  # every pixel of the run, in order
        base = a * B
        for j in range(n):
            bad[j] = False
        for c in range(C):
            src = contiguous_row(x3, a, c)
            row = tile[c, at:]
            s = shift[c]
            if plain:
                for j in range(n):
                    v = src[b0 + j]
                    row[j] = np.float64(v) - s
                    if check_nan:
                        bad[j] |= v != v
                    if use_nodata:
                        bad[j] |= v == nodata
                continue
            for j in range(n):
                v = src[cand[j] - base]
                fv = np.float64(v)
                flag = False
                if check_nan:
                    flag |= v != v
                if use_nodata:
                    flag |= v == nodata
                if pair > 0:
                    w = src[partner[j] - base]
                    if check_nan:
                        flag |= w != w
                    if use_nodata:
                        flag |= w == nodata
                    fv = fv - np.float64(w)
                if check_nan or use_nodata:  # else no load and store of the flag per value (10% of a masked fit)
                    bad[j] |= flag
                row[j] = fv - s
        for c in range(Y):
            src = y3[a, c]
            row = tile[C + c, at:]
            s = shift[C + c]
            for j in range(n):
                v = src[cand[j] - base]
                bad[j] |= v != v
                row[j] = np.float64(v) - s
    n_bad = 0
    ones = tile[C + Y, at:]
    for j in range(n):
        ones[j] = 1.0
    for j in range(n):
        if bad[j]:
            n_bad += 1
            for c in range(C + Y + 1):
                tile[c, at + j] = 0.0
    return n_bad


def _aligned_tile_py(rows, width):
    """A rows x width float64 tile of zeros whose rows start on 64-byte boundaries (``width`` a multiple of 8)."""
    return aligned(np.zeros(rows * width + 8), rows * width).reshape((rows, width))


def _aligned_tile16_py(rows, width):
    """As :func:`_aligned_tile_py`, int16 (``width`` a multiple of 32, or 0)."""
    return aligned(np.zeros(rows * width + 32, dtype=np.int16), rows * width).reshape((rows, width))


def _gram_tile_py(tile, n, gram):
    """``gram[a, b] += sum_j tile[a, j] tile[b, j]`` for the first ``n`` columns, blocks with a <= b.

    Four rows by four rows at a time: sixteen dot products share each row
    load, and each is vectorised over the pixels (its sum reassociated).
    ``tile`` has a multiple of four rows; only the 4 x 4 blocks on or above
    the diagonal are summed.
    """
    rows = tile.shape[0]
    for a0 in range(0, rows, 4):
        x0, x1, x2, x3 = tile[a0], tile[a0 + 1], tile[a0 + 2], tile[a0 + 3]
        for b0 in range(a0, rows, 4):
            y0, y1, y2, y3 = tile[b0], tile[b0 + 1], tile[b0 + 2], tile[b0 + 3]
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = 0.0
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = 0.0
            for j in range(n):
                u0, u1, u2, u3 = x0[j], x1[j], x2[j], x3[j]
                v0, v1, v2, v3 = y0[j], y1[j], y2[j], y3[j]
                s00 += u0 * v0
                s01 += u0 * v1
                s02 += u0 * v2
                s03 += u0 * v3
                s10 += u1 * v0
                s11 += u1 * v1
                s12 += u1 * v2
                s13 += u1 * v3
                s20 += u2 * v0
                s21 += u2 * v1
                s22 += u2 * v2
                s23 += u2 * v3
                s30 += u3 * v0
                s31 += u3 * v1
                s32 += u3 * v2
                s33 += u3 * v3
            g0, g1, g2, g3 = gram[a0], gram[a0 + 1], gram[a0 + 2], gram[a0 + 3]
            g0[b0] += s00
            g0[b0 + 1] += s01
            g0[b0 + 2] += s02
            g0[b0 + 3] += s03
            g1[b0] += s10
            g1[b0 + 1] += s11
            g1[b0 + 2] += s12
            g1[b0 + 3] += s13
            g2[b0] += s20
            g2[b0 + 1] += s21
            g2[b0 + 2] += s22
            g2[b0 + 3] += s23
            g3[b0] += s30
            g3[b0 + 1] += s31
            g3[b0 + 2] += s32
            g3[b0 + 3] += s33


def _first_mean_py(x3, y3, mask, use_mask, nodata, use_nodata, check_nan, stride, threshold, seed,
                   pair, n_cols, n_rows, width, rows):
    """The mean of the kept pixels of the block's first tile that has any (zeros if none).

    Subtracted from every value before the sums: close to the block's mean,
    so that no large numbers cancel.
    """
    A, C, B = x3.shape
    C += y3.shape[1]
    inner = A if B == 1 else B
    per_row = (inner + width - 1) // width
    tile = np.zeros((rows, width))
    cand = np.empty(width, dtype=np.int64)
    partner = np.empty(width, dtype=np.int64)
    bad = np.empty(width, dtype=np.bool_)
    zero = np.zeros(C)
    mean = np.zeros(C)
    for t in range(per_row * (1 if B == 1 else A)):
        a = t // per_row
        b0 = (t % per_row) * width
        b1 = min(inner, b0 + width)
        n = _candidates(a, b0, b1, B, mask, use_mask, stride, threshold, seed, pair, n_cols, n_rows, cand, partner)
        n_bad = _fill(x3, y3, a, b0, b1, n, nodata, use_nodata, check_nan, pair, zero, tile, 0, cand, partner, bad)
        if n > n_bad:
            for c in range(C):
                mean[c] = tile[c, :n].sum() / (n - n_bad)
            return mean
    return mean


def _group_gram_py(x3, y3, mask, use_mask, nodata, use_nodata, check_nan, stride, threshold, seed,
                   pair, n_cols, n_rows, shift, width, runs, gram, tile, tile16, igram, cand, partner, bad):
    """Add the Gram matrices of the tiles of ``runs`` (a range of runs of pixels) to ``gram``.

    The selected pixels of the runs fill the tile until the next run's do
    not fit (a mask or a class that keeps one pixel in eight would otherwise
    run each product over 32 columns, at twice the cost per pixel). Runs are
    ``width`` pixels, the float64 tile's width. With a ``tile16`` of any
    columns (channels-first integer data, an integer ``shift``), runs are
    that wide and fill it as int16 instead, whose products are exact and
    two to four times as fast (:mod:`pixelmix.kernels.int_gram`, summed in
    ``igram``; the narrower the values, the faster), until a run has a value
    that does not fit: that run, in pieces of ``width``, and the later runs
    take the float64 tile. Returns how many pixels were dropped (NaN or
    nodata).
    """
    A, C, B = x3.shape
    inner = A if B == 1 else B
    exact = tile16.shape[1] > 0
    run = tile16.shape[1] if exact else width
    per_row = (inner + run - 1) // run
    dropped = 0
    filled = filled16 = 0
    reach = 0  # the largest magnitude in the int16 tile
    igram[:, :] = 0
    for t in runs:
        a = t // per_row
        b0 = (t % per_row) * run
        b1 = min(inner, b0 + run)
        if exact:
            # Not prefetched: a run of 2048 pixels is long enough for the hardware's prefetchers (and prefetching
            # 512 KB of it at once, with the 540 KB tile, overflowed L2: plain, masked and paired fills all slowed).
            n = _candidates(a, b0, b1, B, mask, use_mask, stride, threshold, seed, pair, n_cols, n_rows, cand,
                            partner)
            if filled16 + n > tile16.shape[1]:
                flush_i16(x3, tile16, filled16, igram, reach)
                filled16 = reach = 0
            n_bad, run_reach = fill_i16(x3, a, b0, b1, n, nodata, use_nodata, pair, shift, tile16, filled16, cand,
                                        partner, bad)
            if n_bad >= 0:
                dropped += n_bad
                filled16 += n
                reach = max(reach, run_reach)
                continue
            exact = False
        for s0 in range(b0, b1, width):  # the float64 tile takes the run in pieces of its width
            s1 = min(b1, s0 + width)
            n = _candidates(a, s0, s1, B, mask, use_mask, stride, threshold, seed, pair, n_cols, n_rows, cand,
                            partner)
            _prefetch_run(x3, a, n, cand, partner, pair)
            if filled + n > width:
                _gram_tile(tile, filled, gram)
                filled = 0
            dropped += _fill(x3, y3, a, s0, s1, n, nodata, use_nodata, check_nan, pair, shift, tile, filled, cand,
                             partner, bad)
            filled += n
    if filled16 > 0:
        flush_i16(x3, tile16, filled16, igram, reach)
    if filled > 0:
        _gram_tile(tile, filled, gram)
    for r in range(igram.shape[0]):
        for c in range(r - r % 4, igram.shape[1]):
            gram[r, c] += igram[r, c]
    return dropped


def _block_gram_py(x3, y3, mask, use_mask, nodata, use_nodata, check_nan, stride, threshold, seed,
                   pair, n_cols, n_rows, shift, width, int_width, grams, skipped, workers):
    """The Gram matrices of the block's tiles, summed in ``grams.shape[0]`` fixed groups of tiles.

    ``grams[g]`` (rows x rows, rows >= C + 1 a multiple of 4) receives the
    upper 4 x 4 blocks of the sums of its runs of pixels in order
    (:func:`_group_gram_py`; runs of ``int_width`` pixels, in int16 tiles,
    where that is not 0, else of ``width``), ``skipped[g]`` the pixels they
    dropped.
    ``workers`` run in parallel and claim runs of groups (a slow thread
    takes fewer); the split into groups does not depend on the thread
    count, so neither does the result.
    """
    A, C, B = x3.shape
    outer, inner = (1, A) if B == 1 else (A, B)
    run = int_width if int_width > 0 else width
    n_runs = outer * ((inner + run - 1) // run)
    n_groups, rows = grams.shape[0], grams.shape[1]
    counter = np.zeros(1, dtype=np.int64)
    for _ in prange(workers):
        tile = _aligned_tile(rows, width)
        tile16 = _aligned_tile16(rows, int_width)
        igram = np.zeros((rows if int_width > 0 else 0, rows), dtype=np.int64)
        cand = np.empty(run, dtype=np.int64)
        partner = np.empty(run, dtype=np.int64)
        bad = np.empty(run, dtype=np.bool_)
        first, last = claim(counter, n_groups, workers)
        while first < last:
            for g in range(first, last):
                runs = range(g * n_runs // n_groups, (g + 1) * n_runs // n_groups)
                skipped[g] = _group_gram(x3, y3, mask, use_mask, nodata, use_nodata, check_nan, stride, threshold,
                                         seed, pair, n_cols, n_rows, shift, width, runs, grams[g], tile, tile16,
                                         igram, cand, partner, bad)
            first, last = claim(counter, n_groups, workers)


@dataclass
class Moments:
    """Count, mean and centred scatter matrix of a set of C-channel pixels.

    ``scatter`` is ``sum((x - mean)(x - mean)^T)``; the sample covariance is
    ``scatter / (count - 1)``. ``skipped`` counts pixels left out for NaN or
    nodata. Merge partial results with :meth:`merge` (exact, any order).
    """

    count: int
    mean: np.ndarray
    scatter: np.ndarray
    skipped: int = 0

    @classmethod
    def empty(cls, n_channels: int) -> "Moments":
        return cls(0, np.zeros(n_channels), np.zeros((n_channels, n_channels)), 0)

    @property
    def n_channels(self) -> int:
        return self.mean.shape[0]

    def covariance(self, ddof: int = 1) -> np.ndarray:
        """``scatter / (count - ddof)``."""
        if self.count <= ddof:
            raise ValueError(
                f"a covariance needs more than {ddof} pixel(s), got {self.count}; "
                f"check mask=, nodata= and sample= (fewer pixels were used than you think)"
            )
        return self.scatter / (self.count - ddof)

    def merge(self, other: "Moments") -> "Moments":
        """The moments of both sets of pixels together."""
        if other.n_channels != self.n_channels:
            raise ValueError(
                f"cannot merge statistics of {self.n_channels} and {other.n_channels} channels"
            )
        if other.count == 0:
            return Moments(self.count, self.mean, self.scatter, self.skipped + other.skipped)
        if self.count == 0:
            return Moments(other.count, other.mean, other.scatter, self.skipped + other.skipped)
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        scatter = self.scatter + other.scatter + np.outer(delta, delta) * (self.count * other.count / n)
        return Moments(n, mean, scatter, self.skipped + other.skipped)

    def to_dict(self) -> dict:
        """JSON-ready form (lists), e.g. to send between processes."""
        return {"count": self.count, "mean": self.mean.tolist(), "scatter": self.scatter.tolist(),
                "skipped": self.skipped}

    @classmethod
    def from_dict(cls, d: dict) -> "Moments":
        return cls(int(d["count"]), np.asarray(d["mean"], float), np.asarray(d["scatter"], float),
                   int(d.get("skipped", 0)))


@dataclass
class GroupMoments:
    """:class:`Moments` per integer label (the classes of a discriminant fit)."""

    groups: dict[int, Moments] = field(default_factory=dict)

    def merge(self, other: "GroupMoments") -> "GroupMoments":
        out = dict(self.groups)
        for label, m in other.groups.items():
            out[label] = out[label].merge(m) if label in out else m
        return GroupMoments(out)


def merge(parts: Iterable):
    """Merge any number of partial statistics (Moments, GroupMoments, ...) into one.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.stats import block_moments, merge
    >>> x = np.arange(12.0).reshape(6, 2)
    >>> m = merge([block_moments(x[:2], -1), block_moments(x[2:], -1)])
    >>> m.count, m.mean.tolist()
    (6, [5.0, 6.0])
    """
    total = None
    for part in parts:
        total = part if total is None else total.merge(part)
    if total is None:
        raise ValueError("nothing to merge: the data held no blocks (is it empty?)")
    return total


def parse_sample(sample) -> tuple[int, float]:
    """``sample=`` as ``(stride, fraction)``: an int keeps every n-th pixel, a float that fraction."""
    if sample is None:
        return 1, 1.0
    if isinstance(sample, bool):
        raise TypeError("sample must be a fraction in (0, 1] or a positive integer stride, not a bool")
    if isinstance(sample, (int, np.integer)):
        if sample < 1:
            raise ValueError(f"sample={sample} is not a valid stride; use a positive integer")
        return int(sample), 1.0
    if isinstance(sample, (float, np.floating)):
        if not 0.0 < sample <= 1.0:
            raise ValueError(
                f"sample={sample} is not a fraction in (0, 1]; pass e.g. 0.1 for a tenth of "
                f"the pixels, or an integer stride"
            )
        return 1, float(sample)
    raise TypeError(f"sample must be a float fraction or an integer stride, got {sample!r}")


def _x3(values: np.ndarray, axis: int, in_place: bool = False) -> np.ndarray:
    """The (A, C, B) view of a block, native and read-only (one kernel type per dtype and layout).

    With ``in_place`` (the pixels, not least squares' extra channels), a
    channels-first block whose rows of pixels have unit stride is read
    where it lies: a slab of a memory-mapped CYX file, each channel's rows
    contiguous but the channel planes a file's plane apart, was copied
    whole (10 of a 32 MiB slab's 44 ms, 128 uint16 bands). Anything else is
    made C-contiguous; types the kernel is not compiled for (float16, int8,
    uint32, 64-bit integers, any non-native byte order) are converted
    exactly to their working type in that same copy.
    """
    dtype = working_dtype(values.dtype)
    shape, strides = values.shape, values.strides
    # Read in place when the axes before and after the channels each merge into one (view3 is then a view).
    if not (in_place and values.dtype == dtype and math.prod(shape[axis + 1:]) > 1
            and _merged_stride(shape[:axis], strides[:axis]) is not None
            and _merged_stride(shape[axis + 1:], strides[axis + 1:]) == values.itemsize):
        values = np.ascontiguousarray(values, dtype=dtype)
    x3 = view3(values, axis).view(np.ndarray)
    x3.flags.writeable = False
    return x3


def _merged_stride(shape: tuple, strides: tuple) -> int | None:
    """The stride of these axes seen as one, or None if they are not one axis in memory.

    >>> _merged_stride((3, 4), (16, 4)), _merged_stride((3, 4), (32, 4)), _merged_stride((1, 5), (99, 2))
    (4, None, 2)
    """
    axes = [(n, s) for n, s in zip(shape, strides) if n != 1]
    if any(s != n * t for (_, s), (n, t) in zip(axes, axes[1:])):
        return None
    return axes[-1][1] if axes else 0


def block_moments(
    values: np.ndarray,
    channel_axis: int = -1,
    *,
    mask: np.ndarray | None = None,
    nodata=None,
    sample=None,
    seed: int = 0,
    pair: str | None = None,
    labels: np.ndarray | None = None,
    extra: np.ndarray | None = None,
):
    """Moments of the pixels of one block (step 1 of every fit).

    Parameters
    ----------
    values : ndarray
        The block: any number of dimensions, channels on ``channel_axis``.
    channel_axis : int
        The channel axis (negative counts from the end).
    mask : ndarray of bool, optional
        The block's spatial shape (``values.shape`` without the channel axis);
        True marks pixels to use.
    nodata : number, optional
        Pixels with any channel equal to this are skipped, like NaN pixels.
    sample : float or int, optional
        A fraction in (0, 1] of the pixels (a fixed pseudo-random subset that
        depends on ``seed`` and the pixel's position in the block), or an
        integer stride (every n-th pixel).
    seed : int
        Varies the subset of ``sample=`` between blocks.
    pair : {None, "right", "lower", "diagonal"}
        Gather the differences between each pixel and its neighbour instead of
        the pixels (rows and columns are the last two spatial axes).
    labels : ndarray of int, optional
        The block's spatial shape; returns :class:`GroupMoments` of the pixels
        of each non-zero label (0 = unlabelled, left out).
    extra : ndarray, optional
        More channels of the same pixels (the block's shape but for the
        channel axis): their moments follow the block's, as if the two were
        one array (least squares: source, then target), without copying
        them into one (float32 and float64 are read in place, other real
        dtypes and bool as float64). A pixel with NaN in them is skipped
        too. Not with ``pair``.

    Returns
    -------
    Moments or GroupMoments

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.stats import block_moments
    >>> x = np.array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [np.nan, 8.0]]])
    >>> m = block_moments(x, channel_axis=-1)
    >>> m.count, m.skipped, m.mean.tolist()
    (3, 1, [3.0, 4.0])
    """
    values = np.asarray(values)
    if values.ndim < 1:
        raise ValueError("a block needs at least a channel axis")
    problem = dtype_problem(values.dtype)
    if problem is not None:
        raise TypeError(problem)
    axis = channel_axis % values.ndim
    spatial = values.shape[:axis] + values.shape[axis + 1:]
    stride, threshold = parse_sample(sample)
    if pair not in PAIRS:
        raise ValueError(f"pair={pair!r} is not one of {', '.join(map(repr, PAIRS))}")
    if pair is not None:
        if len(spatial) < (1 if pair == "right" else 2):
            raise ValueError(
                f"noise from {pair!r} neighbours needs {1 if pair == 'right' else 2} spatial "
                f"axes but the data has {len(spatial)}; pass noise='right' or a noise covariance"
            )
        n_cols = spatial[-1]
        n_rows = spatial[-2] if len(spatial) >= 2 else 1
    else:
        n_cols = n_rows = 1
    flat_mask = _aux(mask, spatial, "mask", np.bool_)
    flat_labels = _aux(labels, spatial, "labels", None)
    if flat_labels is not None and flat_labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer image, got dtype {flat_labels.dtype}")
    if nodata is not None and values.dtype.kind in "iu":
        info = np.iinfo(values.dtype)
        if not info.min <= nodata <= info.max:
            nodata = None  # cannot occur in this dtype
    x3 = _x3(values, axis, in_place=True)
    if extra is None:
        # No extra channels: float64, whatever the data's dtype, so that a fit shares its compiled kernels with
        # least squares' (float targets) instead of compiling one more specialisation per dtype.
        y3 = _x3(np.empty(values.shape[:axis] + (0,) + values.shape[axis + 1:], dtype=np.float64), axis)
    else:
        extra = np.asarray(extra)
        if extra.ndim != values.ndim or extra.shape[:axis] + extra.shape[axis + 1:] != spatial:
            raise ValueError(f"extra has shape {extra.shape} but the block's pixels have shape {spatial}")
        if pair is not None:
            raise ValueError("extra channels cannot be paired with neighbours; pass pair=None")
        if extra.dtype.kind in "biuf" and extra.dtype not in (np.float32, np.float64):
            # As float64, the dtype the kernel turns each value into anyway (the sums are the same): one
            # specialisation, the fits' own, instead of a 15-18 s compile per dtype. float32 is read in
            # place: its copy cost least squares 3% of a fit (1M pixels, 128 -> 3), on every fit.
            extra = extra.astype(np.float64)
        problem = dtype_problem(extra.dtype)
        if problem is not None:
            raise TypeError(problem)
        y3 = _x3(extra, axis)
    _kernels()
    options = (nodata, stride, threshold, np.uint64(seed % 2**63), PAIRS[pair], n_cols, n_rows)
    if flat_labels is None:
        return _gram_moments(x3, y3, flat_mask, *options)
    # One pass per class, the class as the mask (a pair counts when both of its pixels are in the class).
    groups = {}
    for label in _present(flat_labels):
        if label == 0:
            continue
        in_class = flat_labels == label
        if flat_mask is not None:
            in_class &= flat_mask
        moments = _gram_moments(x3, y3, in_class, *options)
        if moments.count > 0:
            groups[label] = moments
    return GroupMoments(groups)


def _gram_moments(x3, y3, flat_mask, nodata, stride, threshold, seed, pair, n_cols, n_rows) -> Moments:
    """The moments of one block's channels, ``x3``'s then ``y3``'s, from Gram matrices of shifted tiles.

    Tiles of GRAM_WIDTH pixels, each a (C + 1) x pixels matrix of shifted
    values and a row of ones, so that one product gives the count, the sums
    and the cross-products (:func:`_block_gram_py`). The products run in a
    Numba kernel (AVX-512 where the CPU has it, which OpenBLAS builds often
    do not use), in groups of tiles on all threads, with float64 sums.
    """
    A, C, B = x3.shape
    C += y3.shape[1]
    rows = (C + 1 + 3) // 4 * 4
    inner = A if B == 1 else B
    width = GRAM_WIDTH
    int_width = _int_width(x3, y3)
    run = int_width or width
    n_runs = (1 if B == 1 else A) * ((inner + run - 1) // run)
    # Fixed groups (so the sums do not depend on the thread count), fewer when wide.
    n_groups = max(1, min(n_runs, GRAM_GROUPS, GRAM_BYTES // (rows * rows * 8)))
    mask = np.zeros(1, dtype=np.bool_) if flat_mask is None else flat_mask
    use_nodata = nodata is not None
    nodata = 0.0 if nodata is None else float(nodata)
    check_nan = x3.dtype.kind == "f"
    common = (mask, flat_mask is not None, nodata, use_nodata, check_nan, stride, threshold, seed, pair, n_cols, n_rows)
    shift = _first_mean(x3, y3, *common, width, rows)
    if int_width:
        shift = np.round(shift)  # the int16 tiles hold the values minus an integer
    grams = np.zeros((n_groups, rows, rows))
    skipped = np.zeros(n_groups, dtype=np.int64)
    _launch(_block_gram, x3, y3, *common, shift, width, int_width, grams, skipped)
    total = grams.sum(axis=0)
    upper = np.triu(total)
    full = upper + np.triu(total, 1).T
    n = int(round(full[C, C]))
    if n == 0:
        return Moments(0, np.zeros(C), np.zeros((C, C)), int(skipped.sum()))
    sums = full[:C, C]
    scatter = full[:C, :C] - np.outer(sums, sums) / n
    scatter = (scatter + scatter.T) / 2
    return Moments(n, shift + sums / n, scatter, int(skipped.sum()))


def _int_width(x3: np.ndarray, y3: np.ndarray) -> int:
    """The pixels of the int16 tiles that :func:`_block_gram_py` fills first, or 0 to fill float64 ones only.

    Channels-first 8- and 16-bit data without extra channels, on a CPU where
    the int16 product is fast (:mod:`pixelmix.kernels.int_gram`): it is
    exact, and about twice as fast as float64.
    """
    integer = x3.dtype.kind in "iu" and x3.dtype.itemsize <= 2
    return INT_GRAM_WIDTH if integer and x3.shape[2] > 1 and y3.shape[1] == 0 and int_gram_fast() else 0


def _present(labels: np.ndarray) -> list[int]:
    """The distinct values of an integer array, ascending.

    Class labels are usually small non-negative numbers: counting them is ten
    times faster than ``np.unique``'s sort or hash (0.07 against 0.65 ms per
    65536 labels), which took 5% of an LDA fit.
    """
    if labels.size == 0:
        return []
    lo, hi = int(labels.min()), int(labels.max())
    if lo >= 0 and hi < 4 * labels.size + 1024:
        return np.flatnonzero(np.bincount(labels.astype(np.intp, copy=False), minlength=hi + 1)).tolist()
    return np.unique(labels).tolist()


def _launch(kernel, *args):
    """Run a parallel kernel, its workers' count last, serialised where Numba's layer needs it (see backends.cpu)."""
    from ..backends.cpu import launch, workers

    return launch(kernel, *args, workers())


def _aux(arr, spatial: tuple[int, ...], name: str, dtype) -> np.ndarray | None:
    """A per-pixel image (mask, labels) flattened in the block's pixel order."""
    if arr is None:
        return None
    arr = np.asarray(arr)
    if arr.shape != spatial:
        raise ValueError(
            f"{name} has shape {arr.shape} but the data's pixels have shape {spatial} "
            f"(the data's shape without its channel axis)"
        )
    if dtype is np.bool_ and arr.dtype != np.bool_:
        raise TypeError(f"{name} must be a boolean array (True = use the pixel), got dtype {arr.dtype}")
    return np.ascontiguousarray(arr).reshape(-1)
