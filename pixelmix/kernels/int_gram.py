"""The Gram product of 16-bit integer rows, exact, in 16-bit multiply-adds.

The moments of integer data (:mod:`pixelmix.learn.stats`) need
``sum_p s[a, p] * s[b, p]`` over the pixels ``p`` of a tile of shifted
values ``s`` (the value minus an integer near the mean). Where those fit in
int16, the products are exact in int32 and the sums exact in int64. x86's
``pmaddwd`` (``vpdpwssd`` with AVX512-VNNI, which also adds) takes 32 int16
pairs per instruction, four times the float64 lanes of an FMA; float64 needs
one FMA per product, this two multiply-adds, because one factor is split in
bytes to keep the int32 sums from overflowing:
``s_b = 256 h_b + l_b`` with ``h_b = s_b >> 8`` in [-128, 127] and
``l_b = s_b & 255`` in [0, 255]. A pair of products ``s_a h_b`` is at most
2^23 in magnitude, one of ``s_a l_b`` under 2^24: an int32 lane takes
``MAX_WIDTH / 32`` steps of either without overflow. On an AMD EPYC (Zen 4,
AVX-512 on 256-bit units) the product ran at 52 G entries x pixels a second
on one core, against 25 G for the float64 kernel.

``gram_tile_i16(tile, n, gram, reach)``
    ``gram[a, b] += sum_{p < n} tile[a, p] tile[b, p]`` (int64 ``gram``) for
    ``b >= a - a % 4``: every entry on and above the diagonal, and a few
    below it in the blocks along it (which the caller ignores). ``tile`` is
    int16, C-contiguous, with a multiple of 4 rows and rows of
    ``MAX_WIDTH`` or fewer values; ``n`` is a multiple of ``LANES``. Where
    every value lies within ``reach`` of 0 and ``reach`` is small enough,
    nothing is split: one multiply-add per pair of values, in pieces of
    :func:`whole_width` columns whose int32 sums cannot overflow, each then
    added to int64 sums. 12-bit sensor data minus its mean (``NARROW``)
    takes pieces of ``MAX_WIDTH``, at 95 G a second on the EPYC above;
    values within 5792 of 0, pieces of 1024 (90 G); within 11585, of 256 (60
    G). Wider values take the split product.
``whole_width(reach)``
    The columns of those pieces, 0 below ``MIN_STEPS`` steps a piece, where
    the split product is faster.
``flush_i16(x3, tile, n, gram, reach)``
    :func:`gram_tile_i16` of a tile's first ``n`` columns (any ``n``: the
    columns up to the next multiple of ``LANES`` are zeroed first). For
    data of other dtypes (``x3``) it does nothing, and compiles no product.
``fill_i16(x3, a, b0, b1, n, nodata, use_nodata, pair, shift, tile, at, cand, partner, bad)``
    The ``n`` selected pixels of a run of channels-first integer data (8 or
    16 bits) as int16 columns of ``tile`` from ``at``, minus the integer
    ``shift``, as ``_fill_py`` of :mod:`pixelmix.learn.stats` writes float64
    ones: the run's pixels ``b0 .. b1`` of row ``a`` of ``x3`` (A, C, B),
    or those of ``cand`` (with their ``partner`` subtracted for a noise
    ``pair``); a row of ones below the channels; a pixel with ``nodata``
    a column of zeros. Returns how many such pixels there were and the
    largest magnitude written (the tile's ``reach``), or -1 and 0 if a value did
    not fit int16 (the tile's columns from ``at`` are then undefined). For
    other dtypes it returns -1 and 0 and reads nothing.
``fast_here()``
    Whether the CPU Numba compiles for has AVX512-BW, where the product
    takes ``pmaddwd`` on 32 lanes directly. Elsewhere it is written as plain
    LLVM vector arithmetic that any target compiles (and that LLVM lowers to
    slower code than the float64 kernel): exact, but not worth taking.

(Numba's cache checks only the calling kernel's own file: after editing
this one, clear the ``__pycache__`` ``.nbi``/``.nbc`` files.)
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.registry import cpu_target
from numba.extending import intrinsic, overload

from .intrinsics import contiguous_row

__all__ = ["LANES", "MAX_WIDTH", "NARROW", "MIN_STEPS", "gram_tile_i16", "whole_width", "flush_i16", "fill_i16",
           "fast_here"]

# int16 values per step; the pixels of a tile per Gram product at most (see the module's bound).
LANES = 32
MAX_WIDTH = 2048
# Tiles whose values all lie within this of 0 take one product per pair of values, not two, in one piece:
# the int32 lanes then hold at most 2 * 4095^2 * MAX_WIDTH / LANES < 2^31.
NARROW = 4095
# Wider values take one product per pair in narrower pieces (each summed into int64) while a piece is this many
# steps or more; below it the split product is faster (4 steps: 47 G against 51 on the EPYC of the module).
MIN_STEPS = 8


def _has_avx512bw(codegen) -> bool:
    # Numba's target features (the host's, or NUMBA_CPU_NAME / NUMBA_CPU_FEATURES): private, guarded by
    # tests/test_int_gram.py, which checks the product either way.
    return "+avx512bw" in codegen._tm_features.split(",")


def fast_here() -> bool:
    """Whether the int16 Gram product takes ``pmaddwd`` on 32 lanes on the CPU Numba compiles for."""
    return _has_avx512bw(cpu_target.target_context.codegen())


def _block_intrinsic(split: bool):
    """The intrinsic ``block(tile, a0, b0, n, width, gram)``: ``gram[a0 + i, b0 + j] += sum_{p < n} tile[a0 + i, p]
    * tile[b0 + j, p]`` for i < 4 and j < 2 with ``split`` (the second factor in bytes, two products each), j < 4
    without (one product each). The int32 lanes sum pieces of ``width`` columns (``n`` and ``width`` multiples of
    ``LANES``), each piece's sums then added to int64 ones."""
    n_b = 2 if split else 4

    @intrinsic
    def block(typingctx, tile, a0, b0, n, width, gram):
        if not (isinstance(tile, types.Array) and tile.dtype == types.int16 and tile.ndim == 2
                and tile.layout == "C" and isinstance(gram, types.Array) and gram.dtype == types.int64
                and gram.ndim == 2):
            return None

        def codegen(context, builder, signature, args):
            t = context.make_array(signature.args[0])(context, builder, args[0])
            g = context.make_array(signature.args[5])(context, builder, args[5])
            a0, b0, n, width = args[1], args[2], args[3], args[4]
            i16, i32, i64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)
            v16, v32, v64 = ir.VectorType(i16, LANES), ir.VectorType(i32, LANES // 2), ir.VectorType(i64, LANES // 2)
            pitch = cgutils.unpack_tuple(builder, t.shape, 2)[1]
            lanes = ir.Constant(i64, LANES)

            def row(first, i):
                return builder.gep(t.data, [builder.mul(builder.add(first, ir.Constant(i64, i)), pitch)])

            a_rows = [row(a0, i) for i in range(4)]
            b_rows = [row(b0, j) for j in range(n_b)]
            madd = _madd(builder, v16, v32, _has_avx512bw(context.codegen()))
            # Allocas in the entry block: LLVM keeps the int32 sums in registers across the inner loop.
            sums = [cgutils.alloca_once(builder, v32) for _ in range(16)]
            wide = [cgutils.alloca_once_value(builder, ir.Constant(i64, 0)) for _ in range(16)]
            eight, low = ir.Constant(v16, [8] * LANES), ir.Constant(v16, [255] * LANES)
            total = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [v64]),
                                                   "llvm.vector.reduce.add.v16i64")
            n_steps, per_piece = builder.sdiv(n, lanes), builder.sdiv(width, lanes)
            n_pieces = builder.sdiv(builder.sub(builder.add(n_steps, per_piece), ir.Constant(i64, 1)), per_piece)
            with cgutils.for_range(builder, n_pieces) as piece:
                first = builder.mul(piece.index, per_piece)
                last = builder.add(first, per_piece)
                last = builder.select(builder.icmp_signed("<", last, n_steps), last, n_steps)
                for k in range(16):
                    builder.store(ir.Constant(v32, None), sums[k])
                with cgutils.for_range(builder, builder.sub(last, first)) as loop:
                    at = builder.mul(builder.add(first, loop.index), lanes)

                    def load(p):
                        return builder.load(builder.bitcast(builder.gep(p, [at]), v16.as_pointer()), align=2)

                    us = [load(p) for p in a_rows]
                    ws = [load(p) for p in b_rows]
                    parts = [(builder.ashr(w, eight), builder.and_(w, low)) if split else (w,) for w in ws]
                    k = 0
                    for u in us:
                        for part in (x for w in parts for x in w):
                            builder.store(builder.add(builder.load(sums[k]), madd(u, part)), sums[k])
                            k += 1
                for k in range(16):
                    piece_sum = builder.call(total, [builder.sext(builder.load(sums[k]), v64)])
                    builder.store(builder.add(builder.load(wide[k]), piece_sum), wide[k])

            def reduced(k):
                return builder.load(wide[k])

            shape = cgutils.unpack_tuple(builder, g.shape, 2)
            strides = cgutils.unpack_tuple(builder, g.strides, 2)
            for i in range(4):
                for j in range(n_b):
                    if split:
                        k = 4 * i + 2 * j
                        value = builder.add(builder.shl(reduced(k), ir.Constant(i64, 8)), reduced(k + 1))
                    else:
                        value = reduced(4 * i + j)
                    at = [builder.add(a0, ir.Constant(i64, i)), builder.add(b0, ir.Constant(i64, j))]
                    ptr = cgutils.get_item_pointer2(context, builder, g.data, shape, strides,
                                                    signature.args[5].layout, at)
                    builder.store(builder.add(builder.load(ptr), value), ptr)
            return context.get_dummy_value()

        return types.void(tile, types.int64, types.int64, types.int64, types.int64, gram), codegen

    return block


