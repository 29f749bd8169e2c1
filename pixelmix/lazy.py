"""Lazy mixing of Dask arrays: one engine call per block, nothing computed up front.

:func:`apply_lazy` is what :func:`pixelmix.engine.apply_steps` (so
:meth:`pixelmix.Mixer.apply`, :func:`pixelmix.mix`, :meth:`pixelmix.Program.apply`)
does when it is given a ``dask.array.Array``: it validates the call at once,
with the engine's own checks and messages, and returns a Dask array of the
right shape, dtype and chunks whose blocks are computed by the engine when
the result is computed.

Channels split across chunks are merged into one chunk (a rechunk of the
channel axis) rather than mixed separately and summed: a sum of partial
products would add each pixel's terms in another order than the in-memory
engine does (so results would differ in the last bit), and could not pass
an elementwise step (relu, log, ...) between two affine maps at all. Where
the merged blocks would exceed Dask's ``array.chunk-size``, the other axes
are rechunked too, so blocks stay the size Dask was told to keep them.

Dask is imported only here, and only once a Dask array has been seen:
:func:`is_dask_array` recognises one without importing anything.
"""

from __future__ import annotations

import json
import math
import sys
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["is_dask_array", "apply_lazy"]


def is_dask_array(obj: Any) -> bool:
    """True if ``obj`` is a ``dask.array.Array``; never imports Dask.

    A Dask array can only exist once ``dask.array`` has been imported by
    someone, so the check looks the class up in ``sys.modules``.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.lazy import is_dask_array
    >>> is_dask_array(np.zeros(3))
    False
    """
    module = sys.modules.get("dask.array")
    array_type = getattr(module, "Array", None)
    return array_type is not None and isinstance(obj, array_type)


def _validate(steps, image, *, channel_axis, dtype, nodata, tile_size):
    """Run the engine's own checks on a memory-free stand-in of ``image``.

    Returns the engine's :class:`~pixelmix.engine.Request` (its ``image`` and
    ``out`` are stand-ins): the channel axis, output dtype, compiled program
    and tile size the blocks will use.
    """
    from .engine import _normalize_axis, prepare, stand_in

    try:
        axis = _normalize_axis(channel_axis, image.ndim)
    except Exception:
        axis = None  # the engine reports it below, in its own words
    if axis is not None and math.isnan(image.shape[axis]):
        raise ValueError(
            f"the size of the channel axis {channel_axis} is unknown (NaN chunks); "
            f"call image.compute_chunk_sizes() first"
        )
    # Unknown (NaN) sizes of other axes do not matter to the checks.
    shape = tuple(1 if math.isnan(s) else int(s) for s in image.shape)
    return prepare(
        steps,
        stand_in(shape, np.dtype(image.dtype)),
        channel_axis=channel_axis,
        dtype=dtype,
        nodata=nodata,
        out=None,
        tile_size=tile_size,
        # The whole result is never allocated: a stand-in takes its place.
        allocate=lambda shape, dtype: stand_in(shape, dtype, writeable=True),
    )


def _merge_channel_chunks(x, axis: int):
    """``x`` with the channel axis in one chunk, blocks kept near ``array.chunk-size``."""
    import dask
    from dask.utils import parse_bytes

    if x.numblocks[axis] == 1:
        return x
    limit = parse_bytes(dask.config.get("array.chunk-size"))
    largest = math.prod(max(c, default=0) for i, c in enumerate(x.chunks) if i != axis)
    merged: dict[int, Any] = {axis: -1}
    if largest * x.shape[axis] * x.dtype.itemsize > limit:
        merged.update({i: "auto" for i in range(x.ndim) if i != axis})
    return x.rechunk(merged)


