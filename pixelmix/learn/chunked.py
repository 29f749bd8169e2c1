"""Fits on Dask arrays: each chunk's statistics on the workers, merged in a tree.

Every fit is *block statistics -> merge -> solve* (see
:mod:`pixelmix.learn.gather`). :func:`gather_chunks` is the Dask form of
steps 1 and 2: the fit's own block function runs on every chunk (all
channels of a block of pixels, with the matching blocks of the mask,
labels or target), where the chunk lives, and the partial statistics are
merged pairwise up a tree with fan-in ``split_every``, so only statistics
(O(C^2) numbers each) ever travel and the client receives one result.
Step 3, the solve, runs here as for any other data.

Same result as the in-memory fit: the chunks are first cut to the very
blocks the in-memory fit reads (its slabs of about ``max_bytes``, all
channels each; no-op when the array is already chunked that way), and
numbered in the same order, so each block's statistics are bit for bit the
in-memory fit's ones, MNF's neighbour pairs and ``sample=``'s subsets
included. Only the merge differs: a tree instead of a running sum. Chan,
Golub and LeVeque's pairwise update is exact in real arithmetic for any
grouping, so the merged mean and scatter equal the in-memory ones to
float64 rounding (relative differences of order 1e-16 per merge level),
not bit for bit, and the solved mixer inherits that (times the condition
of the eigenproblem).

TIFF paths and NumPy arrays listed together with Dask arrays are read as
Dask arrays too (a TIFF through :func:`tiff_array`, each chunk read by the
task that needs it).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["gather_chunks", "has_dask_array", "tiff_array"]

SPLIT_EVERY = 8


def has_dask_array(data) -> bool:
    """True if ``data`` is a Dask array or a list holding one (never imports Dask)."""
    from ..lazy import is_dask_array

    items = data if isinstance(data, (list, tuple)) else [data]
    return any(is_dask_array(item) for item in items)


class _TiffRegions:
    """A TIFF stack as an array-like that Dask slices: each read opens the file.

    It holds only the path and the layout, so it pickles to any worker that
    sees the same file system.
    """

    def __init__(self, path, shape, dtype, channel_axis):
        self.path = str(path)
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.channel_axis = channel_axis

    def __getitem__(self, index):
        from ..tiff import open_stack

        index = index if isinstance(index, tuple) else (index,)
        index = index + (slice(None),) * (self.ndim - len(index))
        with open_stack(self.path, channel_axis=self.channel_axis) as stack:
            return np.array(stack.read(index))


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
        About how many bytes each chunk holds (default: the fits' block size).

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
    import dask.array as da

    from ..tiff import open_stack, plan_slabs
    from .sources import BLOCK_BYTES

    with open_stack(path, channel_axis=channel_axis) as stack:
        regions = _TiffRegions(path, stack.shape, stack.dtype, stack.channel_axis)
        # The slabs the in-memory fit reads (whole tiles and strips each).
        plan = plan_slabs(stack.shape, stack.channel_axis, stack.dtype.itemsize,
                          chunk_bytes or BLOCK_BYTES, stack.chunk_shape())
    return da.from_array(
        regions,
        chunks=_grid_chunks(regions.shape, plan),
        asarray=True,
        lock=False,
        name=f"pixelmix-tiff-{_file_token(path)}",
        meta=np.empty((0,) * regions.ndim, regions.dtype),
    )


def _grid_chunks(shape, plan) -> tuple[tuple[int, ...], ...]:
    """Dask chunks whose blocks, in C order, are the slabs of ``plan`` (a regular grid)."""
    chunks = []
    for axis, n in enumerate(shape):
        bounds = sorted({(s[axis].start or 0, n if s[axis].stop is None else s[axis].stop) for s in plan})
        chunks.append(tuple(stop - start for start, stop in bounds) or (n,))
    if math.prod(len(c) for c in chunks) != max(len(plan), 1):
        raise AssertionError(f"slab plan is not a grid: {plan[:3]}...")
    return tuple(chunks)


def _file_token(path) -> str:
    import os

    from dask.base import tokenize

    st = os.stat(path)
    return tokenize(os.path.abspath(path), st.st_size, st.st_mtime_ns)


def _as_dask(part, max_bytes: int):
    """A part's pixels as a Dask array chunked into the in-memory fit's slabs."""
    import dask.array as da

    from ..lazy import is_dask_array
    from .sources import is_path, slab_indices

    source = part.source
    if is_path(source):
        return tiff_array(source, channel_axis=part.channel_axis, chunk_bytes=max_bytes)
    if any(math.isnan(n) for n in part.shape):
        raise ValueError(
            f"data of shape {part.shape} has unknown chunk sizes; call "
            f"data.compute_chunk_sizes() before fitting"
        )
    plan = list(slab_indices(part.shape, part.channel_axis, part.dtype.itemsize, max_bytes))
    chunks = _grid_chunks(part.shape, plan)
    if is_dask_array(source):
        return source.rechunk(chunks)
    return da.from_array(source, chunks=chunks)


def _companion(image, x, axis: int, name: str, part):
    """A companion image as a Dask array cut like ``x``'s pixels (trailing axes whole)."""
    import dask.array as da

    from ..lazy import is_dask_array

    spatial = tuple(c for i, c in enumerate(x.chunks) if i != axis)
    if not is_dask_array(image) and not isinstance(image, np.ndarray):
        image = np.asarray(image)
    if tuple(image.shape[: len(spatial)]) != part.spatial_shape:
        raise ValueError(
            f"{name} has shape {tuple(image.shape)} but the pixels of {part.name} have shape "
            f"{part.spatial_shape} (its shape without the channel axis {part.channel_axis})"
        )
    chunks = spatial + tuple((n,) for n in image.shape[len(spatial):])
    if is_dask_array(image):
        return image.rechunk(chunks)
    return da.from_array(image, chunks=chunks)


