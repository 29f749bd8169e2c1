"""The Numba CPU kernel for RGB-like programs on channels-last images.

Three channels last (RGB) mixed into one or three outputs (gray, or another
colour space), through at most a lookup table before the mix and
elementwise steps after it: the programs of the colour conversions. The
general kernel (:mod:`pixelmix.kernels.cpu`) transposes each tile into a
channel-by-pixel scratch buffer and back; for three channels that
reshuffling costs more than the mixing. Here each pixel is mixed straight
from the image into the output, in one sequential pass (elementwise steps
after the mix rework each tile while it is in cache): the kernel is then
bound by memory bandwidth and by the first-touch page faults of a fresh
output.

The sums are the same as the general kernel's, bit for bit: bias first,
then ``w[k, c] * x[c]`` for c = 0, 1, 2, each as a fused multiply-add.

It is a kernel of its own, not a branch of the general one, so that only
the dtypes that take this path compile it.
"""

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from . import elementwise as ew
from .cpu import elementwise_rows, to_out
from .intrinsics import claim, trailing_zeros
from .rgb_lanes import LANES, WIDE_READ, mix16

# The channel counts this kernel takes: (inputs, outputs).
N_IN = 3
N_OUT = (1, 3)


def takes(table: np.ndarray, start: int, channels_last: bool, is_int: bool, use_nodata: bool, check_nan: bool) -> bool:
    """Whether :func:`run_pixels` runs this program (else the general kernel does).

    Channels-last images with three channels, and programs whose first
    remaining step (after the ``start`` steps a lookup table replaced) is
    affine to one or three outputs, followed only by elementwise steps, and
    those only for float output (which has the working dtype). Each further
    channel count would add an unrolled copy of the loop to the compile time.
    """
    if not channels_last or use_nodata or check_nan or start >= len(table):
        return False
    code, n_in, n_out = (int(v) for v in table[start, :3])
    if code != ew.AFFINE or n_in != N_IN or n_out not in N_OUT:
        return False
    # Python ints: this runs on every call, and np.isin's fixed cost was a
    # third of a small image's whole call.
    rest = table[start + 1 :, 0].tolist()
    return not ew.mixes(rest) and not (is_int and rest)


@njit(cache=True, nogil=True, inline="always")
def _affine_pixels(x, out, a0, n, params, offset, C, K, lut, lut_offset, use_lut, is_int, lo, hi, fill):
    """``out[a0 + j, k] = bias[k] + sum_c w[k, c] * x[a0 + j, c]`` for j < n (C == 3).

    Inlined with constant ``K`` and ``use_lut``, so the branches fold and the
    pixel loop vectorises. Through a table, each pixel's three inputs are
    looked up once for all its outputs, and the weights are held in locals
    (a store to ``out`` could alias them, and they would be reloaded: three
    times the lookups). Returns the tile's output values, flat.
    """
    xs = x.reshape(x.size)[a0 * 3 : (a0 + n) * 3]
    os = out.reshape(out.size)[a0 * K : (a0 + n) * K]
    cast = params.dtype.type
    bias = offset + 3 * K
    if not use_lut:
        # Straight from the image: this form vectorises best (measured).
        for j in range(n):
            for k in range(K):
                acc = params[bias + k]
                for c in range(3):
                    acc = acc + params[offset + k * 3 + c] * cast(xs[j * 3 + c])
                os[j * K + k] = to_out(acc, is_int, lo, hi, fill)
        return os
    w00, w01, w02, b0 = params[offset], params[offset + 1], params[offset + 2], params[bias]
    w10 = w11 = w12 = w20 = w21 = w22 = b1 = b2 = cast(0)
    if K == 3:
        w10, w11, w12, b1 = params[offset + 3], params[offset + 4], params[offset + 5], params[bias + 1]
        w20, w21, w22, b2 = params[offset + 6], params[offset + 7], params[offset + 8], params[bias + 2]
    t0, t1, t2 = lut[0], lut[min(1, lut.shape[0] - 1)], lut[min(2, lut.shape[0] - 1)]
    for j in range(n):
        v0 = t0[np.int64(xs[3 * j]) + lut_offset]
        v1 = t1[np.int64(xs[3 * j + 1]) + lut_offset]
        v2 = t2[np.int64(xs[3 * j + 2]) + lut_offset]
        # bias first, then the channels in order, each a fused multiply-add
        acc = b0 + w00 * v0
        acc = acc + w01 * v1
        acc = acc + w02 * v2
        os[j * K] = to_out(acc, is_int, lo, hi, fill)
        if K == 3:
            acc = b1 + w10 * v0
            acc = acc + w11 * v1
            acc = acc + w12 * v2
            os[j * K + 1] = to_out(acc, is_int, lo, hi, fill)
            acc = b2 + w20 * v0
            acc = acc + w21 * v1
            acc = acc + w22 * v2
            os[j * K + 2] = to_out(acc, is_int, lo, hi, fill)
    return os


