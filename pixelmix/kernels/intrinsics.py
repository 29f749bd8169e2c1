"""LLVM instructions that Numba has no name for, as Numba intrinsics, and what is built on them.

Each is inlined where it is called, and cached with the kernels that use it.
(Numba's cache checks only the calling kernel's own file: after editing this
one, clear the ``__pycache__`` ``.nbi``/``.nbc`` files; an install rewrites
every file and so invalidates them all.)

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
``claim(counter, n, workers)``
    The next run ``start, stop`` of the ``n`` tiles that ``workers`` threads
    share through ``counter`` (a 1-D int64 array holding the first tile not
    yet claimed; ``start == stop == n`` when none is left): a quarter of the
    tiles to the first claim of two workers, then smaller runs as fewer are
    left (OpenMP's "guided" schedule). Numba's parallel loops deal their
    iterations out evenly before they start (OpenMP's static schedule, even
    with a chunk size set), so a thread that runs slowly for a while (on a
    core another process holds, such as OpenBLAS's spinning threads) still
    has its half to do while the other waits. Runs of consecutive tiles
    keep each thread streaming through memory of its own, as the even split
    did: tiles claimed one at a time, alternating between the threads, cost
    RGB to gray 20% into a given output and YCbCr 50% into a fresh one.
``aligned(buffer, n)``
    The ``n`` elements of a 1-D buffer (``n + 64 // itemsize`` long) that
    start on a 64-byte boundary. Numba's allocator aligns large arrays to 32
    bytes only, so that every AVX-512 load or store of a scratch row
    straddles two cache lines: the fits' Gram product ran at 45 GFMA/s a
    core in such rows, 58 in aligned ones.
``transpose8(x, cand, partner, j0, c0, shift, tile, col)``, ``transpose8_diff(...)``
    Eight pixels by eight channels of a channels-last block into eight rows
    of a channel-by-pixel float64 tile, minus a shift (of pixel
    differences, for ``_diff``): eight vector loads, a shuffle transpose,
    eight vector stores, where Numba's own loop gathered each value. The
    moments' copy into their tiles took 20% less time.
``contiguous_row(x, a, c)``
    ``x[a, c]`` of a 3-D array whose last axis has unit stride, typed as a
    C-contiguous row whatever ``x``'s layout: the pixel loops over it then
    vectorise as over a C-contiguous array's rows. For the moments of a
    channels-first slab of a memory-mapped file, read where it lies
    (unit-stride rows, channel planes apart) instead of copied.
``c_contiguous_or_empty(x)``
    ``x`` if it is typed C-contiguous, else an empty array of its dtype:
    for code that only C-contiguous arrays reach at run time (a kernel's
    channels-last branch) but that must compile for other layouts too.
``call_compiled(callee, address, args)``, with ``compiled_address(callee, argtypes)``
    Call ``callee`` (a Numba dispatcher) at ``address``, the entry point of
    its compiled overload for the types of the tuple ``args``, instead of
    linking its code in. Numba links every callee into each caller's
    machine code and optimises it there again: code that does not depend on
    a caller's types (the later steps and the store of the CPU kernel, with
    unmixing, the elementwise functions and six output dtypes) was compiled
    again with every input dtype. ``compiled_address`` compiles (or loads
    from the cache) the overload at run time and gives its address; the
    caller, typed and cached apart, receives it as an argument. A call whose
    argument types have no compiled overload fails to compile, with a clear
    error, rather than calling code of another signature. (An exception
    raised in the callee reaches the caller's caller as from a linked call,
    and inside a parallel loop Numba reports neither.)
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.callconv import excinfo_t
from numba.core.errors import TypingError
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic, overload
from numba.np.arrayobj import populate_array

__all__ = ["trailing_zeros", "address", "prefetch", "claim", "aligned", "transpose8", "transpose8_diff",
           "contiguous_row", "c_contiguous_or_empty", "call_compiled", "compiled_address"]


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


@intrinsic
def _compare_exchange(typingctx, counter, expected, desired):
    """Atomically: if ``counter[0] == expected``, set it to ``desired``; return the value it had (1-D int64)."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64 and counter.ndim == 1):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        # Monotonic: the count is the only thing shared; what each tile writes is its own.
        pair = builder.cmpxchg(data, args[1], args[2], "monotonic", "monotonic")
        return builder.extract_value(pair, 0)

    return types.int64(counter, types.int64, types.int64), codegen


