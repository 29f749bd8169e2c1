"""Fits on Dask arrays: each chunk's statistics on the workers, merged in a tree.

Every fit is *block statistics -> merge -> solve* (see
:mod:`pixelmix.learn.gather`). :func:`merge_chunks` is the Dask form of
steps 1 and 2: it is handed a :class:`~pixelmix.learn.source.Source` and
the fit's own block function, runs that function on every chunk (all
channels of a block of pixels, with the matching blocks of the mask,
labels or target) where the chunk lives, and merges the partial statistics
pairwise up a tree with fan-in ``split_every``, so only statistics (O(C^2)
numbers each) ever travel and the client receives one result. Step 3, the
solve, runs here as for any other data.

Same result as the in-memory fit: each part is cut along the very slabs
the in-memory fit reads (:meth:`~pixelmix.learn.source.Part.plan`; a
rechunk that is a no-op when a Dask array is already chunked that way),
and the chunks are numbered in the same order, so each block's statistics
are bit for bit the in-memory fit's ones, MNF's neighbour pairs and
``sample=``'s subsets included. Only the merge differs: a tree instead of
a running sum. Chan, Golub and LeVeque's pairwise update is exact in real
arithmetic for any grouping, so the merged mean and scatter equal the
in-memory ones to float64 rounding (relative differences of order 1e-16
per merge level), not bit for bit, and the solved mixer inherits that
(times the condition of the eigenproblem).

Parts that are not Dask arrays (TIFF paths, NumPy arrays listed together
with Dask arrays) are read through the :class:`~pixelmix.learn.source.Part`
itself, each chunk by the task that needs it: this module reads nothing on
its own. Dask is imported when a Dask fit runs, not before.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Sequence

import numpy as np

from .. import config
from ..backends.dask import is_dask_array
from ..plan import SlabPlan
from .source import Part, Source, make_block, tiff_part
from .stats import merge

__all__ = ["merge_chunks", "gather_chunks", "tiff_array", "SPLIT_EVERY"]

# Fan-in of the merge tree: statistics are small, so a wide tree keeps it shallow.
SPLIT_EVERY = 8


def tiff_array(path, *, channel_axis: int | None = None, chunk_bytes: int | None = None):
    """A TIFF stack as a lazy Dask array, all channels in each chunk.

    Chunks are read by the tasks that use them (memory-mapped when the file
    is uncompressed and contiguous, else decoded through tifffile's zarr
    store), on whichever worker runs them, so the path must be valid there.

    Parameters
    ----------
    path : path-like
    channel_axis : int, optional
        Overrides the channel axis read from the file's axes.
    chunk_bytes : int, optional
        About how many bytes each chunk holds (default: the fits' block
        size, ``config.FIT_BLOCK_BYTES``); chunks hold whole tiles or strips.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile
    >>> from pixelmix.learn.chunked import tiff_array
    >>> path = os.path.join(tempfile.mkdtemp(), "stack.tif")
    >>> tifffile.imwrite(path, np.ones((3, 64, 64), np.uint16), photometric="minisblack")
    >>> x = tiff_array(path, chunk_bytes=8192)
    >>> x.shape, x.chunksize, int(x.sum().compute())
    ((3, 64, 64), (3, 21, 64), 12288)
    """
    part = tiff_part(path, channel_axis)
    plan = part.plan(config.FIT_BLOCK_BYTES if chunk_bytes is None else chunk_bytes)
    return _as_dask(part, _grid(part.shape, plan)[0])


def _grid(shape: tuple[int, ...], plan: SlabPlan) -> tuple[tuple[tuple[int, ...], ...], list[tuple[int, ...]]]:
    """Dask chunks whose blocks are the slabs of ``plan``, and each slab's block coordinates.

    The coordinates come in the plan's order: the order the in-memory fit
    reads (and numbers) its blocks.
    """
    starts = [sorted({s[axis].start for s in plan}) for axis in range(len(shape))]
    chunks = tuple(
        tuple(b - a for a, b in zip(edges, edges[1:] + [n])) for edges, n in zip(starts, shape)
    )
    if math.prod(len(c) for c in chunks) != len(plan):
        raise AssertionError(f"slab plan is not a grid: {plan[:3]}...")
    position = [{start: k for k, start in enumerate(edges)} for edges in starts]
    coords = [tuple(position[axis][s[axis].start] for axis in range(len(shape))) for s in plan]
    return chunks, coords


def _file_token(path) -> str:
    from dask.base import tokenize

    st = os.stat(path)
    return tokenize(os.path.abspath(path), st.st_size, st.st_mtime_ns)


def _as_dask(part: Part, chunks):
    """A part's pixels as a Dask array with ``chunks``; anything but Dask is read through ``part``."""
    import dask.array as da

    if part.is_lazy:
        return part.source.rechunk(chunks)
    # A file gets a name from its identity, so two graphs reading it share tasks;
    # an in-memory array a random one (hashing its pixels would read them all).
    name = f"pixelmix-tiff-{_file_token(part.source)}" if part.is_file else False
    return da.from_array(
        part, chunks=chunks, asarray=True, lock=False, name=name,
        meta=np.empty((0,) * part.ndim, part.dtype),
    )