# "contract" (FMA) is set here, not on _affine_pixels: an inline="always"
# function is compiled with the flags of the function it is inlined into.
# Those flags also reach the functions this one calls (numba#7168), so it
# calls nothing but the mix: the elementwise steps run from _tile, without
# FMA, exactly as in the general kernel (sRGB's a * v**p - b would fuse).
@njit(cache=True, nogil=True, fastmath={"contract"})
def _mix(x, out, a0, n, K, offset, params, lut, lut_offset, use_lut, is_int, lo, hi, fill):
    # One inlined copy per constant (outputs, table or not).
    if K == 1 and use_lut:
        return _affine_pixels(x, out, a0, n, params, offset, 3, 1, lut, lut_offset, True, is_int, lo, hi, fill)
    if K == 1:
        return _affine_pixels(x, out, a0, n, params, offset, 3, 1, lut, lut_offset, False, is_int, lo, hi, fill)
    if use_lut:
        return _affine_pixels(x, out, a0, n, params, offset, 3, 3, lut, lut_offset, True, is_int, lo, hi, fill)
    return _affine_pixels(x, out, a0, n, params, offset, 3, 3, lut, lut_offset, False, is_int, lo, hi, fill)


def _elementwise_output(flat, n, code, p0, p1):
    """``elementwise_rows`` on the one row ``flat`` of float output; integer output has no such steps."""
    raise NotImplementedError("_elementwise_output is for compiled code")


@overload(_elementwise_output)
def _elementwise_output_typed(flat, n, code, p0, p1):
    # Integer output takes no elementwise step (see takes): its kernels need not compile
    # elementwise_rows for their output type, 4 s each.
    if not isinstance(flat.dtype, types.Float):
        return lambda flat, n, code, p0, p1: None

    def run(flat, n, code, p0, p1):
        # One row, as an int64 like the general kernel's: the same compiled elementwise_rows.
        elementwise_rows(flat, n, np.int64(1), code, p0, p1)

    return run


@njit(cache=True, nogil=True)
def _tile(x, out, a0, n, table, params, start, lut, lut_offset, use_lut, is_int, lo, hi, fill):
    K, offset = table[start, 2], table[start, 3]
    os = _mix(x, out, a0, n, K, offset, params, lut, lut_offset, use_lut, is_int, lo, hi, fill)
    # The elementwise steps after the mix run on the values just written,
    # while they are still in cache.
    flat = os.reshape((1, os.size))
    for s in range(start + 1, table.shape[0]):
        at = table[s, 3]
        _elementwise_output(flat, os.size, table[s, 0], params[at], params[at + 1])