def _madd(builder, v16, v32, avx512bw: bool):
    """``madd(u, w)``: the sums of the products of adjacent int16 lanes of ``u`` and ``w``, as int32 lanes."""
    if avx512bw:
        pmaddwd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v32, [v16, v16]),
                                                 "llvm.x86.avx512.pmaddw.d.512")
        return lambda u, w: builder.call(pmaddwd, [u, w])
    even = ir.Constant(v32, list(range(0, LANES, 2)))
    odd = ir.Constant(v32, list(range(1, LANES, 2)))

    def half(x, lanes):
        return builder.sext(builder.shuffle_vector(x, x, lanes), v32)

    return lambda u, w: builder.add(builder.mul(half(u, even), half(w, even)), builder.mul(half(u, odd), half(w, odd)))


_block_split = _block_intrinsic(split=True)
_block_whole = _block_intrinsic(split=False)


@njit(cache=True, nogil=True)
def whole_width(reach):
    """The most columns (a multiple of ``LANES``, at most ``MAX_WIDTH``) whose one-product-per-pair sums of values
    within ``reach`` of 0 fit the int32 lanes; 0 where fewer than ``MIN_STEPS`` steps would."""
    if reach == 0:
        return MAX_WIDTH
    steps = (2**31 - 1) // (2 * reach * reach)  # each step adds two products to a lane
    if steps < MIN_STEPS:
        return 0
    return min(steps * LANES, MAX_WIDTH)