def _block_threads(n_blocks: int) -> int | None:
    """Numba threads for one block, or None to leave the setting alone.

    Dask already runs about one block per core at a time, so each block
    gets its share of Numba's threads instead of all of them (which would
    put cores x cores threads on the machine). Under the workqueue layer the
    engine runs one kernel at a time, so each gets every thread.
    """
    import numba

    from .engine import _threading_layer

    if _threading_layer() in (None, "workqueue"):
        return None
    return max(1, numba.config.NUMBA_NUM_THREADS // max(n_blocks, 1))


@contextmanager
def _numba_threads(n: int | None):
    # numba.set_num_threads is per calling thread: this changes nothing for
    # the other tasks running at the same time.
    if n is None:
        yield
        return
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(n, before))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _mix_block(block, *, steps, axis, out_dtype, nodata, tile_size, backend, n_blocks):
    """Mix one block with the engine (run by Dask, in a worker thread or process)."""
    from .engine import apply_steps

    threads = None if backend == "numpy" else _block_threads(n_blocks)
    with _numba_threads(threads):
        return apply_steps(
            steps,
            np.asarray(block),
            channel_axis=axis,
            dtype=out_dtype,
            nodata=nodata,
            tile_size=tile_size,
            backend=backend,
        )


def apply_lazy(
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
    """Mix a Dask array lazily: a Dask array whose blocks the engine computes.

    Called by :func:`pixelmix.engine.apply_steps` for Dask input; use
    :meth:`pixelmix.Mixer.apply` (or :func:`pixelmix.mix`, or
    :meth:`pixelmix.Program.apply`) rather than this function. The call is
    checked at once (a wrong channel count, dtype, axis, ``nodata``... raise
    here, not at compute time). Every block of the result equals the
    in-memory result on the same pixels, bit for bit.

    Parameters
    ----------
    steps : tuple
        The folded steps of a program (see :class:`pixelmix.Program`).
    image : dask.array.Array
        Channels on ``channel_axis``. Chunks of the channel axis are merged
        into one (see the module docstring).
    channel_axis, dtype, nodata, tile_size, backend
        As for :meth:`pixelmix.Mixer.apply`.
    out : None
        Must be None: the result is lazy. Write it into an array with
        ``dask.array.store(result, out)``.

    Returns
    -------
    dask.array.Array
        The image's shape with C replaced by K on ``channel_axis``; chunks
        as the (channel-merged) input's, with one chunk of K channels.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import pixelmix as pm
    >>> x = da.ones((4, 6, 3), dtype=np.uint16, chunks=(2, 3, 1))
    >>> y = pm.Mixer([[0.25, 0.25, 0.5]]).apply(x)
    >>> y.shape, y.dtype, y.chunks
    ((4, 6, 1), dtype('float32'), ((2, 2), (3, 3), (1,)))
    >>> float(y.sum().compute())
    24.0
    """
    if out is not None:
        raise TypeError(
            "out= cannot be used with a Dask array: the result is lazy; compute it "
            "with result.compute(), or write it into an array with "
            "dask.array.store(result, out)"
        )
    request = _validate(
        steps, image, channel_axis=channel_axis, dtype=dtype, nodata=nodata, tile_size=tile_size
    )
    from dask.base import tokenize

    from .ops import Program

    axis, n_out, out_dtype = request.axis, request.program.n_out, request.out_dtype
    x = _merge_channel_chunks(image, axis)
    chunks = x.chunks[:axis] + ((n_out,),) + x.chunks[axis + 1 :]
    # The name must be deterministic (same call, same keys): the program is
    # hashed through its JSON description, which is exact.
    program = json.dumps(Program(steps).to_dict(), sort_keys=True)
    name = "pixelmix-" + tokenize(x.name, program, out_dtype.str, request.nodata, tile_size, backend)
    return x.map_blocks(
        _mix_block,
        steps=tuple(steps),
        axis=axis,
        out_dtype=out_dtype,
        nodata=request.nodata,
        dtype=out_dtype,
        tile_size=tile_size,
        backend=backend,
        n_blocks=math.prod(x.numblocks),
        chunks=chunks,
        name=name,
        meta=np.empty((0,) * x.ndim, dtype=out_dtype),
    )