@njit(parallel=True, cache=True, nogil=True)
def run_pixels(x, out, table, params, start, tile, lut, lut_offset, use_lut, is_int, lo, hi, fill):
    """Apply a program that :func:`takes` accepts to ``x`` (A, 3, 1) into ``out`` (A, K, 1).

    Both contiguous. The arguments are those of
    :func:`pixelmix.kernels.cpu.run_program`, less the ones for scratch
    buffers and missing pixels.
    """
    A = x.shape[0]
    n_tiles = (A + tile - 1) // tile
    for t in prange(n_tiles):
        a0 = t * tile
        _tile(x, out, a0, min(tile, A - a0), table, params, start, lut, lut_offset, use_lut, is_int, lo, hi, fill)


# -- Integer output through a float32 first pass -----------------------------------
#
# Integer output is the float64 sum r, rounded half to even and saturated.
# For 8- and 16-bit input and modest weights, the same sum taken in float32,
# a, lies within a proven bound E of r (:func:`rounding_limit`). Wherever a
# is farther than E from every half-integer, r rounds to the same integer as
# a does, and the float32 result is stored: twice the lanes per vector, and
# the rounding test costs less than the float64 arithmetic it saves. The
# other pixels (one to a few per thousand: with decimal weights such as 0.299,
# exact ties are common) are flagged and recomputed with the float64 sums of
# the general path. The output is the float64 path's, bit for bit. The
# float32 pass runs on 16 pixels at a time as LLVM vectors
# (:mod:`pixelmix.kernels.rgb_lanes`).

# Calls of mix16 per block: the block's masks are kept, its doubtful pixels redone after it.
BLOCK_CALLS = 64
# Integer dtypes the float32 pass reads and writes exactly (every value, and
# every rounded result within range, is a float32 integer).
ROUND_IN = ("uint8", "uint16", "int16")
ROUND_OUT = ("uint8", "uint16", "int16")
_ROUND_IN, _ROUND_OUT = frozenset(map(np.dtype, ROUND_IN)), frozenset(map(np.dtype, ROUND_OUT))
# The pass is taken only when the bound flags few pixels (at most ~2E of them).
ROUND_MAX_BOUND = 2.0**-9


def rounding_limit(table: np.ndarray, params: np.ndarray, start: int, use_lut: bool,
                   in_dtype: np.dtype, out_dtype: np.dtype) -> float | None:
    """The float32 pass's threshold on ``|a - rint(a)|``, or None when the pass does not apply.

    A pixel whose float32 sum ``a`` is at least this far from its rounded
    value is recomputed in float64. With ``M = |b| + sum_c |w_c| max|x|``
    (the largest magnitude of any partial sum), both sums are within
    ``(C + 1) u32 M + C u64 M`` of the exact sum when each step is one
    fused multiply-add, ``(2C + 1) u32 M + C u64 M`` when it is not
    (``u32 = 2**-24``, ``u64 = 2**-53``: the float32 weights are rounded
    once, and each of the C steps rounds once or twice). The bound used,
    ``E = (2C + 2) u32 M`` plus a term for subnormal weights, covers both.
    """
    # (dtype objects, not names: a dtype's name is computed in Python each time)
    if use_lut or start != 0 or len(table) != 1 or np.dtype(in_dtype) not in _ROUND_IN:
        return None
    if np.dtype(out_dtype) not in _ROUND_OUT:
        return None
    _, n_in, n_out, offset = table[0].tolist()
    # Python floats: a dozen values, and this runs on every call.
    p = [float(v) for v in params[offset : offset + n_out * (n_in + 1)].tolist()]
    if not all(math.isfinite(v) for v in p):
        return None
    info = np.iinfo(in_dtype)
    xmax = float(max(-int(info.min), int(info.max)))
    weights, bias = p[: n_in * n_out], p[n_in * n_out :]
    rows = (weights[k * n_in : (k + 1) * n_in] for k in range(n_out))
    largest = max(abs(b) + sum(map(abs, row)) * xmax for b, row in zip(bias, rows))
    bound = (2 * n_in + 2) * 2.0**-24 * largest * (1 + 2.0**-20) + 2.0**-120
    if bound > ROUND_MAX_BOUND:
        return None
    limit = np.float32(0.5 - bound)
    if float(limit) > 0.5 - bound:  # rounded up: take the float32 below
        limit = np.nextafter(limit, np.float32(0))
    return float(limit)


