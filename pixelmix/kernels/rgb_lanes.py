"""Sixteen RGB pixels as LLVM vectors: the body of the rounded integer-output kernel.

:func:`mix16` loads the 48 interleaved values of sixteen 3-channel pixels,
mixes them into one or three outputs in float32, rounds, saturates and
stores the integers interleaved, and returns a 16-bit mask of the pixels whose
float32 sum lay too near a half-integer to be trusted (the driver,
:mod:`pixelmix.kernels.cpu_pixels`, recomputes those in float64).

Numba's own loop over the same arithmetic spends most of its instructions
reshuffling bytes: it deinterleaves through 128-bit pieces, widens each
channel in two steps and, for three outputs, interleaves the results back
through byte extracts. Here each step is one shuffle LLVM lowers to a single
instruction where the CPU has one: for 8-bit input a 64-byte load and one
byte permute per channel that also zero-extends into 32-bit lanes (vpermb
with AVX-512 VBMI), and for 8-bit output two permutes that gather the low
bytes of the three outputs' lanes into place. On an AMD EPYC (Zen 4, two
threads, 4096 x 4096 images) this took uint8 gray from 0.21 to 0.13 ns a
pixel, uint8 YCbCr from 0.40 to 0.35, and YCbCr to uint16 from 0.58 to 0.34.
The IR is generic: on a CPU without those instructions LLVM picks others,
and the arithmetic is the same IEEE float32 arithmetic either way (compiled
for AVX2 only, with ``NUMBA_CPU_NAME=haswell`` and the AVX-512 features
turned off in ``NUMBA_CPU_FEATURES``, the exactness tests pass and the pass
runs level with the loops it replaced, or faster for 16-bit data).

The arithmetic is that of the float32 pass documented in
:mod:`pixelmix.kernels.cpu_pixels`: bias first, then ``w[k, c] * x[c]``
for c = 0, 1, 2 (fused where the CPU fuses), ``rint``, the test
``|a - rint(a)| >= lim``, and saturation to the output dtype's range.

The byte shuffles take a value to be the low byte of its 32-bit lane, and
the mask's bit j is pixel j: both assume a little-endian target, as every
target Numba compiles for is.

(Numba's cache checks only the calling kernel's own file: after editing
this one, clear the ``__pycache__`` ``.nbi``/``.nbc`` files.)
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["LANES", "WIDE_READ", "mix16"]

# Pixels per call.
LANES = 16
# Values read from 3 * p on for 8-bit input: one 64-byte load covers the 48
# values of 16 pixels; the driver calls only where 3 * p + WIDE_READ fits.
WIDE_READ = 64
_INTEGERS = (types.uint8, types.uint16, types.int16)


def _at(builder, data, index, vtype: ir.VectorType):
    """A pointer to a vector of ``vtype`` from element ``index`` of ``data``."""
    return builder.bitcast(builder.gep(data, [index]), vtype.as_pointer())


def _vector_fn(builder, name: str, vtype: ir.VectorType, n_args: int):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(vtype, [vtype] * n_args), name)


def _channels(context, builder, src, base, dtype):
    """The three channels of 16 pixels from element ``base`` of ``src``, as float32 vectors."""
    i32, f32x16 = ir.IntType(32), ir.VectorType(ir.FloatType(), LANES)
    elem = context.get_data_type(dtype)
    if dtype.bitwidth == 8:
        # One byte permute per channel, with zeros from the second operand into
        # bytes 1-3 of each 32-bit lane: the channel, deinterleaved and widened.
        v = builder.load(_at(builder, src, base, ir.VectorType(elem, WIDE_READ)), align=1)
        zero = ir.Constant(ir.VectorType(elem, WIDE_READ), None)
        out = []
        for c in range(3):
            lanes = []
            for j in range(LANES):
                lanes += [c + 3 * j, WIDE_READ, WIDE_READ, WIDE_READ]
            wide = builder.shuffle_vector(v, zero, ir.Constant(ir.VectorType(i32, 4 * LANES), lanes))
            out.append(builder.sitofp(builder.bitcast(wide, ir.VectorType(i32, LANES)), f32x16))
        return out
    v = builder.load(_at(builder, src, base, ir.VectorType(elem, 3 * LANES)), align=dtype.bitwidth // 8)
    undef = ir.Constant(ir.VectorType(elem, 3 * LANES), ir.Undefined)
    convert = builder.sitofp if dtype.signed else builder.uitofp
    return [convert(builder.shuffle_vector(v, undef, ir.Constant(ir.VectorType(i32, LANES), list(range(c, 3 * LANES, 3)))),
                    f32x16) for c in range(3)]


def _store(builder, dst, at, vector, dtype):
    builder.store(vector, _at(builder, dst, at, vector.type), align=dtype.bitwidth // 8)


def _store_interleaved(context, builder, dst, base, outs, dtype):
    """Store three int32 vectors (values in ``dtype``'s range) as 16 interleaved 3-value pixels."""
    i32, i64 = ir.IntType(32), ir.IntType(64)
    elem = context.get_data_type(dtype)
    if dtype.bitwidth == 8:
        # The low byte of each 32-bit lane is the value: two permutes of the
        # vectors' bytes put the three outputs of each pixel side by side.
        n = 4 * LANES
        vtype = ir.VectorType(elem, n)
        parts = [builder.bitcast(q, vtype) for q in outs]
        first = [0] * n
        for j in range(LANES):
            first[3 * j], first[3 * j + 1] = 4 * j, n + 4 * j
        pair = builder.shuffle_vector(parts[0], parts[1], ir.Constant(ir.VectorType(i32, n), first))
        second = list(range(n))
        for j in range(LANES):
            second[3 * j + 2] = n + 4 * j
        packed = builder.shuffle_vector(pair, parts[2], ir.Constant(ir.VectorType(i32, n), second))
    else:
        n = 2 * LANES
        narrow = [builder.trunc(q, ir.VectorType(elem, LANES)) for q in outs]
        both = builder.shuffle_vector(narrow[0], narrow[1], ir.Constant(ir.VectorType(i32, n), list(range(n))))
        last = builder.shuffle_vector(narrow[2], ir.Constant(ir.VectorType(elem, LANES), ir.Undefined),
                                      ir.Constant(ir.VectorType(i32, n), list(range(n))))
        order = []
        for j in range(LANES):
            order += [j, LANES + j, n + j]
        packed = builder.shuffle_vector(both, last, ir.Constant(ir.VectorType(i32, 3 * LANES), order))
    # As 32 + 16 values: LLVM splits one 48-value store into single-value pieces.
    undef = ir.Constant(packed.type, ir.Undefined)
    head = builder.shuffle_vector(packed, undef, ir.Constant(ir.VectorType(i32, 2 * LANES), list(range(2 * LANES))))
    tail = builder.shuffle_vector(packed, undef, ir.Constant(ir.VectorType(i32, LANES), list(range(2 * LANES, 3 * LANES))))
    _store(builder, dst, base, head, dtype)
    _store(builder, dst, builder.add(base, ir.Constant(i64, 2 * LANES)), tail, dtype)


@intrinsic
def mix16(typingctx, xs, p, os, w, lim):
    """Pixels ``p`` to ``p + 15`` of ``xs`` (3 values each) mixed into ``os``; the mask of the doubtful ones.

    ``w``: a tuple of float32, the K x 3 weights row by row, then the K
    biases (K = 1 or 3); ``os`` holds K values a pixel. ``out = rint(a)``
    saturated to ``os``'s dtype, with ``a`` the float32 sum; bit ``j`` of the returned uint64 is
    set where ``|a - rint(a)| >= lim`` for any output of pixel ``p + j``.
    With 8-bit ``xs``, values ``3 * p`` to ``3 * p + WIDE_READ - 1`` must lie
    in the array (the last 16 are read and ignored).
    """
    arrays_ok = all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" and a.dtype in _INTEGERS
                    for a in (xs, os))
    if not (arrays_ok and isinstance(p, types.Integer) and isinstance(w, types.UniTuple)
            and w.dtype == types.float32 and len(w) in (4, 12) and lim == types.float32):
        return None
    n_out = len(w) // 4

    def codegen(context, builder, signature, args):
        axs, ap, aos, aw, alim = args
        txs, tp, tos = signature.args[:3]
        i32, i64 = ir.IntType(32), ir.IntType(64)
        f32x16, i32x16 = ir.VectorType(ir.FloatType(), LANES), ir.VectorType(i32, LANES)
        src = context.make_array(txs)(context, builder, axs).data
        dst = context.make_array(tos)(context, builder, aos).data
        p = context.cast(builder, ap, tp, types.int64)
        base = builder.mul(p, ir.Constant(i64, 3))

        def splat(value):
            one = builder.insert_element(ir.Constant(f32x16, ir.Undefined), value, ir.Constant(i32, 0))
            return builder.shuffle_vector(one, ir.Constant(f32x16, ir.Undefined), ir.Constant(i32x16, [0] * LANES))

        x = _channels(context, builder, src, base, txs.dtype)
        weights = [splat(builder.extract_value(aw, i)) for i in range(4 * n_out)]
        fmuladd = _vector_fn(builder, "llvm.fmuladd.v16f32", f32x16, 3)
        rint = _vector_fn(builder, "llvm.rint.v16f32", f32x16, 1)
        fabs = _vector_fn(builder, "llvm.fabs.v16f32", f32x16, 1)
        limit = splat(alim)
        info = np.iinfo(str(tos.dtype))
        low, high = ir.Constant(i32x16, [int(info.min)] * LANES), ir.Constant(i32x16, [int(info.max)] * LANES)
        doubtful, outs = None, []
        for k in range(n_out):
            a = weights[3 * n_out + k]  # bias first, then the channels in order
            for c in range(3):
                a = builder.call(fmuladd, [weights[3 * k + c], x[c], a])
            r = builder.call(rint, [a])
            flag = builder.fcmp_ordered(">=", builder.call(fabs, [builder.fsub(a, r)]), limit)
            doubtful = flag if doubtful is None else builder.or_(doubtful, flag)
            # |r| < 2**12 (rounding_limit's bound): exact as int32. Clamped in
            # integers to constants, LLVM folds the clamp into a saturating narrowing.
            q = builder.fptosi(r, i32x16)
            q = builder.select(builder.icmp_signed(">", q, low), q, low)
            outs.append(builder.select(builder.icmp_signed("<", q, high), q, high))
        if n_out == 1:
            _store(builder, dst, p, builder.trunc(outs[0], ir.VectorType(context.get_data_type(tos.dtype), LANES)),
                   tos.dtype)
        else:
            _store_interleaved(context, builder, dst, base, outs, tos.dtype)
        return builder.zext(builder.bitcast(doubtful, ir.IntType(LANES)), i64)

    return types.uint64(xs, p, os, w, lim), codegen
