"""Per-pixel channel functions over dask tiles, for any change of channel count.

``skimage.util.apply_parallel`` maps a function over dask chunks with
``map_overlap`` and tells dask that every output chunk has the shape of its
input chunk. That holds for RGB -> RGB conversions (``rgb2hed``,
``rgb2xyz``, ... work there when called with ``channel_axis`` and
``dtype``), but not when the function changes the number of channels: a
C -> K mix returns a dask array whose declared shape is wrong (computing it
eagerly happens to concatenate the right blocks), and ``rgb2gray``, which
drops the channel axis, fails with an IndexError. Without ``dtype`` every
colour function fails, because dask infers the dtype by calling it on a
one-element array that has one channel instead of three.

:func:`apply_tiled` is the tiled equivalent for per-pixel functions: it
probes the function once on a single zero pixel of the right channel
count, so it knows the output channel count (or that the channel axis is
dropped) and dtype, and declares exactly those output chunks to dask.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["apply_tiled"]


def apply_tiled(
    function: Callable[..., np.ndarray],
    array,
    chunks=None,
    *,
    channel_axis: int = -1,
    extra_arguments: tuple = (),
    extra_keywords: dict[str, Any] | None = None,
    compute: bool | None = None,
):
    """Apply a per-pixel channel function to an image tile by tile, with dask.

    Like ``skimage.util.apply_parallel`` with ``depth=0``, for functions that
    change the number of channels (C -> K) or remove the channel axis
    (``rgb2gray``): the result has the right shape, chunks and dtype, lazily
    too. The channel axis is never split: every tile holds whole pixels.

    Parameters
    ----------
    function : callable
        ``function(tile, *extra_arguments, **extra_keywords)`` returns an
        array with the tile's shape, except K channels on ``channel_axis``,
        or with ``channel_axis`` removed. It must treat every pixel on its
        own (no neighbourhood): every function of :mod:`pixelmix_skimage`
        does, and so do ``pixelmix.Mixer`` and ``pixelmix.Program``.
    array : ndarray or dask array
        The image, with its channels on ``channel_axis``.
    chunks : int, tuple or dict, optional
        Tile shape for a NumPy input (dask's ``chunks`` syntax; a dask input
        keeps its own chunks unless this is given). The channel axis is
        always one chunk. Default: dask's automatic chunking.
    channel_axis : int, optional
        The axis of ``array`` that holds the channels. ``function`` is not
        told about it: pass ``extra_keywords={"channel_axis": ...}`` when it
        needs to know.
    extra_arguments : tuple, optional
        Positional arguments passed to ``function`` after the tile.
    extra_keywords : dict, optional
        Keyword arguments passed to ``function``.
    compute : bool, optional
        True returns a NumPy array, False a lazy dask array. Default: NumPy
        for NumPy input, lazy for dask input.

    Returns
    -------
    ndarray or dask array
        The result, assembled from the tiles.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix_skimage import apply_tiled, rgb2gray
    >>> rgb = np.zeros((64, 48, 3), dtype=np.uint8)
    >>> apply_tiled(rgb2gray, rgb, chunks=(32, 32, 3)).shape
    (64, 48)
    """
    import dask.array as da

    keywords = dict(extra_keywords or {})
    if compute is None:
        compute = not isinstance(array, da.Array)
    ndim = np.ndim(array)
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
        raise TypeError(f"channel_axis must be an integer, got {channel_axis!r}")
    if not -ndim <= channel_axis < ndim:
        raise np.exceptions.AxisError(channel_axis, ndim, "channel_axis")
    axis = int(channel_axis) % ndim

    if isinstance(array, da.Array):
        darr = array if chunks is None else array.rechunk(chunks)
    else:
        darr = da.from_array(np.asarray(array), chunks="auto" if chunks is None else chunks)
    darr = darr.rechunk({axis: -1})

    # One zero pixel with the real channel count tells the output's channels and dtype.
    probe_shape = tuple(darr.shape[i] if i == axis else 1 for i in range(ndim))
    probe = np.asarray(function(np.zeros(probe_shape, darr.dtype), *extra_arguments, **keywords))
    if probe.ndim == ndim:
        out_chunks = tuple((probe.shape[axis],) if i == axis else c for i, c in enumerate(darr.chunks))
        drop_axis: list[int] = []
    elif probe.ndim == ndim - 1:
        out_chunks = tuple(c for i, c in enumerate(darr.chunks) if i != axis)
        drop_axis = [axis]
    else:
        raise ValueError(
            f"function turned a {ndim}-D tile into a {probe.ndim}-D array; apply_tiled needs "
            f"the same dimensions (K channels on channel_axis) or the channel axis removed"
        )

    def run_tile(tile):
        return function(tile, *extra_arguments, **keywords)

    result = darr.map_blocks(
        run_tile,
        dtype=probe.dtype,
        chunks=out_chunks,
        drop_axis=drop_axis,
        meta=np.empty((0,) * probe.ndim, dtype=probe.dtype),
    )
    return result.compute() if compute else result
