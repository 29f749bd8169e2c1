"""Dispatch: one validation of a call, then the backend that runs it.

Everything that applies a mixer or a program ends in :func:`apply_steps`.
It checks the request completely before any work starts (so a bad call
raises a clear error and never leaves ``out`` half written), and hands it
to a backend by the kind of data and the ``backend`` asked for:

- a Dask array: :mod:`pixelmix.backends.dask`, given a runner that calls
  :func:`apply_steps` again on each in-memory block;
- GPU arrays: :mod:`pixelmix.backends.cuda`, in place on the device;
- NumPy arrays: ``"numpy"`` (the reference), ``"cuda"``, ``"cpu"``, or
  ``"auto"`` (the GPU for large images when one is usable, else the CPU).

Lazy and device data are validated through memory-free stand-ins
(:func:`pixelmix.plan.stand_in`) with the same checks and messages.
The Numba CPU backend is imported when first used: importing pixelmix loads no Numba.
"""

from __future__ import annotations

import json
import math
from functools import partial
from types import SimpleNamespace
from typing import Any

import numpy as np

from .backends import cuda, dask
from .backends.numpy import run_reference
from .lowering import compile_steps, n_inputs
from .plan import (
    Request,
    accumulation_dtype,
    check_input_dtype,
    check_nodata,
    default_tile,
    normalize_axis,
    output_dtype,
    stand_in,
)

BACKENDS = ("auto", "cpu", "cuda", "numpy")


def _check_out(out, x, out_shape, out_dtype) -> None:
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


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_params_fit(largest: float, acc_dtype: np.dtype) -> None:
    """Refuse parameters that are not finite, or finite in float64 but too large for float32 sums.

    Only an unmixer's packed parameters can be non-finite (a mixer refuses
    such weights): nearly dependent or tiny endmembers overflow its inverse.
    """
    if not math.isfinite(largest):
        raise ValueError(
            f"a step's parameters are not finite ({largest}): an unmixer's endmembers may be nearly dependent "
            f"or too small to invert in float64; rescale them (e.g. to unit norm), or merge similar ones"
        )
    if largest > _FLOAT32_MAX and acc_dtype == np.float32:
        raise ValueError(
            f"a weight, bias or step parameter ({largest:.3g}) does not fit {acc_dtype}, the type "
            f"the sums run in for this output; pass dtype=np.float64 (--dtype float64), or rescale the weights"
        )


def _tile(tile_size, width: int, x: np.ndarray, axis: int) -> int:
    if tile_size is None:
        tile = default_tile(width)
    elif isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer)) or tile_size < 1:
        raise ValueError(f"tile_size must be a positive integer, got {tile_size!r}")
    else:
        tile = int(tile_size)
    # No tile is longer than the run of pixels it is cut from (all of A when
    # channels are last, else a row of B): scratch is never larger than needed.
    after = math.prod(x.shape[axis + 1 :])
    return max(1, min(tile, math.prod(x.shape[:axis]) if after == 1 else after))


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
    """Validate a call completely and build its :class:`~pixelmix.plan.Request` (allocating ``out``).

    ``allocate(shape, dtype=...)`` makes ``out`` when none is given; lazy
    and device calls are validated through zero-strided stand-ins this way.
    """
    x = np.asarray(image)
    check_input_dtype(x.dtype)
    if x.ndim == 0:
        raise ValueError("image is a scalar; it needs at least a channel axis")
    axis = normalize_axis(channel_axis, x.ndim)
    n_channels = x.shape[axis]

    n_in = n_inputs(steps)
    if n_in is not None and n_channels != n_in:
        hint = ""
        matches = [ax for ax in range(x.ndim) if x.shape[ax] == n_in and ax != axis]
        if matches:
            hint = f"; pass channel_axis={matches[0]} if that axis holds the channels"
        raise ValueError(
            f"image has {n_channels} channels on axis {channel_axis} but the mixer "
            f"expects {n_in}{hint}"
        )
    program = compile_steps(steps, n_channels)

    if out is not None and not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array, got {type(out).__name__}")
    out_dtype = output_dtype(x.dtype, out.dtype if out is not None and dtype is None else dtype)
    nodata_value = check_nodata(nodata, x.dtype)

    acc_dtype = accumulation_dtype(x.dtype, out_dtype)
    _check_params_fit(program.largest, acc_dtype)

    out_shape = x.shape[:axis] + (program.n_out,) + x.shape[axis + 1 :]
    if out is None:
        out = allocate(out_shape, dtype=out_dtype)
    else:
        _check_out(out, x, out_shape, out_dtype)
    return Request(
        image=x,
        out=out,
        axis=axis,
        program=program,
        out_dtype=out_dtype,
        acc_dtype=acc_dtype,
        nodata=nodata_value,
        tile=_tile(tile_size, program.width, x, axis),
    )