@intrinsic
def _atomic_load(typingctx, counter):
    """``counter[0]`` (1-D int64), read atomically: a plain read racing another thread's write is undefined."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64 and counter.ndim == 1):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.load_atomic(data, "monotonic", 8)

    return types.int64(counter), codegen


@njit(cache=True, nogil=True, inline="always")
def claim(counter, n, workers):
    """The next run of tiles, ``start, stop``, of ``n`` shared by ``workers`` through ``counter`` (guided)."""
    start = _atomic_load(counter)
    while start < n:
        stop = start + max(1, (n - start) // (2 * workers))
        seen = _compare_exchange(counter, start, stop)
        if seen == start:
            return start, stop
        start = seen  # another thread claimed first: try again from where it left off
    return n, n


@njit(cache=True, nogil=True, inline="always")
def aligned(buffer, n):
    """The ``n`` elements of 1-D ``buffer`` (at least ``n + 64 // itemsize`` long) from its first 64-byte boundary."""
    start = (-address(buffer) % 64) // buffer.itemsize
    return buffer[start:start + n]


# The three rounds of an 8 x 8 transpose by shuffles (LLVM picks the instructions): rows
# ``gap`` apart are interleaved by 1, then 2, then 4 lanes. Indices 8-15 are the second row's lanes.
_ROUNDS = (
    (1, [0, 8, 2, 10, 4, 12, 6, 14], [1, 9, 3, 11, 5, 13, 7, 15]),
    (2, [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]),
    (4, [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]),
)


def _transposed(builder, rows):
    """The eight columns (as vectors) of eight 8-lane vectors."""
    for gap, first, second in _ROUNDS:
        out = [None] * 8
        for base in range(0, 8, 2 * gap):
            for k in range(base, base + gap):
                a, b = rows[k], rows[k + gap]
                out[k] = builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), 8), first))
                out[k + gap] = builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), 8), second))
        rows = out
    return rows


def _block_typer(paired: bool, name: str):
    """The typing function of :func:`transpose8` (``paired``: of :func:`transpose8_diff`)."""

    def typer(typingctx, x, cand, partner, j0, c0, shift, tile, col):
        ok = (isinstance(x, types.Array) and x.layout == "C" and isinstance(x.dtype, (types.Float, types.Integer))
              and not isinstance(x.dtype, types.Boolean)
              and all(isinstance(a, types.Array) and a.dtype == types.int64 and a.ndim == 1 for a in (cand, partner))
              and isinstance(shift, types.Array) and shift.dtype == types.float64 and shift.layout == "C"
              and isinstance(tile, types.Array) and tile.dtype == types.float64 and tile.ndim == 2
              and tile.layout == "C" and all(isinstance(a, types.Integer) for a in (j0, c0, col)))
        if not ok:
            return None

        def codegen(context, builder, signature, args):
            ax, acand, apartner, aj0, ac0, ashift, atile, acol = args
            tx, tcand, tpartner, tj0, tc0, tshift, ttile, tcol = signature.args
            i64 = ir.IntType(64)
            f64x8 = ir.VectorType(ir.DoubleType(), 8)
            xs = context.make_array(tx)(context, builder, ax)
            elem = context.get_data_type(tx.dtype)
            size = context.get_abi_sizeof(elem)
            j0 = context.cast(builder, aj0, tj0, types.int64)
            c0 = context.cast(builder, ac0, tc0, types.int64)
            col = context.cast(builder, acol, tcol, types.int64)
            # Pixel p's channel c is element p * C + c of x (channels last: x is (A, C, 1)).
            n_channels = builder.extract_value(xs.shape, 1)
            shift_data = context.make_array(tshift)(context, builder, ashift).data
            shift_vec = builder.load(builder.bitcast(builder.gep(shift_data, [c0]), f64x8.as_pointer()), align=8)

            def loaded(pixels, i):
                """Pixel ``pixels[j0 + i]``'s eight channels from ``c0``, as float64."""
                p = builder.load(builder.gep(pixels, [builder.add(j0, ir.Constant(i64, i))]))
                address = builder.gep(xs.data, [builder.add(builder.mul(p, n_channels), c0)])
                v = builder.load(builder.bitcast(address, ir.VectorType(elem, 8).as_pointer()), align=size)
                if isinstance(tx.dtype, types.Float):
                    return v if tx.dtype.bitwidth == 64 else builder.fpext(v, f64x8)
                return builder.sitofp(v, f64x8) if tx.dtype.signed else builder.uitofp(v, f64x8)

            firsts = context.make_array(tcand)(context, builder, acand).data
            seconds = context.make_array(tpartner)(context, builder, apartner).data
            rows = []
            for i in range(8):
                v = loaded(firsts, i)
                if paired:
                    v = builder.fsub(v, loaded(seconds, i))
                rows.append(builder.fsub(v, shift_vec))
            out = context.make_array(ttile)(context, builder, atile)
            width = builder.extract_value(out.shape, 1)
            for k, column in enumerate(_transposed(builder, rows)):
                index = builder.add(builder.mul(builder.add(c0, ir.Constant(i64, k)), width), col)
                builder.store(column, builder.bitcast(builder.gep(out.data, [index]), f64x8.as_pointer()), align=8)
            return context.get_dummy_value()

        return types.void(x, cand, partner, j0, c0, shift, tile, col), codegen

    typer.__name__ = typer.__qualname__ = name
    return typer


