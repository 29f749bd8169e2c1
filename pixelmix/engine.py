"""The engine: validation, dtype policy, the (A, C, B) view, and backend choice.

Everything that applies a mixer or a program ends in :func:`apply_steps`.
It checks the request completely before any work starts (so a bad call
raises a clear error and never leaves ``out`` half written), reduces the
image to a 3-D view ``(A, C, B)`` (A = product of the axes before the channel
axis, B = product of the axes after it) and hands that view to a backend.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .kernels.elementwise import AFFINE
from .ops import CompiledProgram, compile_steps

SUPPORTED_INPUT = tuple(np.dtype(t) for t in ("uint8", "uint16", "int16", "int32", "float32", "float64"))
SUPPORTED_OUTPUT = SUPPORTED_INPUT
BACKENDS = ("auto", "cpu", "cuda", "numpy")

# A chunk is the part of a non-contiguous image copied at once: never the whole.
CHUNK_BYTES = 32 * 2**20
# Scratch per tile: about this many values per buffer (512 KB of float32, in
# L2): long runs per channel for the prefetcher; the affine step works in
# L1-sized sweeps.
TILE_VALUES = 2**17
# A per-channel lookup table replaces leading elementwise steps when it is this small.
LUT_MAX_VALUES = 2**20

_launch_lock = threading.Lock()


@dataclass(frozen=True)
class Request:
    """A validated call: everything a backend needs, nothing left to check."""

    image: np.ndarray  # the input, any layout
    out: np.ndarray  # the output array, same axes with C replaced by K
    axis: int  # the channel axis, non-negative
    program: CompiledProgram
    out_dtype: np.dtype
    acc_dtype: np.dtype
    nodata: float | None
    tile: int


def _normalize_axis(channel_axis: int, ndim: int) -> int:
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
        raise TypeError(f"channel_axis must be an integer, got {channel_axis!r}")
    if not -ndim <= channel_axis < ndim:
        raise np.exceptions.AxisError(
            f"channel_axis={channel_axis} is out of range for an image with {ndim} "
            f"dimension{'s' if ndim != 1 else ''}; use a value from {-ndim} to {ndim - 1}"
        )
    return int(channel_axis) % ndim


def _check_input_dtype(dtype: np.dtype) -> None:
    # Non-native byte order (FITS, some TIFF memmaps) is read piece by piece.
    if dtype.newbyteorder("=") not in SUPPORTED_INPUT:
        names = ", ".join(d.name for d in SUPPORTED_INPUT)
        hint = ""
        if dtype.kind in "iu":
            hint = "; convert first, e.g. image.astype(np.int32) or image.astype(np.float64)"
        elif dtype.kind == "f":
            hint = "; convert first, e.g. image.astype(np.float32)"
        raise TypeError(f"image dtype {dtype} is not supported (supported: {names}){hint}")


def output_dtype(in_dtype: np.dtype, dtype) -> np.dtype:
    """The output dtype: ``dtype`` if given, else float64 for float64 input, else float32."""
    if dtype is None:
        # Byte order aside: big-endian float64 input gives (native) float64 too.
        return np.dtype(np.float64) if in_dtype.newbyteorder("=") == np.float64 else np.dtype(np.float32)
    try:
        out = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype={dtype!r} is not a NumPy dtype") from exc
    if out not in SUPPORTED_OUTPUT:
        names = ", ".join(d.name for d in SUPPORTED_OUTPUT)
        raise TypeError(f"output dtype {out} is not supported (supported: {names})")
    return out


def accumulation_dtype(in_dtype: np.dtype, out_dtype: np.dtype) -> np.dtype:
    """The float type the sums run in: that of a float output, else wide enough for the input.

    float32 output sums in float32 and float64 output in float64, as asked.
    Integer output rounds the sum, so it must be exact enough: float64 for
    int32 output or for float64 / int32 input, float32 otherwise.
    """
    if out_dtype.kind == "f":
        return out_dtype
    wide = (np.dtype(np.float64), np.dtype(np.int32))
    if out_dtype in wide or in_dtype.newbyteorder("=") in wide:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _check_nodata(nodata, in_dtype: np.dtype) -> float | None:
    if nodata is None:
        return None
    try:
        value = float(nodata)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"nodata must be a number that fits a float, got {nodata!r}") from exc
    if math.isnan(value):
        raise ValueError("nodata=nan is not needed: NaN pixels are always treated as missing")
    cast = np.array(value).astype(in_dtype)
    if float(cast) != value:
        raise ValueError(
            f"nodata={nodata!r} cannot occur in {in_dtype} data (it would be stored as "
            f"{cast.item()!r}); pass a value of the image's dtype"
        )
    return value


def stand_in(shape: tuple[int, ...], dtype, writeable: bool = False) -> np.ndarray:
    """An array of ``shape`` and ``dtype`` that takes no memory (every stride 0).

    :func:`prepare` validates calls on data it must not touch (Dask arrays,
    GPU arrays) through these: same shape and dtype, no allocation.
    """
    base = np.zeros(1, dtype=dtype)
    return np.lib.stride_tricks.as_strided(base, shape=tuple(shape), strides=(0,) * len(shape), writeable=writeable)


def view3(a: np.ndarray, axis: int) -> np.ndarray:
    """The (A, C, B) view of a C-contiguous array with channels on ``axis``."""
    shape = a.shape
    return a.reshape(math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :]))


def default_tile(width: int) -> int:
    """Pixels per tile so that one scratch buffer holds about TILE_VALUES values."""
    return int(min(16384, max(64, TILE_VALUES // max(width, 1))))


def prepare(
    steps: tuple[Any, ...],
    image,
    *,
    channel_axis: int,
    dtype,
    nodata,
    out,
    tile_size,
    allocate=np.empty,
) -> Request:
    """Validate a call completely and build its :class:`Request` (allocating ``out``).

    ``allocate(shape, dtype=...)`` makes ``out`` when none is given; the GPU
    driver validates device arrays through zero-strided stand-ins this way.
    """
    from .ops import Program

    x = np.asarray(image)
    if x.dtype.kind in "bcOSUVMm":
        raise TypeError(
            f"image dtype {x.dtype} cannot be mixed; pixelmix needs numeric channel "
            f"values (uint8, uint16, int16, int32, float32 or float64)"
        )
    _check_input_dtype(x.dtype)
    if x.ndim == 0:
        raise ValueError("image is a scalar; it needs at least a channel axis")
    axis = _normalize_axis(channel_axis, x.ndim)
    n_channels = x.shape[axis]

    n_in = Program(steps).n_inputs
    if n_in is not None and n_channels != n_in:
        hint = ""
        matches = [ax for ax in range(x.ndim) if x.shape[ax] == n_in and ax != axis]
        if matches:
            hint = f"; pass channel_axis={matches[0]} if that axis holds the channels"
        raise ValueError(
            f"image has {n_channels} channels on axis {channel_axis} but the mixer "
            f"expects {n_in}{hint}"
        )
    program = compile_steps(tuple(steps), n_channels)

    if out is not None and not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array, got {type(out).__name__}")
    if out is not None and dtype is None:
        out_dtype = output_dtype(x.dtype, out.dtype)
    else:
        out_dtype = output_dtype(x.dtype, dtype)
    nodata_value = _check_nodata(nodata, x.dtype)

    out_shape = x.shape[:axis] + (program.n_out,) + x.shape[axis + 1 :]
    if out is None:
        out = allocate(out_shape, dtype=out_dtype)
    else:
        if out.shape != out_shape:
            raise ValueError(f"out has shape {out.shape} but the result has shape {out_shape}")
        if out.dtype != out_dtype:
            raise TypeError(
                f"out has dtype {out.dtype} but dtype={out_dtype} was asked for; "
                f"leave dtype=None to write in out's dtype"
            )
        if not out.flags.writeable:
            raise ValueError("out is read-only; pass a writeable array")
        if np.shares_memory(out, x):
            raise ValueError("out overlaps the image; mixing in place is not supported")

    if tile_size is None:
        tile = default_tile(program.width)
    elif isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer)) or tile_size < 1:
        raise ValueError(f"tile_size must be a positive integer, got {tile_size!r}")
    else:
        tile = int(tile_size)
    # No tile is longer than the run of pixels it is cut from (all of A when
    # channels are last, else a row of B): scratch is never larger than needed.
    after = math.prod(x.shape[axis + 1 :])
    tile = max(1, min(tile, math.prod(x.shape[:axis]) if after == 1 else after))

    return Request(
        image=x,
        out=out,
        axis=axis,
        program=program,
        out_dtype=out_dtype,
        acc_dtype=accumulation_dtype(x.dtype, out_dtype),
        nodata=nodata_value,
        tile=tile,
    )


def apply_steps(
    steps: tuple[Any, ...],
    image,
    *,
    channel_axis: int = -1,
    dtype=None,
    nodata=None,
    out=None,
    tile_size: int | None = None,
    backend: str = "auto",
):
    """Apply a folded sequence of steps to ``image``; the engine's one entry point."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {', '.join(map(repr, BACKENDS))}")
    from .lazy import apply_lazy, is_dask_array

    if is_dask_array(image):  # lazy result, each block computed by this function
        return apply_lazy(
            steps, image, channel_axis=channel_axis, dtype=dtype, nodata=nodata, out=out,
            tile_size=tile_size, backend=backend,
        )
    from .gpu import is_device_array

    if is_device_array(image) or is_device_array(out):
        if backend in ("cpu", "numpy"):
            raise ValueError(
                f"backend={backend!r} cannot read GPU arrays; use backend='cuda' or 'auto' "
                f"(the result stays on the GPU), or copy the array to the host first"
            )
        from .gpu import apply_device

        return apply_device(
            steps, image, channel_axis=channel_axis, dtype=dtype, nodata=nodata, out=out, tile_size=tile_size
        )
    request = prepare(
        steps, image, channel_axis=channel_axis, dtype=dtype, nodata=nodata, out=out, tile_size=tile_size
    )
    if request.image.size == 0 or request.out.size == 0:
        return request.out
    if backend == "numpy":
        from .kernels.reference import run_reference

        request.out[...] = run_reference(
            steps,
            request.image,
            channel_axis=request.axis,
            out_dtype=request.out_dtype,
            acc_dtype=request.acc_dtype,
            nodata=request.nodata,
        )
    elif backend == "cuda" or (backend == "auto" and _auto_picks_cuda(request)):
        from .gpu import run_cuda

        run_cuda(request)
    else:
        run_cpu(request)
    return request.out


