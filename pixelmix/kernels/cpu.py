"""The Numba CPU kernel: a per-pixel program over the (A, C, B) view.

The image arrives as a 3-D view ``x[a, c, b]``: A pixels-before-channel,
C channels, B pixels-after-channel. The pixels are cut into tiles of at most
``tile`` pixels (a run of ``a`` when B == 1, channels last; a run of ``b``
within one ``a`` otherwise, channels first), and tiles run in parallel.

Each tile is loaded into a small float scratch buffer laid out channel by
pixel (``buf[c, j]``), so that every step's inner loop runs over contiguous
pixels and vectorises, whatever the layout of the image. An affine step adds
``w[k, c] * x[c]`` to ``bias[k]`` for c = 0, 1, ... in that order for every
pixel, as a fused multiply-add (FMA: fastmath "contract" only, so NaN and
Inf keep their IEEE meaning), so the result does not depend on the tile
size, the layout or the thread count. It matches the NumPy reference to
within the rounding of the partial sums (the reference rounds products and
sums apart). FMA halves the arithmetic of the affine step, which dominates
with many channels. One exception to the channel order: a first affine step
on channels-last data with many inputs and few outputs is computed as dot
products along each pixel's channels (:func:`_affine_dots`, four pixels by
four or five outputs at a time), which is faster than transposing the tile;
that sum is reassociated, the same way for every tile and thread count.
(With few channels last and one output, the first step reads the channels as
strided rows instead, in channel order.) The affine step itself updates four
output rows from four input rows at a time, so each input value is converted
once per four outputs. Where it reads the image straight (channels first), a
tile reads every channel's row at once, more streams than the hardware
prefetcher follows well: each stream is read in runs of SWEEP pixels (longer
runs measured faster, although the output rows then sit in L2, not L1).

An UNMIX step (constrained unmixing) runs on the scratch rows like a later
affine step, never straight from the image:
:func:`pixelmix.kernels.unmix.unmix_rows`.

Everything a tile does after its first step (the later steps, unmixing, the
elementwise functions, the store into any of six output dtypes) depends on
the accumulation dtype alone: :func:`finish_tile` is compiled once per
accumulation dtype and :func:`run_program` calls it through its address
(:func:`pixelmix.kernels.intrinsics.call_compiled`). Linked in, as Numba
links every callee, it was compiled again into each input dtype's kernel:
a further input dtype took 21 s to compile, now 12-14 s (2-core Zen 4).

RGB-like programs on channels-last data have a kernel of their own, with no
scratch buffer at all: :mod:`pixelmix.kernels.cpu_pixels`.
"""

import numpy as np
from numba import njit, prange, typeof, types

from . import elementwise as ew
from . import vmath
from .intrinsics import aligned, call_compiled, claim, compiled_address
from .unmix import unmix_rows

# The shared body with exp, log and pow that vectorise (math's are scalar calls here).
_apply_op = njit(inline="always", cache=True)(ew.with_math(vmath.exp, vmath.log, vmath.pow))


@njit(cache=True, nogil=True)
def _load(x, a0, b0, n, channels_last, buf, lut, lut_offset, use_lut):
    """Convert the tile's input values into ``buf[c, j]`` (through ``lut`` if asked)."""
    C = x.shape[1]
    if channels_last and C >= 16 and not use_lut:
        # Many channels: four pixels at a time, reading their contiguous
        # channels; each channel's four adjacent stores share a line of buf,
        # and those C lines stay in L1 while 16 pixels pass. (With few
        # channels the strided per-channel loop below is faster: it
        # vectorises and x's lines stay in L1 across channels.)
        j = 0
        while j + 4 <= n:
            s0, s1 = x[a0 + j, :, 0], x[a0 + j + 1, :, 0]
            s2, s3 = x[a0 + j + 2, :, 0], x[a0 + j + 3, :, 0]
            for c in range(C):
                buf[c, j], buf[c, j + 1], buf[c, j + 2], buf[c, j + 3] = s0[c], s1[c], s2[c], s3[c]
            j += 4
        for j in range(j, n):
            src = x[a0 + j, :, 0]
            for c in range(C):
                buf[c, j] = src[c]
        return
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


# Pixels per sweep of the affine step: every input row is read in runs this
# long, and the output rows stay in L2 across all input channels (measured on
# channels-first uint16, 64 -> 8: 1024 pixels, in L1, took 20% longer than
# 4096, and 4096 8-10% longer than 8192, whose eight float32 output rows take
# 256 KB of L2; 16384 was slower again).
SWEEP = 8192


