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
four outputs at a time), which is faster than transposing the tile; that sum
is reassociated, the same way for every tile and thread count. (With few
channels last and one output, the first step reads the channels as strided
rows instead, in channel order.) The affine step itself updates four output
rows from four input rows at a time, so each input value is converted once
per four outputs; where the image is read straight (channels first) the
kernel prefetches the next pixels of the rows it reads (:func:`_prefetch`):
a tile reads every channel's row at once, more streams than the hardware
prefetcher follows.

An UNMIX step (constrained unmixing) runs on the scratch rows like a later
affine step, never straight from the image:
:func:`pixelmix.kernels.unmix.unmix_rows`.

RGB-like programs on channels-last data have a kernel of their own, with no
scratch buffer at all: :mod:`pixelmix.kernels.cpu_pixels`.
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import elementwise as ew
from .unmix import unmix_rows

_apply_op = njit(inline="always", cache=True)(ew.apply_op)


@intrinsic
def _prefetch(typingctx, array, index):
    """Ask for the cache line of ``array[index]`` ahead of use: a hint, it never faults.

    ``index`` is an integer for a 1-D array, else a tuple of integers. The
    hardware prefetcher follows a few sequential streams; the kernels read
    more at once (a channels-first tile reads every channel's row), so they
    name the lines they will want.
    """
    if not isinstance(array, types.Array):
        return None
    if isinstance(index, types.Integer) and array.ndim == 1:
        n_index = 1
    elif isinstance(index, types.UniTuple) and isinstance(index.dtype, types.Integer) and index.count == array.ndim:
        n_index = array.ndim
    else:
        return None

    def codegen(context, builder, signature, args):
        aryty, idxty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        if n_index == 1 and isinstance(idxty, types.Integer):
            indices = [args[1]]
        else:
            indices = cgutils.unpack_tuple(builder, args[1], n_index)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, indices, wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0i8"
        )
        # read, keep in every cache level, data
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


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