def _auto_picks_cuda(request: Request) -> bool:
    """backend="auto": the GPU for large images when a real one is usable and can run the program.

    Size first (probing costs); never Numba's CUDA simulator, which runs
    Python per thread; never a program wider than the GPU kernel holds.
    """
    from . import gpu

    if not gpu.worth_it(request.image.nbytes + request.out.nbytes) or not gpu.usable():
        return False
    from .kernels import cuda as kc

    return not kc.simulated() and request.program.width <= kc.MAX_SCRATCH


def kernel_args(request: Request, lut: np.ndarray, lut_offset: int, start: int) -> dict[str, Any]:
    """The scalar and table arguments shared by the CPU and GPU kernels."""
    program = request.program
    out_dtype = request.out_dtype
    if out_dtype.kind in "iu":
        info = np.iinfo(out_dtype)
        lo, hi = float(info.min), float(info.max)
        fill = 0.0 if request.nodata is None else float(np.clip(np.rint(request.nodata), lo, hi))
    else:
        lo = hi = fill = 0.0
    return dict(
        table=program.table,
        params=program.params.astype(request.acc_dtype),
        start=start,
        width=program.width,
        tile=request.tile,
        lut=lut,
        lut_offset=lut_offset,
        use_lut=start > 0,
        nodata=0.0 if request.nodata is None else request.nodata,
        use_nodata=request.nodata is not None,
        # NaN spreads through an affine step to every output on its own;
        # only a program with no affine step needs the per-pixel check.
        check_nan=request.image.dtype.kind == "f" and not program.has_affine,
        is_int=out_dtype.kind in "iu",
        lo=lo,
        hi=hi,
        fill=fill,
    )