@njit(cache=True, nogil=True, fastmath={"contract"})
def _affine(src, a0, b0, dst, n, n_in, n_out, params, offset):
    """``dst[k, j] = bias[k] + sum_c w[k, c] * src[a0, c, b0 + j]`` for j < n.

    ``src`` is a scratch buffer (as (1, C, pitch)) or, for a first affine
    step on channels-first data, the image itself, converted on the fly.
    """
    # Four input rows at a time, every output row updated from them while
    # they are in L1: the input is read once, not once per output, and the
    # accumulator rows are loaded and stored once per four channels.
    # Each pixel still adds its terms in channel order.
    bias = params[offset + n_out * n_in : offset + n_out * n_in + n_out]
    # Convert integer inputs to the accumulation type first: Numba would
    # promote float32 * uint16 to float64.
    cast = dst.dtype.type
    zero = cast(0)
    junk = np.zeros((3, min(n, SWEEP)), dtype=dst.dtype)
    for j0 in range(0, n, SWEEP):
        m = min(n - j0, SWEEP)
        for k in range(n_out):
            row = dst[k, j0 : j0 + m]
            for j in range(m):
                row[j] = bias[k]
        c = 0
        while c + 4 <= n_in:
            b = b0 + j0
            s0, s1 = src[a0, c, b : b + m], src[a0, c + 1, b : b + m]
            s2, s3 = src[a0, c + 2, b : b + m], src[a0, c + 3, b : b + m]
            # Four output rows at a time: each input value is converted once
            # for four rows, not once per row. Rows past the last output are
            # junk rows with zero weights (one each: rows that overlap would
            # fail the vectorised loop's aliasing checks).
            # A last single row takes a loop of its own (three junk rows
            # would quadruple its arithmetic).
            for k in range(0, n_out, 4):
                r0 = dst[k, j0 : j0 + m]
                if k + 1 == n_out:
                    at = offset + k * n_in + c
                    w00, w01, w02, w03 = params[at], params[at + 1], params[at + 2], params[at + 3]
                    for j in range(m):
                        acc = r0[j] + w00 * cast(s0[j])
                        acc = acc + w01 * cast(s1[j])
                        acc = acc + w02 * cast(s2[j])
                        r0[j] = acc + w03 * cast(s3[j])
                    continue
                r1 = dst[k + 1, j0 : j0 + m] if k + 1 < n_out else junk[0, :m]
                r2 = dst[k + 2, j0 : j0 + m] if k + 2 < n_out else junk[1, :m]
                r3 = dst[k + 3, j0 : j0 + m] if k + 3 < n_out else junk[2, :m]
                at = offset + k * n_in + c
                w00, w01, w02, w03 = params[at], params[at + 1], params[at + 2], params[at + 3]
                w10 = w11 = w12 = w13 = w20 = w21 = w22 = w23 = w30 = w31 = w32 = w33 = zero
                if k + 1 < n_out:
                    at += n_in
                    w10, w11, w12, w13 = params[at], params[at + 1], params[at + 2], params[at + 3]
                if k + 2 < n_out:
                    at += n_in
                    w20, w21, w22, w23 = params[at], params[at + 1], params[at + 2], params[at + 3]
                if k + 3 < n_out:
                    at += n_in
                    w30, w31, w32, w33 = params[at], params[at + 1], params[at + 2], params[at + 3]
                for j in range(m):
                    x0, x1, x2, x3 = cast(s0[j]), cast(s1[j]), cast(s2[j]), cast(s3[j])
                    acc = r0[j] + w00 * x0
                    acc = acc + w01 * x1
                    acc = acc + w02 * x2
                    r0[j] = acc + w03 * x3
                    acc = r1[j] + w10 * x0
                    acc = acc + w11 * x1
                    acc = acc + w12 * x2
                    r1[j] = acc + w13 * x3
                    acc = r2[j] + w20 * x0
                    acc = acc + w21 * x1
                    acc = acc + w22 * x2
                    r2[j] = acc + w23 * x3
                    acc = r3[j] + w30 * x0
                    acc = acc + w31 * x1
                    acc = acc + w32 * x2
                    r3[j] = acc + w33 * x3
            c += 4
        # The last one to three channels in one sweep too (RGB is all remainder).
        rest = n_in - c
        if rest > 0:
            b = b0 + j0
            s0 = src[a0, c, b : b + m]
            s1 = src[a0, c + 1, b : b + m] if rest > 1 else s0
            s2 = src[a0, c + 2, b : b + m] if rest > 2 else s0
            for k in range(n_out):
                at = offset + k * n_in + c
                row = dst[k, j0 : j0 + m]
                w0 = params[at]
                if rest == 3:
                    w1, w2 = params[at + 1], params[at + 2]
                    for j in range(m):
                        acc = row[j] + w0 * cast(s0[j])
                        acc = acc + w1 * cast(s1[j])
                        row[j] = acc + w2 * cast(s2[j])
                elif rest == 2:
                    w1 = params[at + 1]
                    for j in range(m):
                        acc = row[j] + w0 * cast(s0[j])
                        row[j] = acc + w1 * cast(s1[j])
                else:
                    for j in range(m):
                        row[j] = row[j] + w0 * cast(s0[j])


