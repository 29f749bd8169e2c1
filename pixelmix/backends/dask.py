"""The Dask backend: lazy mixing of Dask arrays, one block at a time.

:func:`apply_lazy` gets a call already validated by :mod:`pixelmix.dispatch`
(on a memory-free stand-in of the array) and a per-block runner, and returns
a Dask array of the right shape, dtype and chunks whose blocks the runner
computes when the result is computed. It never imports the dispatcher: the
runner is handed in.

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

import math
import sys
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
    >>> from pixelmix.backends.dask import is_dask_array
    >>> is_dask_array(np.zeros(3))
    False
    """
    module = sys.modules.get("dask.array")
    array_type = getattr(module, "Array", None)
    return array_type is not None and isinstance(obj, array_type)


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

    from .cpu import threading_layer

    if threading_layer() in (None, "workqueue"):
        return None
    return max(1, numba.config.NUMBA_NUM_THREADS // max(n_blocks, 1))


def _mix_block(block, *, run_block, n_blocks, uses_numba):
    """Mix one block (run by Dask, in a worker thread or process)."""
    from .cpu import numba_threads

    # The threading layer is the worker's, known only there. The thread count is per
    # calling thread: this changes nothing for the other tasks running at the same time.
    with numba_threads(_block_threads(n_blocks) if uses_numba else None):
        return run_block(np.asarray(block))


def apply_lazy(request, image, run_block, *, token: str, uses_numba: bool = True):
    """Mix a Dask array lazily: a Dask array whose blocks ``run_block`` computes.

    Called by :func:`pixelmix.dispatch.apply_steps` for Dask input; use
    :meth:`pixelmix.Mixer.apply` (or :func:`pixelmix.mix`, or
    :meth:`pixelmix.Program.apply`) rather than this function. Every block
    of the result equals the in-memory result on the same pixels, bit for bit.

    Parameters
    ----------
    request : pixelmix.plan.Request
        The validated call (its image and out are stand-ins): channel axis,
        output dtype and program.
    image : dask.array.Array
        Channels on ``request.axis``. Chunks of the channel axis are merged
        into one (see the module docstring).
    run_block : callable
        ``run_block(ndarray) -> ndarray``: mixes one in-memory block with the
        channels on ``request.axis``; it must pickle (a ``functools.partial``
        of a module-level function) for distributed schedulers.
    token : str
        A deterministic description of the call (the program's JSON and the
        options), so that the same call gives the same task keys.
    uses_numba : bool
        Whether the runner uses Numba's parallel kernels (then each block
        gets its share of Numba's threads).

    Returns
    -------
    dask.array.Array
        The image's shape with C replaced by K on the channel axis; chunks
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
    from dask.base import tokenize

    axis, n_out, out_dtype = request.axis, request.program.n_out, request.out_dtype
    x = _merge_channel_chunks(image, axis)
    chunks = x.chunks[:axis] + ((n_out,),) + x.chunks[axis + 1 :]
    n_blocks = math.prod(x.numblocks)
    return x.map_blocks(
        _mix_block,
        run_block=run_block,
        n_blocks=n_blocks,
        uses_numba=uses_numba,
        dtype=out_dtype,
        chunks=chunks,
        name="pixelmix-" + tokenize(x.name, token),
        meta=np.empty((0,) * x.ndim, dtype=out_dtype),
    )