@njit(cache=True, nogil=True)
def gram_tile_i16(tile, n, gram, reach):
    """``gram[a, b] += sum_{p < n} tile[a, p] tile[b, p]`` for ``b >= a - a % 4`` (see the module)."""
    rows = tile.shape[0]
    width = whole_width(reach)
    if width == 0:
        for a0 in range(0, rows, 4):
            for b0 in range(a0, rows, 2):
                _block_split(tile, np.int64(a0), np.int64(b0), np.int64(n), np.int64(MAX_WIDTH), gram)
        return
    for a0 in range(0, rows, 4):
        for b0 in range(a0, rows, 4):
            _block_whole(tile, np.int64(a0), np.int64(b0), np.int64(n), np.int64(width), gram)


def fill_i16(x3, a, b0, b1, n, nodata, use_nodata, pair, shift, tile, at, cand, partner, bad):
    """The run's selected pixels as int16 columns of ``tile`` (see the module); -1 if a value does not fit."""
    raise NotImplementedError("fill_i16 runs in compiled code only")


def _takes(x3) -> bool:
    """Whether values of ``x3``'s Numba type fill int16 tiles: 8- and 16-bit integers."""
    return isinstance(x3.dtype, types.Integer) and x3.dtype.bitwidth <= 16


@overload(fill_i16)
def _fill_i16(x3, a, b0, b1, n, nodata, use_nodata, pair, shift, tile, at, cand, partner, bad):
    if not _takes(x3):
        def nothing(x3, a, b0, b1, n, nodata, use_nodata, pair, shift, tile, at, cand, partner, bad):
            return np.int64(-1), np.int64(0)

        return nothing

    def fill(x3, a, b0, b1, n, nodata, use_nodata, pair, shift, tile, at, cand, partner, bad):
        A, C, B = x3.shape
        plain = n == b1 - b0 and pair == 0  # every pixel of the run, in order
        base = a * B
        reach = np.int32(0)  # the largest magnitude written
        for j in range(n):
            bad[j] = False
        for c in range(C):
            src = contiguous_row(x3, a, c)
            row = tile[c, at:at + n]
            s = np.int32(shift[c])
            # int32 arithmetic, and the range of the values read rather than of the differences written: the
            # loop then vectorises (0.25 ns a value, not 1).
            if plain:
                run = src[b0:b1]
                low = high = run[0]
                for j in range(n):
                    v = run[j]
                    low, high = min(low, v), max(high, v)
                    row[j] = np.int16(np.int32(v) - s)
                    if use_nodata:
                        bad[j] |= v == nodata
                d_low, d_high = np.int32(low) - s, np.int32(high) - s
                if d_low < -32768 or d_high > 32767:
                    return np.int64(-1), np.int64(0)
                reach = max(reach, -d_low, d_high)
                continue
            d_low = d_high = np.int32(0)
            for j in range(n):
                v = src[cand[j] - base]
                d = np.int32(v) - s
                if use_nodata:
                    bad[j] |= v == nodata
                if pair > 0:
                    w = src[partner[j] - base]
                    if use_nodata:
                        bad[j] |= w == nodata
                    d -= np.int32(w)
                d_low, d_high = min(d_low, d), max(d_high, d)
                row[j] = np.int16(d)
            if d_low < -32768 or d_high > 32767:
                return np.int64(-1), np.int64(0)
            reach = max(reach, -d_low, d_high)
        ones = tile[C, at:at + n]
        for j in range(n):
            ones[j] = 1
        n_bad = 0
        for j in range(n):
            if bad[j]:
                n_bad += 1
                for c in range(C + 1):
                    tile[c, at + j] = 0
        return np.int64(n_bad), np.int64(reach)

    return fill


def flush_i16(x3, tile, n, gram, reach):
    """:func:`gram_tile_i16` of the first ``n`` columns of ``tile`` (see the module)."""
    raise NotImplementedError("flush_i16 runs in compiled code only")


@overload(flush_i16)
def _flush_i16(x3, tile, n, gram, reach):
    if not _takes(x3):
        def nothing(x3, tile, n, gram, reach):  # float data never fills an int16 tile: no product to compile
            return None

        return nothing

    def flush(x3, tile, n, gram, reach):
        end = (n + LANES - 1) // LANES * LANES
        for r in range(tile.shape[0]):
            for j in range(n, end):
                tile[r, j] = 0
        gram_tile_i16(tile, end, gram, reach)

    return flush