def _stand_in_request(steps, image, *, channel_axis, dtype, nodata, out, tile_size) -> Request:
    """:func:`prepare` on memory-free stand-ins of ``image`` (and ``out``)."""
    return prepare(
        steps,
        stand_in(image.shape, np.dtype(image.dtype)),
        channel_axis=channel_axis,
        dtype=dtype,
        nodata=nodata,
        out=None if out is None else stand_in(out.shape, np.dtype(out.dtype), writeable=True),
        tile_size=tile_size,
        # The whole result is never allocated: a stand-in takes its place.
        allocate=lambda shape, dtype: stand_in(shape, dtype, writeable=True),
    )


def prepare_device(steps, image, *, channel_axis: int = -1, dtype=None, nodata=None, out=None, tile_size=None):
    """Validate a call on GPU arrays: ``(request, d_x3, d_out3, result)``.

    ``result`` is ``out`` when given, else a new device array of the image's kind.
    """
    d_image, d_out = cuda.device_arrays(image, out)
    request = _stand_in_request(
        steps, d_image, channel_axis=channel_axis, dtype=dtype, nodata=nodata, out=d_out, tile_size=tile_size
    )
    return (request, *cuda.device_views(request, image, d_image, d_out, out))


def _apply_lazy(steps, image, *, channel_axis, dtype, nodata, out, tile_size, backend):
    if out is not None:
        raise TypeError(
            "out= cannot be used with a Dask array: the result is lazy; compute it "
            "with result.compute(), or write it into an array with "
            "dask.array.store(result, out)"
        )
    try:
        axis = normalize_axis(channel_axis, image.ndim)
    except Exception:
        axis = None  # prepare reports it below, in its own words
    if axis is not None and math.isnan(image.shape[axis]):
        raise ValueError(
            f"the size of the channel axis {channel_axis} is unknown (NaN chunks); "
            f"call image.compute_chunk_sizes() first"
        )
    # Unknown (NaN) sizes of other axes do not matter to the checks.
    known = SimpleNamespace(shape=tuple(1 if math.isnan(s) else int(s) for s in image.shape), dtype=image.dtype)
    request = _stand_in_request(
        steps, known, channel_axis=channel_axis, dtype=dtype, nodata=nodata, out=None, tile_size=tile_size
    )
    run_block = partial(
        apply_steps, tuple(steps), channel_axis=request.axis, dtype=request.out_dtype,
        nodata=request.nodata, tile_size=tile_size, backend=backend,
    )
    # Deterministic task keys: the same call gives the same keys. The
    # program is described by its JSON form, which is exact.
    token = json.dumps(
        [[s.to_dict() for s in steps], request.out_dtype.str, request.nodata, tile_size, backend], sort_keys=True
    )
    return dask.apply_lazy(request, image, run_block, token=token, uses_numba=backend != "numpy")


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
    """Apply a folded sequence of steps to ``image``: the one entry point of every apply."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {', '.join(map(repr, BACKENDS))}")
    options = dict(channel_axis=channel_axis, dtype=dtype, nodata=nodata, out=out, tile_size=tile_size)
    # NumPy arrays, the common case, are neither lazy nor on a GPU: no need to ask.
    if type(image) is not np.ndarray or not (out is None or type(out) is np.ndarray):
        if dask.is_dask_array(image):  # a lazy result, each block computed by this function
            return _apply_lazy(steps, image, backend=backend, **options)
        if cuda.is_device_array(image) or cuda.is_device_array(out):
            if backend in ("cpu", "numpy"):
                raise ValueError(
                    f"backend={backend!r} cannot read GPU arrays; use backend='cuda' or 'auto' "
                    f"(the result stays on the GPU), or copy the array to the host first"
                )
            request, d_x3, d_out3, result = prepare_device(steps, image, **options)
            cuda.run_device(request, d_x3, d_out3)
            return result
    request = prepare(steps, image, **options)
    if request.image.size == 0 or request.out.size == 0:
        return request.out
    if backend == "numpy":
        request.out[...] = run_reference(
            steps,
            request.image,
            channel_axis=request.axis,
            out_dtype=request.out_dtype,
            acc_dtype=request.acc_dtype,
            nodata=request.nodata,
        )
    elif backend == "cuda" or (backend == "auto" and _auto_picks_cuda(request)):
        cuda.run_cuda(request)
    else:
        from .backends.cpu import run_cpu  # loads Numba: on first use, not when pixelmix is imported

        run_cpu(request)
    return request.out


def _auto_picks_cuda(request: Request) -> bool:
    """backend="auto": the GPU for large images when a real one is usable and can run the program.

    Size first (probing costs); never Numba's CUDA simulator, which runs
    Python per thread; never a program wider than the GPU kernel holds.
    """
    if not cuda.worth_it(request.image.nbytes + request.out.nbytes) or not cuda.usable():
        return False
    from .kernels import cuda as kc

    return not kc.simulated() and request.program.width <= kc.MAX_SCRATCH