# Pixels per sweep of the affine step: its output rows stay in L1 across all
# input channels. Tiles can be longer (long reads suit the prefetcher).
SWEEP = 1024


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
    line = max(1, 64 // src.itemsize)  # values per cache line
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
            # The same rows' next pixels, for the next sweep (or tile).
            for i in range(b + m, min(b + m + SWEEP, src.shape[2]), line):
                _prefetch(src, (a0, c, i))
                _prefetch(src, (a0, c + 1, i))
                _prefetch(src, (a0, c + 2, i))
                _prefetch(src, (a0, c + 3, i))
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
# Pixels ahead of the one being mixed whose rows are prefetched.
DOTS_AHEAD = 8
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
def _affine_dots(x, a0, dst, n, n_in, n_out, params, offset):
    """``dst[k, j] = bias[k] + sum_c w[k, c] * x[a0 + j, c]`` for channels-last ``x``.

    With many channels and few outputs, transposing the tile into the scratch
    buffer costs more than the mixing: instead each output is a dot product
    along the pixel's contiguous channels; with many channels, four pixels by
    four outputs at a time (:func:`_dots_4x4`). That reassociates the sum
    ("reassoc", never the no-NaN/no-Inf flags): it is the same for every tile
    and thread count, but may differ in the last bits from the channels-first
    order. Which of the two forms runs depends only on the channel counts.
    In blocks, the last four pixels of a tile are a window that ends at the
    tile's end (it may overlap pixels already done, or the next tile); an
    image of fewer than four pixels is padded, so every pixel goes through
    the same code.
    """
    cast = dst.dtype.type
    A = x.shape[0]
    rows = x.reshape((A, n_in))  # 2-D rows are contiguous for Numba
    if n_in < DOTS_BLOCK_MIN_IN or n_out < 4 or n_out == 5:
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
    first = 0
    if A < 4:
        rows = np.zeros((4, n_in), dtype=x.dtype)
        rows[:A] = x.reshape((A, n_in))
        A, first = 4, a0
    weights = params[offset : offset + n_out * n_in].reshape((n_out, n_in))
    bias = params[offset + n_out * n_in : offset + n_out * (n_in + 1)]
    flat = rows.reshape(rows.size)
    line = max(1, 64 // rows.itemsize)
    j0 = 0
    while j0 < n:
        p = min(a0 - first + j0, A - 4)  # the window's first row
        # The window DOTS_AHEAD pixels on is asked for now: the hardware
        # prefetcher alone leaves most of the memory latency exposed here.
        ahead = min(p + DOTS_AHEAD, A - 4) * n_in
        for i in range(ahead, ahead + 4 * n_in, line):
            _prefetch(flat, i)
        for k0 in range(0, n_out, 4):
            # Past the last output the window repeats it (not stored).
            k1, k2, k3 = min(k0 + 1, n_out - 1), min(k0 + 2, n_out - 1), min(k0 + 3, n_out - 1)
            sums = _dots_4x4(rows, p, weights, k0, k1, k2, k3, cast)
            for i in range(4):
                j = p + first + i - a0
                if j0 <= j < n:
                    for r in range(min(4, n_out - k0)):
                        dst[k0 + r, j] = bias[k0 + r] + sums[4 * r + i]
        j0 = p + first + 4 - a0


@njit(cache=True, nogil=True, inline="always")
def _sweep(row, n, code, p0, p1):
    for j in range(n):
        row[j] = _apply_op(code, row[j], p0, p1)


# fastmath=False said explicitly: a function without it is compiled with the
# flags of its caller (numba#7168), and the pixel kernel's mix uses FMA.
@njit(cache=True, nogil=True, fastmath=False)
def elementwise_rows(buf, n, channels, code, p0, p1):
    """Apply one elementwise step to the first ``n`` values of rows ``buf[:channels]``."""
    for c in range(channels):
        row = buf[c]
        # The cheap steps get a loop with the opcode a constant, so the
        # dispatch folds away and the loop vectorises; the transcendental
        # ones are dominated by their math calls.
        if code == ew.RELU:
            _sweep(row, n, ew.RELU, p0, p1)
        elif code == ew.CLIP:
            _sweep(row, n, ew.CLIP, p0, p1)
        elif code == ew.LEAKY_RELU:
            _sweep(row, n, ew.LEAKY_RELU, p0, p1)
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


@njit(parallel=True, cache=True, nogil=True)
def run_program(
    x, out_bytes, out_code, table, params, start, width, tile,
    lut, lut_offset, use_lut, nodata, use_nodata, check_nan, is_int, lo, hi, fill, groups,
):
    """Apply the compiled program to every pixel of ``x`` (A, C, B) into ``out`` (A, K, B).

    ``out`` is C-contiguous and given as its bytes, ``out_bytes`` (1-D
    uint8), with ``out_code`` its dtype's index in ``OUT_DTYPES``; K is the
    last step's output count.
    ``params`` has the accumulation dtype; scratch buffers take it too.
    ``start`` is the first step to run (the steps before it were folded into
    ``lut`` when ``use_lut``).
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
    # Tiles are dealt out in a few contiguous groups per thread, so scratch
    # buffers are allocated once per group: allocating them per tile costs
    # an mmap and page faults each time once they pass malloc's threshold.
    n_groups = min(n_tiles, groups)
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
    for g in prange(n_groups):
        # Rows padded by 16 values: with a power-of-two pitch the rows of a
        # channels-last transpose would all map to the same few L1 sets.
        buf = np.empty((1, width, tile + 16), dtype=params.dtype)
        spare = np.empty((1, width, tile + 16), dtype=params.dtype)
        bad = np.zeros(tile, dtype=np.bool_)
        for t in range(g * n_tiles // n_groups, (g + 1) * n_tiles // n_groups):
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
            if dots:
                _affine_dots(x, a0, spare[0], n, table[0, 1], table[0, 2], params, table[0, 3])
                result = _run_steps(spare, buf, n, table, params, 1)
            elif strided:
                _affine(xt, 0, a0, spare[0], n, table[0, 1], table[0, 2], params, table[0, 3])
                result = _run_steps(spare, buf, n, table, params, 1)
            elif direct:
                _affine(x, a0, b0, spare[0], n, table[0, 1], table[0, 2], params, table[0, 3])
                result = _run_steps(spare, buf, n, table, params, 1)
            else:
                result = _run_steps(buf, spare, n, table, params, start)
            _store_as(result[0], out_bytes, out_code, A, n_out, B, a0, b0, n, channels_last, bad, n_bad,
                      is_int, lo, hi, fill)
