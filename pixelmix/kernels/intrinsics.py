"""LLVM instructions that Numba has no name for, as Numba intrinsics.

Both are single machine instructions on every target Numba compiles for,
inlined where they are called, and cached with the kernels that use them.

``trailing_zeros(word)``
    The index of the lowest set bit of a nonzero uint64 (LLVM's ``cttz``).
``prefetch(array, index)``
    Ask the CPU to start loading the cache line of element ``index`` of a
    C-contiguous array (counted over the flattened array), without waiting
    for it and without faulting: a load that the hardware prefetchers do not
    foresee (scattered pixels, a hundred channel planes read side by side)
    then overlaps with the work before it. A hint only: it changes no result.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["trailing_zeros", "prefetch"]


@intrinsic
def trailing_zeros(typingctx, word):
    """The index of the lowest set bit of a nonzero uint64 (LLVM's cttz), as an int64."""
    if word != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))  # never called with 0

    return types.int64(types.uint64), codegen


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
