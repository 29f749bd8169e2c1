"""The Numba CPU kernel: a per-pixel program over the (A, C, B) view.

The image arrives as a 3-D view ``x[a, c, b]``: A pixels-before-channel,
C channels, B pixels-after-channel. The pixels are cut into tiles of at most
``tile`` pixels (a run of ``a`` when B == 1, channels last; a run of ``b``
within one ``a`` otherwise, channels first), and tiles run in parallel.

Each tile is loaded into a small float scratch buffer laid out channel by
pixel (``buf[c, j]``), so that every step's inner loop runs over contiguous
pixels and vectorises, whatever the layout of the image. An affine step adds
``w[k, c] * x[c]`` to ``bias[k]`` for c = 0, 1, ... in that order for every
pixel, so the result does not depend on the tile size, the layout or the
thread count, and matches the NumPy reference.

No fastmath: NaN and Inf must behave as IEEE says, and contraction into FMA
could make the vector body and the scalar remainder of a loop round
differently.
"""

import numpy as np
from numba import njit, prange

from . import elementwise as ew

_apply_op = njit(inline="always", cache=True)(ew.apply_op)


@njit(cache=True, nogil=True)
def _load(x, a0, b0, n, channels_last, buf, lut, lut_offset, use_lut):
    """Convert the tile's input values into ``buf[c, j]`` (through ``lut`` if asked)."""
    C = x.shape[1]
    for c in range(C):
        row = buf[c]
        # A 1-D slice per channel: indexing the 3-D array inside the pixel
        # loop defeats vectorisation.
        src = x[a0 : a0 + n, c, 0] if channels_last else x[a0, c, b0 : b0 + n]
        if use_lut:
            table = lut[c]
            for j in range(n):
                row[j] = table[np.int64(src[j]) + lut_offset]
        else:
            for j in range(n):
                row[j] = src[j]


@njit(cache=True, nogil=True)
def _mark_bad(x, a0, b0, n, channels_last, buf, bad, nodata, use_nodata, check_nan):
    """Flag pixels with NaN (read from ``buf``) or a channel equal to ``nodata``."""
    C = x.shape[1]
    count = 0
    for j in range(n):
        flag = False
        for c in range(C):
            if check_nan and buf[c, j] != buf[c, j]:
                flag = True
            if use_nodata:
                v = x[a0 + j, c, 0] if channels_last else x[a0, c, b0 + j]
                if v == nodata:
                    flag = True
        bad[j] = flag
        if flag:
            count += 1
    return count


@njit(cache=True, nogil=True)
def _affine(src, dst, n, n_in, n_out, params, offset):
    # Four input channels per sweep over the pixels cut the loads and stores
    # of the accumulator row fourfold; each pixel still adds its terms in
    # channel order, so the sum is the same as one channel at a time.
    for k in range(n_out):
        row = dst[k]
        w = params[offset + k * n_in : offset + (k + 1) * n_in]
        bias = params[offset + n_out * n_in + k]
        for j in range(n):
            row[j] = bias
        c = 0
        while c + 4 <= n_in:
            w0, w1, w2, w3 = w[c], w[c + 1], w[c + 2], w[c + 3]
            s0, s1, s2, s3 = src[c], src[c + 1], src[c + 2], src[c + 3]
            for j in range(n):
                row[j] = (((row[j] + w0 * s0[j]) + w1 * s1[j]) + w2 * s2[j]) + w3 * s3[j]
            c += 4
        while c < n_in:
            w0, s0 = w[c], src[c]
            for j in range(n):
                row[j] += w0 * s0[j]
            c += 1


@njit(cache=True, nogil=True)
def _elementwise(buf, n, channels, code, p0, p1):
    for c in range(channels):
        row = buf[c]
        for j in range(n):
            row[j] = _apply_op(code, row[j], p0, p1)


@njit(cache=True, nogil=True)
def _run_steps(buf, spare, n, table, params, start):
    """Run steps ``start:`` on ``buf``; return the buffer holding the result."""
    for s in range(start, table.shape[0]):
        code, n_in, n_out, offset = table[s, 0], table[s, 1], table[s, 2], table[s, 3]
        if code == ew.AFFINE:
            _affine(buf, spare, n, n_in, n_out, params, offset)
            buf, spare = spare, buf
        else:
            _elementwise(buf, n, n_in, code, params[offset], params[offset + 1])
    return buf


@njit(cache=True, nogil=True)
def _store(buf, out, a0, b0, n, channels_last, bad, n_bad, is_int, lo, hi, fill):
    """Write ``buf[k, j]`` to the tile's place in ``out`` (rounded and saturated if integer)."""
    K = out.shape[1]
    if n_bad > 0:
        for k in range(K):
            for j in range(n):
                if bad[j]:
                    buf[k, j] = np.nan
    for k in range(K):
        row = buf[k]
        dst = out[a0 : a0 + n, k, 0] if channels_last else out[a0, k, b0 : b0 + n]
        if is_int:
            for j in range(n):
                v = row[j]
                dst[j] = fill if v != v else min(max(np.rint(v), lo), hi)
        else:
            for j in range(n):
                dst[j] = row[j]


@njit(parallel=True, cache=True, nogil=True)
def run_program(
    x, out, table, params, start, width, tile,
    lut, lut_offset, use_lut, nodata, use_nodata, check_nan, is_int, lo, hi, fill,
):
    """Apply the compiled program to every pixel of ``x`` (A, C, B) into ``out`` (A, K, B).

    ``params`` has the accumulation dtype; scratch buffers take it too.
    ``start`` is the first step to run (the steps before it were folded into
    ``lut`` when ``use_lut``).
    """
    A, _, B = x.shape
    channels_last = B == 1
    if channels_last:
        per_row = 1
        n_tiles = (A + tile - 1) // tile
    else:
        per_row = (B + tile - 1) // tile
        n_tiles = A * per_row
    for t in prange(n_tiles):
        if channels_last:
            a0, b0 = t * tile, 0
            n = min(tile, A - a0)
        else:
            a0, b0 = t // per_row, (t % per_row) * tile
            n = min(tile, B - b0)
        buf = np.empty((width, tile), dtype=params.dtype)
        spare = np.empty((width, tile), dtype=params.dtype)
        bad = np.zeros(tile, dtype=np.bool_)
        _load(x, a0, b0, n, channels_last, buf, lut, lut_offset, use_lut)
        n_bad = 0
        if check_nan or use_nodata:
            n_bad = _mark_bad(x, a0, b0, n, channels_last, buf, bad, nodata, use_nodata, check_nan)
        result = _run_steps(buf, spare, n, table, params, start)
        _store(result, out, a0, b0, n, channels_last, bad, n_bad, is_int, lo, hi, fill)