def _companions(aux, parts) -> list[list]:
    """Per part, the companion images (``None`` where there is none)."""
    from .sources import per_part

    rows: list[list] = [[] for _ in parts]
    for name, image in aux:
        for row, img in zip(rows, per_part(name, image, len(parts))):
            row.append((name, img))
    return rows


def _block_statistics(block_fn, values, axis: int, aux: tuple, part: int, number: int):
    """Step 1 on one chunk (runs on a worker)."""
    from .sources import Block

    companions = tuple(None if a is None else np.asarray(a) for a in aux)
    return block_fn(Block(values=np.asarray(values), channel_axis=axis, aux=companions,
                          part=part, number=number))


def _merge_all(parts: list):
    from .stats import merge

    return merge(parts)


def gather_chunks(
    data,
    channel_axis,
    block_fn: Callable[..., Any],
    *,
    aux: Sequence[tuple[str, Any]] = (),
    parts=None,
    max_bytes: int | None = None,
    split_every: int = SPLIT_EVERY,
):
    """Merge ``block_fn(block)`` over every chunk of Dask ``data``: map, then tree-reduce.

    The Dask counterpart of :func:`pixelmix.learn.gather.gather`, with the
    same arguments; it runs on Dask's current scheduler (a
    ``distributed.Client`` when one is active, else threads).

    Parameters
    ----------
    data : dask.array.Array, or a list of Dask arrays, arrays and TIFF paths
    channel_axis : int
    block_fn : callable
        ``block_fn(Block) -> statistics`` with a ``merge`` method (step 1).
    aux : sequence of (name, image)
        Companion images (NumPy or Dask) with the data's spatial shape,
        possibly followed by more axes (a paired target's channels).
    parts : list of Part, optional
        :func:`pixelmix.learn.sources.describe`'s result.
    max_bytes : int, optional
        About how many bytes of pixels each block holds (default: the
        in-memory fit's block size, so the blocks are the same).
    split_every : int
        Fan-in of the merge tree.

    Returns
    -------
    The merged statistics.

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
    from dask import delayed

    from .sources import BLOCK_BYTES, describe

    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}")
    parts = describe(data, channel_axis) if parts is None else parts
    companions = _companions(list(aux), parts)
    tasks = []
    number = 0
    for i, part in enumerate(parts):
        axis = part.channel_axis
        x = _as_dask(part, max_bytes or BLOCK_BYTES)
        extra = [
            None if img is None else _companion(img, x, axis, name, part).to_delayed()
            for name, img in companions[i]
        ]
        blocks = x.to_delayed()
        for index in np.ndindex(*x.numblocks):
            spatial = index[:axis] + index[axis + 1 :]
            aux_blocks = tuple(
                None if e is None else e[spatial + (0,) * (e.ndim - len(spatial))] for e in extra
            )
            tasks.append(
                delayed(_block_statistics, pure=False)(block_fn, blocks[index], axis, aux_blocks, i, number)
            )
            number += 1
    if not tasks:
        raise ValueError("nothing to merge: the data held no blocks (is it empty?)")
    while len(tasks) > 1:
        tasks = [
            delayed(_merge_all, pure=False)(tasks[j : j + split_every])
            if len(tasks[j : j + split_every]) > 1 else tasks[j]
            for j in range(0, len(tasks), split_every)
        ]
    return tasks[0].compute()