def lookup_table(request: Request, run) -> tuple[np.ndarray, int, int]:
    """A per-channel table of the program's leading per-channel steps, when it pays.

    Integer input of at most 16 bits has few distinct values, so the steps
    that treat each channel on its own (elementwise steps, diagonal maps such
    as a 1/255 scale) can be looked up instead of computed per pixel.
    Returns ``(lut, offset, start)``: ``lut[c, v + offset]`` is channel c's
    value v after the first ``start`` steps (``start == 0``: no table). The
    table is computed by the backend's own kernel (``run(x3, out3, request,
    lut, offset, start)``), so it holds exactly what the direct path computes.
    """
    program = request.program
    dtype = request.image.dtype.newbyteorder("=")
    no_table = np.zeros((1, 1), dtype=request.acc_dtype), 0, 0
    lead = program.n_per_channel
    # A lone affine step gains nothing from a table: the kernel mixes on the fly.
    only_affine = lead == 1 and program.table[0, 0] == AFFINE
    if lead == 0 or only_affine or dtype.kind not in "iu" or dtype.itemsize > 2:
        return no_table
    info = np.iinfo(dtype)
    n_values = int(info.max) - int(info.min) + 1
    # Only when the table is smaller than the image, and small enough to stay in cache.
    if n_values * program.n_in > min(LUT_MAX_VALUES, request.image.size):
        return no_table
    values = np.arange(info.min, info.max + 1, dtype=dtype)
    grid = np.ascontiguousarray(np.broadcast_to(values, (1, program.n_in, n_values)))
    table = np.empty((1, program.n_in, n_values), dtype=request.acc_dtype)
    head = replace(program, table=program.table[:lead], n_out=program.n_in, width=program.n_in, n_per_channel=lead)
    sub = Request(grid, table, 1, head, request.acc_dtype, request.acc_dtype, None, request.tile)
    run(grid, table, sub, *no_table)
    return table[0], -int(info.min), lead