# Channels-last first affine steps with at least this many inputs and at most
# DOTS_MAX_OUT outputs are computed as dot products along each pixel's channels.
DOTS_MIN_IN = 16
DOTS_MAX_OUT = 16
# Pixels staged at a time (in the sum's dtype: 224 float32 channels take 229 KB, in L2).
DOTS_STAGE = 256
# Four pixels by four outputs at a time from this many inputs (measured: with
# fewer, the sixteen horizontal sums at the end of each block cost more than
# the loads the block shares).
DOTS_BLOCK_MIN_IN = 64


@njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
def _dots_4x4(rows, p, w, k0, k1, k2, k3, cast):
    """Dot products of image rows ``p .. p + 3`` with weight rows ``k0 .. k3``: 16 sums.

    Each sum runs along the channels, vectorised (reassociated); the sixteen
    share their loads. Every dot product of :func:`_affine_dots` is taken by
    this one compiled function, so each is summed the same way wherever its
    pixel sits in a tile.
    """
    v0, v1, v2, v3 = rows[p], rows[p + 1], rows[p + 2], rows[p + 3]
    w0, w1, w2, w3 = w[k0], w[k1], w[k2], w[k3]
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = cast(0)
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = cast(0)
    for c in range(rows.shape[1]):
        u0, u1, u2, u3 = cast(v0[c]), cast(v1[c]), cast(v2[c]), cast(v3[c])
        a0, a1, a2, a3 = w0[c], w1[c], w2[c], w3[c]
        s00 += a0 * u0
        s01 += a0 * u1
        s02 += a0 * u2
        s03 += a0 * u3
        s10 += a1 * u0
        s11 += a1 * u1
        s12 += a1 * u2
        s13 += a1 * u3
        s20 += a2 * u0
        s21 += a2 * u1
        s22 += a2 * u2
        s23 += a2 * u3
        s30 += a3 * u0
        s31 += a3 * u1
        s32 += a3 * u2
        s33 += a3 * u3
    return (s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33)


@njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
def _dots_4x5(rows, p, w, k0, k1, k2, k3, k4, cast):
    """:func:`_dots_4x4` with five weight rows: 20 sums, for output counts that five divide better (5, 9, 10)."""
    v0, v1, v2, v3 = rows[p], rows[p + 1], rows[p + 2], rows[p + 3]
    w0, w1, w2, w3, w4 = w[k0], w[k1], w[k2], w[k3], w[k4]
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = s20 = s21 = cast(0)
    s22 = s23 = s30 = s31 = s32 = s33 = s40 = s41 = s42 = s43 = cast(0)
    for c in range(rows.shape[1]):
        u0, u1, u2, u3 = cast(v0[c]), cast(v1[c]), cast(v2[c]), cast(v3[c])
        a0, a1, a2, a3, a4 = w0[c], w1[c], w2[c], w3[c], w4[c]
        s00 += a0 * u0
        s01 += a0 * u1
        s02 += a0 * u2
        s03 += a0 * u3
        s10 += a1 * u0
        s11 += a1 * u1
        s12 += a1 * u2
        s13 += a1 * u3
        s20 += a2 * u0
        s21 += a2 * u1
        s22 += a2 * u2
        s23 += a2 * u3
        s30 += a3 * u0
        s31 += a3 * u1
        s32 += a3 * u2
        s33 += a3 * u3
        s40 += a4 * u0
        s41 += a4 * u1
        s42 += a4 * u2
        s43 += a4 * u3
    return (s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33, s40, s41, s42, s43)