# "contract" as in _mix: the float64 sums must fuse exactly as the general kernel's do.
@njit(cache=True, nogil=True, fastmath={"contract"})
def _exact(xs, os, mask, p, K, offset, params, lo, hi, fill):
    """Pixels ``p + j`` for the set bits ``j`` of ``mask``, with the float64 sums of the general path."""
    while mask != 0:
        j = trailing_zeros(mask)
        mask &= mask - np.uint64(1)
        q = p + j
        for k in range(K):  # the sums of _affine_pixels, term for term
            acc = params[offset + 3 * K + k]
            for c in range(3):
                acc = acc + params[offset + k * 3 + c] * np.float64(xs[3 * q + c])
            os[q * K + k] = to_out(acc, True, lo, hi, fill)


@njit(cache=True, nogil=True)
def _span(x, out, p0, p1, w, offset, params, lim, lo, hi, fill):
    """Pixels ``p0`` to ``p1``: :func:`mix16` on 16 at a time, the doubtful ones and the last few in float64.

    The masks of a block of calls are kept and its doubtful pixels redone
    after the block: with a call in the loop, LLVM would keep the weights'
    vectors in memory rather than in registers.
    """
    xs = x.reshape(x.size)
    os = out.reshape(out.size)
    K = len(w) // 4
    lim32 = np.float32(lim)
    reach = WIDE_READ if x.itemsize == 1 else 3 * LANES  # values a call reads from 3 * p
    last = min(p1 - LANES, (xs.size - reach) // 3)  # the last pixel a call may start at
    end = p0 if last < p0 else p0 + ((last - p0) // LANES + 1) * LANES
    masks = np.empty(BLOCK_CALLS, dtype=np.uint64)
    for b in range(p0, end, LANES * BLOCK_CALLS):
        n = min(BLOCK_CALLS, (end - b) // LANES)
        seen = np.uint64(0)
        for i in range(n):
            masks[i] = mix16(xs, b + LANES * i, os, w, lim32)
            seen |= masks[i]
        if seen != 0:
            for i in range(n):
                if masks[i] != 0:
                    _exact(xs, os, masks[i], b + LANES * i, K, offset, params, lo, hi, fill)
    for q in range(end, p1):
        _exact(xs, os, np.uint64(1), q, K, offset, params, lo, hi, fill)


@njit(parallel=True, cache=True, nogil=True)
def run_rounded(x, out, table, params, params32, tile, lim, lo, hi, fill, workers):
    """Integer output of a lone RGB-like affine step on 8- or 16-bit input (see :func:`rounding_limit`).

    ``x`` (A, 3, 1) and ``out`` (A, K, 1) contiguous; ``params`` float64 and
    ``params32`` the same in float32; ``lim`` from :func:`rounding_limit`.
    The result is that of :func:`run_pixels` with float64 ``params``.
    ``workers`` (one per thread) claim runs of tiles (:func:`claim`).
    """
    A = x.shape[0]
    K, offset = table[0, 2], table[0, 3]
    w = params32[offset : offset + 4 * K]
    n_tiles = (A + tile - 1) // tile
    counter = np.zeros(1, dtype=np.int64)
    for _ in prange(workers):
        first, last = claim(counter, n_tiles, workers)  # runs of tiles: a slow thread takes fewer
        while first < last:
            p0 = first * tile
            p1 = min(last * tile, A)
            if K == 1:
                _span(x, out, p0, p1, (w[0], w[1], w[2], w[3]), offset, params, lim, lo, hi, fill)
            else:
                _span(x, out, p0, p1, (w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8], w[9], w[10], w[11]),
                      offset, params, lim, lo, hi, fill)
            first, last = claim(counter, n_tiles, workers)
