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

import numpy as np
from numba import njit, prange

from . import elementwise as ew
from .cpu import elementwise_rows, to_out

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
    rest = table[start + 1 :, 0]
    return not np.isin(rest, ew.MIXING).any() and not (is_int and len(rest))


@njit(cache=True, nogil=True, inline="always")
def _affine_pixels(x, out, a0, n, params, offset, C, K, lut, lut_offset, use_lut, is_int, lo, hi, fill):
    """``out[a0 + j, k] = bias[k] + sum_c w[k, c] * x[a0 + j, c]`` for j < n.

    Inlined with constant ``C``, ``K`` and ``use_lut``, so the channel loops
    unroll and the pixel loop vectorises. Returns the tile's output values,
    flat.
    """
    xs = x.reshape(x.size)[a0 * C : (a0 + n) * C]
    os = out.reshape(out.size)[a0 * K : (a0 + n) * K]
    cast = params.dtype.type
    bias = offset + C * K
    for j in range(n):
        for k in range(K):
            acc = params[bias + k]
            for c in range(C):
                raw = xs[j * C + c]
                v = lut[c, np.int64(raw) + lut_offset] if use_lut else cast(raw)
                acc = acc + params[offset + k * C + c] * v
            os[j * K + k] = to_out(acc, is_int, lo, hi, fill)
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


@njit(cache=True, nogil=True)
def _tile(x, out, a0, n, table, params, start, lut, lut_offset, use_lut, is_int, lo, hi, fill):
    K, offset = table[start, 2], table[start, 3]
    os = _mix(x, out, a0, n, K, offset, params, lut, lut_offset, use_lut, is_int, lo, hi, fill)
    # The elementwise steps after the mix run on the values just written,
    # while they are still in cache.
    flat = os.reshape((1, os.size))
    for s in range(start + 1, table.shape[0]):
        at = table[s, 3]
        elementwise_rows(flat, os.size, 1, table[s, 0], params[at], params[at + 1])


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