@njit(cache=True, nogil=True, inline="always")
def _block_outputs(n_out):
    """Outputs per block of :func:`_affine_dots`: four, or five where that leaves fewer unused sums (5, 9, 10, 13)."""
    return 5 if -(-n_out // 5) * 5 < -(-n_out // 4) * 4 else 4


@njit(cache=True, nogil=True, inline="always")
def _put(dst, sums, bias, k0, n_out, per, q, j, n):
    """Store a block's sums (``per`` outputs by four pixels, the first at tile pixel ``q``) for pixels j .. j + 3."""
    for i in range(4):
        if j <= q + i < min(j + 4, n):
            for r in range(min(per, n_out - k0)):
                dst[k0 + r, q + i] = bias[k0 + r] + sums[4 * r + i]


@njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
def _affine_dots(x, a0, dst, n, n_in, n_out, params, offset, stage):
    """``dst[k, j] = bias[k] + sum_c w[k, c] * x[a0 + j, c]`` for channels-last ``x``.

    With many channels and few outputs, transposing the tile into the scratch
    buffer costs more than the mixing: instead each output is a dot product
    along the pixel's contiguous channels; with many channels, four pixels by
    four (or five) outputs at a time (:func:`_dots_4x4`, :func:`_dots_4x5`).
    That reassociates the sum ("reassoc", never the no-NaN/no-Inf flags): it
    is the same for every tile and thread count, but may differ in the last
    bits from the channels-first order. Which form runs depends only on the
    channel counts.

    In blocks, the pixels are first copied, DOTS_STAGE at a time, into
    ``stage`` (a scratch buffer of at least ``(n + 16) * n_in`` values, in
    the sum's dtype), and the dot products read them from there: one
    sequential pass over the image, which the hardware prefetcher follows
    at full speed, then arithmetic on data in cache (reading the image in
    four-pixel windows directly left most of the memory latency exposed).
    Windows of four rows start at ``min(pixel, last)``: the last four pixels
    of the image are a window that may overlap pixels already done; an
    image of fewer than four pixels is padded with zeros, so every pixel goes
    through the same code.
    """
    cast = dst.dtype.type
    A = x.shape[0]
    rows = x.reshape((A, n_in))  # 2-D rows are contiguous for Numba
    if n_in < DOTS_BLOCK_MIN_IN or n_out < 4:
        # Few channels, or outputs that leave much of a 4 x 4 block idle: one
        # pixel at a time, each output's dot product on its own.
        for j in range(n):
            v = rows[a0 + j]
            for k in range(n_out):
                w = params[offset + k * n_in : offset + (k + 1) * n_in]
                acc = cast(0)
                for c in range(n_in):
                    acc += w[c] * cast(v[c])
                dst[k, j] = params[offset + n_out * n_in + k] + acc
        return
    per = _block_outputs(n_out)
    weights = params[offset : offset + n_out * n_in].reshape((n_out, n_in))
    bias = params[offset + n_out * n_in : offset + n_out * (n_in + 1)]
    flat = x.reshape(A * n_in)
    staged = stage.reshape(stage.size)
    last = max(A, 4) - 4  # the first row of the image's last window
    # Pixels per chunk: a multiple of four whose windows fit in the stage.
    chunk = max(4, min(DOTS_STAGE, staged.size // n_in - 4) // 4 * 4)
    j0 = 0
    while j0 < n:
        j1 = min(n, j0 + chunk)
        r0 = min(a0 + j0, last)  # rows r0 .. r1 - 1 hold the chunk's windows
        r1 = min(a0 + j0 + (j1 - 1 - j0) // 4 * 4, last) + 4
        real = min(r1, A) - r0
        # Slices, then a loop from 0: indexing with an offset inside the loop
        # becomes a gather.
        src, window = flat[r0 * n_in : (r0 + real) * n_in], staged[: (r1 - r0) * n_in]
        for i in range(src.size):
            window[i] = src[i]
        for i in range(src.size, window.size):
            window[i] = 0
        window = window.reshape((r1 - r0, n_in))
        for j in range(j0, j1, 4):
            p = min(a0 + j, last)
            for k0 in range(0, n_out, per):
                # Past the last output the block repeats it (not stored).
                k1, k2, k3 = min(k0 + 1, n_out - 1), min(k0 + 2, n_out - 1), min(k0 + 3, n_out - 1)
                if per == 5:
                    sums5 = _dots_4x5(window, p - r0, weights, k0, k1, k2, k3, min(k0 + 4, n_out - 1), cast)
                    _put(dst, sums5, bias, k0, n_out, 5, p - a0, j, n)
                else:
                    sums4 = _dots_4x4(window, p - r0, weights, k0, k1, k2, k3, cast)
                    _put(dst, sums4, bias, k0, n_out, 4, p - a0, j, n)
        j0 = j1


@njit(cache=True, nogil=True, inline="always")
def _sweep(row, n, code, p0, p1):
    for j in range(n):
        row[j] = _apply_op(code, row[j], p0, p1)


# fastmath=False said explicitly: a function without it is compiled with the
# flags of its caller (numba#7168), and the pixel kernel's mix uses FMA.
# NumPy's error model: a division by zero gives inf or NaN rather than
# raising, so that no check stands in the way of vectorising (vmath's log
# divides by a value in [1.7, 2.5]).
@njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def elementwise_rows(buf, n, channels, code, p0, p1):
    """Apply one elementwise step to the first ``n`` values of rows ``buf[:channels]``."""
    for c in range(channels):
        row = buf[c]
        # Each step gets a loop with the opcode a constant, so the dispatch
        # folds away and the loop vectorises (the transcendental ones too:
        # their math is vmath's). tanh stays a scalar call.
        if code == ew.RELU:
            _sweep(row, n, ew.RELU, p0, p1)
        elif code == ew.CLIP:
            _sweep(row, n, ew.CLIP, p0, p1)
        elif code == ew.LEAKY_RELU:
            _sweep(row, n, ew.LEAKY_RELU, p0, p1)
        elif code == ew.EXP:
            _sweep(row, n, ew.EXP, p0, p1)
        elif code == ew.LOG:
            _sweep(row, n, ew.LOG, p0, p1)
        elif code == ew.SRGB_ENCODE:
            _sweep(row, n, ew.SRGB_ENCODE, p0, p1)
        elif code == ew.SRGB_DECODE:
            _sweep(row, n, ew.SRGB_DECODE, p0, p1)
        elif code == ew.SIGMOID:
            _sweep(row, n, ew.SIGMOID, p0, p1)
        else:
            _sweep(row, n, code, p0, p1)


@njit(cache=True, nogil=True)
def _run_steps(buf, spare, n, table, params, start):
    """Run steps ``start:`` on ``buf`` (1, width, pitch); return the buffer holding the result."""
    for s in range(start, table.shape[0]):
        code, n_in, n_out, offset = table[s, 0], table[s, 1], table[s, 2], table[s, 3]
        if code == ew.AFFINE:
            _affine(buf, 0, 0, spare[0], n, n_in, n_out, params, offset)
            buf, spare = spare, buf
        elif code == ew.UNMIX:
            unmix_rows(buf, spare[0], n, n_in, n_out, params, offset)
            buf, spare = spare, buf
        else:
            elementwise_rows(buf[0], n, n_in, code, params[offset], params[offset + 1])
    return buf


@njit(cache=True, nogil=True, inline="always")
def to_out(v, is_int, lo, hi, fill):
    """One result as the output stores it: rounded half to even and saturated if integer."""
    if is_int:
        return fill if v != v else min(max(np.rint(v), lo), hi)
    return v


@njit(cache=True, nogil=True)
def _store(buf, out, a0, b0, n, channels_last, bad, n_bad, is_int, lo, hi, fill):
    """Write ``buf[k, j]`` to the tile's place in ``out`` (rounded and saturated if integer)."""
    K = out.shape[1]
    if n_bad > 0:
        for k in range(K):
            for j in range(n):
                if bad[j]:
                    buf[k, j] = np.nan
    if channels_last:
        # Pixel by pixel, so the output is written in one sequential pass
        # (one pass per channel, at a stride, would write each line K times).
        rows = out.reshape((out.shape[0], K))
        for j in range(n):
            dst = rows[a0 + j]
            for k in range(K):
                dst[k] = to_out(buf[k, j], is_int, lo, hi, fill)
        return
    for k in range(K):
        row = buf[k]
        dst = out[a0, k, b0 : b0 + n]
        for j in range(n):
            dst[j] = to_out(row[j], is_int, lo, hi, fill)


# The output dtypes run_program writes, by code. The output reaches the kernel
# as raw bytes and is viewed as its dtype here, at the store: one compiled
# kernel per input dtype then serves every output dtype (each would otherwise
# recompile the whole kernel, ~10 s apiece), and only this small store is
# written once per output dtype.
OUT_DTYPES = ("uint8", "uint16", "int16", "int32", "float32", "float64")


@njit(cache=True, nogil=True)
def _store_as(buf, out_bytes, out_code, A, K, B, a0, b0, n, channels_last, bad, n_bad, is_int, lo, hi, fill):
    """:func:`_store` into ``out_bytes`` viewed as ``OUT_DTYPES[out_code]`` of shape (A, K, B)."""
    shape = (A, K, B)
    if out_code == 0:
        _store(buf, out_bytes.view(np.uint8).reshape(shape), a0, b0, n, channels_last, bad, n_bad, is_int, lo, hi, fill)
    elif out_code == 1:
        _store(buf, out_bytes.view(np.uint16).reshape(shape), a0, b0, n, channels_last, bad, n_bad, is_int, lo, hi,
               fill)
    elif out_code == 2:
        _store(buf, out_bytes.view(np.int16).reshape(shape), a0, b0, n, channels_last, bad, n_bad, is_int, lo, hi, fill)
    elif out_code == 3:
        _store(buf, out_bytes.view(np.int32).reshape(shape), a0, b0, n, channels_last, bad, n_bad, is_int, lo, hi, fill)
    elif out_code == 4:
        _store(buf, out_bytes.view(np.float32).reshape(shape), a0, b0, n, channels_last, bad, n_bad, is_int, lo, hi,
               fill)
    else:
        _store(buf, out_bytes.view(np.float64).reshape(shape), a0, b0, n, channels_last, bad, n_bad, is_int, lo, hi,
               fill)


@njit(cache=True, nogil=True)
def finish_tile(buf, spare, n, table, params, start, out_bytes, out_code, A, K, B, a0, b0, channels_last, bad, n_bad,
                is_int, lo, hi, fill):
    """Run steps ``start:`` on a tile's scratch rows ``buf``, then store the result (for :func:`run_program`).

    Its code depends on the accumulation dtype alone, not on the image's:
    :func:`run_program` calls it through its address (:func:`finish_address`)
    rather than compiling it again into each input type's kernel.
    """
    result = _run_steps(buf, spare, n, table, params, start)
    _store_as(result[0], out_bytes, out_code, A, K, B, a0, b0, n, channels_last, bad, n_bad, is_int, lo, hi, fill)


def finish_address(params: np.ndarray, table: np.ndarray, out_bytes: np.ndarray) -> int:
    """The address of :func:`finish_tile` compiled for the arguments :func:`run_program` passes it."""
    # Kept by everything Numba types an array by (building its types costs ~80 us a call).
    key = tuple((a.dtype, a.ndim, a.flags.c_contiguous, a.flags.f_contiguous, a.flags.writeable, a.flags.aligned)
                for a in (params, table, out_bytes))
    found = _FINISH.get(key)
    if found is None:
        scratch = types.Array(typeof(params).dtype, 3, "C")
        i8, b1, f8 = types.int64, types.boolean, types.float64
        argtypes = (scratch, scratch, i8, typeof(table), typeof(params), i8, typeof(out_bytes), i8, i8, i8, i8, i8,
                    i8, b1, types.Array(b1, 1, "C"), i8, b1, f8, f8, f8)
        found = _FINISH[key] = compiled_address(finish_tile, argtypes)
    return found


_FINISH: dict = {}  # finish_address's, by the arguments' dtypes and flags


@njit(parallel=True, cache=True, nogil=True)
def run_program(
    x, out_bytes, out_code, table, params, start, width, tile,
    lut, lut_offset, use_lut, nodata, use_nodata, check_nan, is_int, lo, hi, fill, workers, finish,
):
    """Apply the compiled program to every pixel of ``x`` (A, C, B) into ``out`` (A, K, B).

    ``out`` is C-contiguous and given as its bytes, ``out_bytes`` (1-D
    uint8), with ``out_code`` its dtype's index in ``OUT_DTYPES``; K is the
    last step's output count.
    ``params`` has the accumulation dtype; scratch buffers take it too.
    ``start`` is the first step to run (the steps before it were folded into
    ``lut`` when ``use_lut``). ``finish`` is :func:`finish_address`'s: the
    steps after the first and the store run there. ``workers`` (one per
    thread) claim runs of tiles (:func:`claim`).
    """
    A, _, B = x.shape
    n_out = table[table.shape[0] - 1, 2]
    channels_last = B == 1
    if channels_last:
        per_row = 1
        n_tiles = (A + tile - 1) // tile
    else:
        per_row = (B + tile - 1) // tile
        n_tiles = A * per_row
    # A first affine step reads the image directly when it can (no scratch
    # copy, and the reads overlap the arithmetic), in one of three ways:
    # - direct: channels first, each channel's pixels are a contiguous row;
    # - dots: channels last with many inputs and few outputs, as dot products
    #   along each pixel's channels;
    # - strided: channels last with few inputs and one output (RGB to gray
    #   with nodata; RGB-like programs otherwise take kernels/cpu_pixels.py),
    #   each channel a strided row of the transposed view, whose lines stay in
    #   L1 across channels (with more outputs, transposing into scratch once
    #   is cheaper than re-reading the strided rows for each output).
    # (An UNMIX step first takes none of these: it reads the scratch rows.)
    first = start == 0 and table[0, 0] == ew.AFFINE
    direct = first and not channels_last
    dots = first and channels_last and table[0, 1] >= DOTS_MIN_IN and table[0, 2] <= DOTS_MAX_OUT
    strided = first and channels_last and table[0, 1] < DOTS_MIN_IN and table[0, 2] == 1
    xt = x.transpose((2, 1, 0))  # (1, C, A): channel rows over the pixels
    counter = np.zeros(1, dtype=np.int64)
    # Each of ``workers`` claims runs of tiles (a slow thread takes fewer), with scratch buffers of
    # its own: allocating them per tile costs an mmap and page faults each time once they pass
    # malloc's threshold.
    for _ in prange(workers):
        # Rows padded by 16 values: with a power-of-two pitch the rows of a
        # channels-last transpose would all map to the same few L1 sets. The
        # pitch is a multiple of 16 values and the buffer starts on a cache
        # line, so every row does (Numba's own arrays start 32 bytes off one).
        pitch = (tile + 31) // 16 * 16
        size, pad = width * pitch, 64 // params.itemsize
        buf = aligned(np.empty(size + pad, dtype=params.dtype), size).reshape((1, width, pitch))
        spare = aligned(np.empty(size + pad, dtype=params.dtype), size).reshape((1, width, pitch))
        bad = np.zeros(tile, dtype=np.bool_)
        first, last = claim(counter, n_tiles, workers)
        while first < last:
            for t in range(first, last):
                if channels_last:
                    a0, b0 = t * tile, 0
                    n = min(tile, A - a0)
                else:
                    a0, b0 = t // per_row, (t % per_row) * tile
                    n = min(tile, B - b0)
                if not (direct or dots or strided):
                    _load(x, a0, b0, n, channels_last, buf[0], lut, lut_offset, use_lut)
                n_bad = 0
                if check_nan or use_nodata:  # check_nan comes only without affine steps: never direct
                    n_bad = _mark_bad(x, a0, b0, n, channels_last, buf[0], bad, nodata, use_nodata, check_nan)
                src, other, step = buf, spare, start
                if dots:
                    _affine_dots(x, a0, spare[0], n, table[0, 1], table[0, 2], params, table[0, 3], buf[0])
                    src, other, step = spare, buf, 1
                elif strided:
                    _affine(xt, 0, a0, spare[0], n, table[0, 1], table[0, 2], params, table[0, 3])
                    src, other, step = spare, buf, 1
                elif direct:
                    _affine(x, a0, b0, spare[0], n, table[0, 1], table[0, 2], params, table[0, 3])
                    src, other, step = spare, buf, 1
                # The types finish_address compiled it for.
                call_compiled(finish_tile, finish, (
                    src, other, np.int64(n), table, params, np.int64(step), out_bytes, np.int64(out_code), np.int64(A),
                    np.int64(n_out), np.int64(B), np.int64(a0), np.int64(b0), channels_last, bad, np.int64(n_bad),
                    is_int, np.float64(lo), np.float64(hi), np.float64(fill),
                ))
            first, last = claim(counter, n_tiles, workers)