transpose8 = intrinsic(_block_typer(False, "transpose8"))
transpose8.__doc__ = """Eight pixels by eight channels of a channels-last block into a float64 channel-by-pixel tile.

``tile[c0 + k, col + i] = float64(x[cand[j0 + i], c0 + k]) - shift[c0 + k]``
for i, k < 8 (``x`` (A, C, 1), C-contiguous): eight vector loads, a shuffle
transpose, eight vector stores. ``partner`` is not read.
"""
transpose8_diff = intrinsic(_block_typer(True, "transpose8_diff"))
transpose8_diff.__doc__ = """:func:`transpose8` of ``x[cand[j0 + i]] - x[partner[j0 + i]]`` (each in float64)."""


@intrinsic
def contiguous_row(typingctx, x, a, c):
    """``x[a, c]`` of 3-D ``x`` (any layout; its last axis of unit stride) as a C-contiguous 1-D array."""
    if not isinstance(x, types.Array) or x.ndim != 3 or not all(isinstance(i, types.Integer) for i in (a, c)):
        return None
    row = x.copy(ndim=1, layout="C")

    def codegen(context, builder, signature, args):
        tx, ta, tc = signature.args
        xs = context.make_array(tx)(context, builder, args[0])
        shape = cgutils.unpack_tuple(builder, xs.shape)
        index = [context.cast(builder, args[1], ta, types.intp), context.cast(builder, args[2], tc, types.intp),
                 context.get_constant(types.intp, 0)]
        start = cgutils.get_item_pointer2(context, builder, xs.data, shape, cgutils.unpack_tuple(builder, xs.strides),
                                          tx.layout, index)
        out = context.make_array(row)(context, builder)
        populate_array(out, data=start, shape=cgutils.pack_array(builder, [shape[2]]),
                       strides=cgutils.pack_array(builder, [xs.itemsize]), itemsize=xs.itemsize,
                       meminfo=xs.meminfo, parent=xs.parent)
        return impl_ret_borrowed(context, builder, row, out._getvalue())

    return row(x, a, c), codegen


def c_contiguous_or_empty(x):
    """``x`` if typed C-contiguous, else an empty array of its dtype and dimensions (compiled code only)."""
    raise NotImplementedError("c_contiguous_or_empty is for compiled code")


@overload(c_contiguous_or_empty)
def _c_contiguous_or_empty(x):
    if not isinstance(x, types.Array):
        return None
    if x.layout == "C":
        return lambda x: x
    empty = (0,) * x.ndim
    return lambda x: np.empty(empty, dtype=x.dtype)


def compiled_address(callee, argtypes: tuple) -> int:
    """The entry point of ``callee``'s overload for ``argtypes`` (compiled, or loaded from the cache, if new).

    Valid while ``callee`` lives: pass the address of a module-level
    dispatcher to :func:`call_compiled`.
    """
    argtypes = tuple(argtypes)
    if argtypes not in callee.overloads:
        callee.compile(argtypes)
    result = callee.overloads[argtypes]
    return result.library.get_pointer_to_function(result.fndesc.llvm_func_name)


@intrinsic
def call_compiled(typingctx, callee, address, args):
    """``callee(*args)`` through ``address``, from :func:`compiled_address` for the types of ``args``."""
    if not isinstance(callee, types.Dispatcher) or not isinstance(address, types.Integer) \
            or not isinstance(args, types.BaseTuple):
        return None
    argtypes = tuple(args.types)
    dispatcher = callee.dispatcher
    if argtypes not in dispatcher.overloads:
        # The address the caller receives is that of another signature's code (or none).
        raise TypingError(f"{dispatcher.py_func.__qualname__} has no compiled overload for {argtypes}: "
                          "call compiled_address() for these types first")
    restype = dispatcher.overloads[argtypes].signature.return_type

    def codegen(context, builder, signature, llargs):
        # What Numba's own call of a compiled function does (its calling convention), through a pointer.
        # The call convention's helpers are private to Numba: tests/test_intrinsics.py
        # calls through it, exception included, so a Numba that changes them fails there first.
        call_conv = context.call_conv
        function = builder.inttoptr(llargs[1], call_conv.get_function_type(restype, argtypes).as_pointer())
        values = [builder.extract_value(llargs[2], i) for i in range(len(argtypes))]
        retval = cgutils.alloca_once(builder, call_conv.get_return_type(restype).pointee)
        builder.store(cgutils.get_null_value(retval.type.pointee), retval)
        excinfo = cgutils.alloca_once(builder, ir.PointerType(excinfo_t), name="excinfo")
        packed = list(call_conv._get_arg_packer(argtypes).as_arguments(builder, values))
        code = builder.call(function, [retval, excinfo] + packed)
        status = call_conv._get_return_status(builder, code, builder.load(excinfo))
        with builder.if_then(status.is_error, likely=False):
            call_conv.return_status_propagate(builder, status)
        return context.get_returned_value(builder, restype, builder.load(retval))

    return restype(callee, address, args), codegen
