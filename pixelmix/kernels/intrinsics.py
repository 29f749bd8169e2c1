"""LLVM instructions that Numba has no name for, as Numba intrinsics, and a buffer aligned with them.

Each is a single machine instruction on every target Numba compiles for,
inlined where it is called, and cached with the kernels that use it.

``trailing_zeros(word)``
    The index of the lowest set bit of a nonzero uint64 (LLVM's ``cttz``).
``address(array)``
    The address of an array's first element, as an int64: to align a
    buffer's start to a cache line.
``prefetch(array, index)``
    Ask the CPU to start loading the cache line of element ``index`` of a
    C-contiguous array (counted over the flattened array), without waiting
    for it and without faulting: a load that the hardware prefetchers do not
    foresee (scattered pixels, a hundred channel planes read side by side)
    then overlaps with the work before it. A hint only: it changes no result.
``aligned(buffer, n)``
    The ``n`` elements of a 1-D buffer (``n + 64 // itemsize`` long) that
    start on a 64-byte boundary. Numba's allocator aligns large arrays to 32
    bytes only, so that every AVX-512 load or store of a scratch row
    straddles two cache lines: the fits' Gram product ran at 45 GFMA/s a
    core in such rows, 58 in aligned ones.
"""

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["trailing_zeros", "address", "prefetch", "aligned"]


@intrinsic
def trailing_zeros(typingctx, word):
    """The index of the lowest set bit of a nonzero uint64 (LLVM's cttz), as an int64."""
    if word != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))  # never called with 0

    return types.int64(types.uint64), codegen


@intrinsic
def address(typingctx, array):
    """The address of ``array``'s data, as an int64."""
    if not isinstance(array, types.Array):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.ptrtoint(data, ir.IntType(64))

    return types.int64(array), codegen


@intrinsic
def prefetch(typingctx, array, index):
    """Start loading the cache line of ``array.ravel()[index]`` (C-contiguous ``array``) into all cache levels."""
    if not isinstance(array, types.Array) or array.layout != "C" or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        # The unsuffixed name: LLVM upgrades it to the overload of its version (typed or opaque pointers).
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch")
        # Read, highest locality (all levels), data cache.
        address = builder.bitcast(builder.gep(data, [args[1]]), i8p)
        builder.call(fn, [address, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


@njit(cache=True, nogil=True, inline="always")
def aligned(buffer, n):
    """The ``n`` elements of 1-D ``buffer`` (at least ``n + 64 // itemsize`` long) from its first 64-byte boundary."""
    start = (-address(buffer) % 64) // buffer.itemsize
    return buffer[start:start + n]