def _threading_layer() -> str | None:
    from numba import threading_layer

    try:
        return threading_layer()
    except ValueError:  # no parallel region has run yet
        return None


def _run_cpu_kernel(x3, out3, request: Request, lut, lut_offset: int, start: int) -> None:
    import numba

    from .kernels import cpu_pixels
    from .kernels.cpu import run_program

    if x3.flags.writeable:
        # One read-only view type for every input: memory-mapped files are
        # read-only, and Numba would otherwise compile a second specialisation.
        x3 = x3.view()
        x3.flags.writeable = False
    args = kernel_args(request, lut, lut_offset, start)
    pixels = cpu_pixels.takes(
        args["table"], start, x3.shape[2] == 1, args["is_int"], args["use_nodata"], args["check_nan"]
    )
    if pixels:
        # RGB-like programs on channels-last data: a kernel without scratch.
        keep = ("table", "params", "start", "tile", "lut", "lut_offset", "use_lut", "is_int", "lo", "hi", "fill")
        kernel, args = cpu_pixels.run_pixels, {name: args[name] for name in keep}
    else:
        # A few groups of tiles per thread: scratch is allocated once per group.
        kernel, args["groups"] = run_program, 4 * numba.get_num_threads()
    if _threading_layer() in (None, "workqueue"):
        # Numba's workqueue layer aborts when two threads launch parallel
        # regions at once (tbb and omp are thread-safe): serialise on it, and
        # on the first launch, which is when the layer gets chosen.
        with _launch_lock:
            kernel(x3, out3, **args)
    else:
        kernel(x3, out3, **args)


def chunks(request: Request):
    """Yield ``(x3, out3, finish)``: contiguous (A, C, B) pieces covering the request.

    A C-contiguous image (in native byte order) and output give one piece,
    the whole arrays, with no copy. Otherwise the image is cut along its
    longest axis other than the channel axis into pieces of about
    CHUNK_BYTES, each copied to contiguous native memory (never the whole
    image at once); ``finish()`` copies a piece's result into ``out`` when
    ``out`` could not be written directly.
    """
    image, out, axis = request.image, request.out, request.axis
    native = image.dtype.newbyteorder("=")
    if image.flags.c_contiguous and image.dtype.isnative and out.flags.c_contiguous:
        yield view3(image, axis), view3(out, axis), lambda: None
        return
    others = [ax for ax in range(image.ndim) if ax != axis]
    if not others:
        pieces = [(slice(None),)]
    else:
        split = max(others, key=lambda ax: image.shape[ax])
        length = image.shape[split]
        step = max(1, CHUNK_BYTES * length // max(image.nbytes, 1))
        pieces = [
            (slice(None),) * split + (slice(i, i + step),) for i in range(0, length, step)
        ]
    for index in pieces:
        x = np.ascontiguousarray(image[index], dtype=native)
        dest = out[index]
        buf = dest if dest.flags.c_contiguous else np.empty(dest.shape, dest.dtype)

        def finish(dest=dest, buf=buf):
            if buf is not dest:
                dest[...] = buf

        yield view3(x, axis), view3(buf, axis), finish


def run_cpu(request: Request) -> None:
    """Run a validated request on the Numba CPU kernel."""
    lut, lut_offset, start = lookup_table(request, _run_cpu_kernel)
    for x3, out3, finish in chunks(request):
        _run_cpu_kernel(x3, out3, request, lut, lut_offset, start)
        finish()