def _cut_like(image, x, axis: int):
    """A companion image as a Dask array cut like ``x``'s pixels (trailing axes whole)."""
    import dask.array as da

    spatial = tuple(c for i, c in enumerate(x.chunks) if i != axis)
    chunks = spatial + tuple((n,) for n in image.shape[len(spatial):])
    if is_dask_array(image):
        return image.rechunk(chunks)
    return da.from_array(image, chunks=chunks, name=False)


def _block_statistics(block_fn, values, axis: int, aux: tuple, part: int, number: int):
    """Step 1 on one chunk (runs on a worker)."""
    return block_fn(make_block(values, axis, aux, part, number))


def merge_chunks(
    source: Source,
    block_fn: Callable[..., Any],
    *,
    max_bytes: int | None = None,
    split_every: int = SPLIT_EVERY,
):
    """Merge ``block_fn(block)`` over every chunk of ``source``: map, then tree-reduce.

    Runs on Dask's current scheduler (a ``distributed.Client`` when one is
    active, else threads).

    Parameters
    ----------
    source : Source
        The data and its companion images (NumPy or Dask).
    block_fn : callable
        ``block_fn(Block) -> statistics`` with a ``merge`` method (step 1).
    max_bytes : int, optional
        About how many bytes of pixels each block holds (default
        ``config.FIT_BLOCK_BYTES``, the in-memory fit's, so the blocks are the same).
    split_every : int
        Fan-in of the merge tree.

    Returns
    -------
    The merged statistics.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from pixelmix.learn.chunked import merge_chunks
    >>> from pixelmix.learn.source import Source
    >>> from pixelmix.learn.stats import block_moments
    >>> x = da.from_array(np.arange(24.0).reshape(6, 2, 2), chunks=(2, 2, 1))
    >>> m = merge_chunks(Source(x), lambda b: block_moments(b.values, b.channel_axis))
    >>> m.count, m.mean.tolist()
    (12, [11.0, 12.0])
    """
    from dask import delayed

    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}")
    max_bytes = config.FIT_BLOCK_BYTES if max_bytes is None else max_bytes
    tasks = []
    number = 0
    for i, part in enumerate(source.parts):
        plan = part.plan(max_bytes)
        if not len(plan):
            continue
        axis = part.channel_axis
        chunks, coords = _grid(part.shape, plan)
        x = _as_dask(part, chunks)
        blocks = x.to_delayed()
        aux = [None if img is None else _cut_like(img, x, axis).to_delayed() for img in source.companions[i]]
        for index in coords:
            spatial = index[:axis] + index[axis + 1 :]
            aux_blocks = tuple(
                None if a is None else a[spatial + (0,) * (a.ndim - len(spatial))] for a in aux
            )
            tasks.append(
                delayed(_block_statistics, pure=False)(block_fn, blocks[index], axis, aux_blocks, i, number)
            )
            number += 1
    if not tasks:
        raise ValueError("nothing to merge: the data held no blocks (is it empty?)")
    while len(tasks) > 1:
        tasks = [
            delayed(merge, pure=False)(tasks[j : j + split_every])
            if len(tasks[j : j + split_every]) > 1 else tasks[j]
            for j in range(0, len(tasks), split_every)
        ]
    return tasks[0].compute()


def gather_chunks(
    data,
    channel_axis,
    block_fn: Callable[..., Any],
    *,
    aux: Sequence[tuple[str, Any]] = (),
    parts: list[Part] | None = None,
    max_bytes: int | None = None,
    split_every: int = SPLIT_EVERY,
):
    """:func:`merge_chunks` over ``Source(data, channel_axis, aux=aux, parts=parts)``.

    The Dask counterpart of :func:`pixelmix.learn.gather.gather`, with the
    same arguments (any data, Dask or not, is read in Dask tasks).

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from pixelmix.learn.chunked import gather_chunks
    >>> from pixelmix.learn.stats import block_moments
    >>> x = da.from_array(np.arange(24.0).reshape(6, 2, 2), chunks=(2, 2, 1))
    >>> m = gather_chunks(x, -1, lambda b: block_moments(b.values, b.channel_axis))
    >>> m.count, m.mean.tolist()
    (12, [11.0, 12.0])
    """
    source = Source(data, channel_axis, aux=aux, parts=parts)
    return merge_chunks(source, block_fn, max_bytes=max_bytes, split_every=split_every)
