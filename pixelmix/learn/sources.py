"""Where fits read their pixels: the one place that knows the kinds of ``data``.

A fit accepts an ndarray, a ``np.memmap``, a TIFF path, or a list of any of
these (fitted together as one data set). :func:`iter_blocks` turns each into
blocks of bounded size (about ``max_bytes``, all channels of a slab of
pixels) so no fit ever holds a whole file; :func:`describe` reports shapes
and channel names without reading pixels. A new kind of data (a Dask array)
needs a branch in :func:`_parts` and :func:`_part_blocks` only.

Functions
---------
``describe(data, channel_axis)``
    One :class:`Part` per array or file: shape, dtype, channel axis, names.
``iter_blocks(data, channel_axis, aux=(), max_bytes=...)``
    :class:`Block` objects covering every pixel once, with per-pixel
    companion images (``mask``, ``labels``, a paired target) cut to match.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = ["Part", "Block", "describe", "iter_blocks", "BLOCK_BYTES", "is_path"]

# Bytes of pixel data per block: large enough for BLAS to run at speed,
# small enough that a fit stays far below the ~300 MB it is allowed.
BLOCK_BYTES = 32 * 2**20


@dataclass(frozen=True)
class Part:
    """One array or file of the data."""

    source: Any  # the ndarray, or the path
    shape: tuple[int, ...]
    dtype: np.dtype
    channel_axis: int  # non-negative
    channel_names: tuple[str, ...] | None = None
    wavelengths: tuple[float, ...] | None = None

    @property
    def n_channels(self) -> int:
        return self.shape[self.channel_axis]

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The shape without the channel axis: what masks and labels must have."""
        return self.shape[: self.channel_axis] + self.shape[self.channel_axis + 1 :]

    @property
    def name(self) -> str:
        return str(self.source) if is_path(self.source) else f"array of shape {self.shape}"


@dataclass
class Block:
    """A slab of pixels, all channels, with its companion images cut to match."""

    values: np.ndarray
    channel_axis: int  # non-negative
    aux: tuple  # one entry per companion image: an ndarray (block's spatial shape) or None
    part: int  # index of the array or file it came from
    number: int  # running number over all blocks (seeds sample=)


def is_path(obj: Any) -> bool:
    return isinstance(obj, (str, os.PathLike))


def _is_list(data: Any) -> bool:
    return isinstance(data, (list, tuple))


def _axis(channel_axis, ndim: int, what: str) -> int:
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
        raise TypeError(f"channel_axis must be an integer, got {channel_axis!r}")
    if not -ndim <= channel_axis < ndim:
        raise np.exceptions.AxisError(
            f"channel_axis={channel_axis} is out of range for {what} with {ndim} dimensions"
        )
    return int(channel_axis) % ndim


def _tiff_part(path, channel_axis) -> Part:
    from ..tiff import open_stack

    # For TIFF files the channel axis comes from the file's axes metadata;
    # the default -1 (or None) means "ask the file".
    requested = None if channel_axis in (None, -1) else channel_axis
    with open_stack(path, channel_axis=requested) as stack:
        return Part(
            source=path,
            shape=tuple(stack.shape),
            dtype=np.dtype(stack.dtype),
            channel_axis=int(stack.channel_axis),
            channel_names=None if stack.channel_names is None else tuple(stack.channel_names),
            wavelengths=None if stack.wavelengths is None else tuple(float(w) for w in stack.wavelengths),
        )


def _parts(data, channel_axis) -> list[Part]:
    items = list(data) if _is_list(data) else [data]
    if not items:
        raise ValueError("data is an empty list; pass at least one array or TIFF path")
    parts = []
    for item in items:
        if is_path(item):
            parts.append(_tiff_part(item, channel_axis))
            continue
        if _is_list(item):
            raise TypeError("data must be an array, a path, or a flat list of arrays and paths")
        from ..lazy import is_dask_array

        # A Dask array stays lazy: its chunks are read by learn/chunked.py.
        if not isinstance(item, np.ndarray) and not is_dask_array(item):
            if hasattr(item, "__array__") and not hasattr(item, "dask"):
                item = np.asarray(item)
            else:
                raise TypeError(
                    f"cannot fit on a {type(item).__name__}; pass a NumPy array, a np.memmap, "
                    f"a TIFF path or a list of them"
                )
        if item.ndim < 1:
            raise ValueError("data is a scalar; it needs at least a channel axis")
        if item.dtype.kind not in "iuf":
            raise TypeError(f"data of dtype {item.dtype} cannot be fitted; pass numeric channel values")
        axis = _axis(-1 if channel_axis is None else channel_axis, item.ndim, "data")
        parts.append(Part(source=item, shape=item.shape, dtype=item.dtype, channel_axis=axis))
    counts = {p.n_channels for p in parts}
    if len(counts) > 1:
        listing = ", ".join(f"{p.name}: {p.n_channels}" for p in parts)
        raise ValueError(f"all arrays/files must have the same number of channels, got {listing}")
    return parts


def describe(data, channel_axis=-1) -> list[Part]:
    """Shapes, dtypes, channel axes and names of the data's parts, reading no pixels.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.sources import describe
    >>> [p.spatial_shape for p in describe([np.zeros((4, 5, 3)), np.zeros((2, 3))])]
    [(4, 5), (2,)]
    """
    return _parts(data, channel_axis)


def per_part(name: str, image, n_parts: int) -> list:
    """A companion image (mask, labels, target) as one image per part of the data.

    ``None`` stands for none in every part; with several parts ``image``
    must be a list of as many images.
    """
    if image is None:
        return [None] * n_parts
    if n_parts > 1 or _is_list(image):
        if not _is_list(image) or len(image) != n_parts:
            raise ValueError(
                f"data has {n_parts} arrays/files, so {name} must be a list of "
                f"{n_parts} images, one per array/file"
            )
        return list(image)
    return [image]


def _split_aux(aux, parts: list[Part]) -> list[list]:
    """Per part, the companion images (checked against the part's spatial shape)."""
    per_part_aux: list[list] = [[] for _ in parts]
    for name, image in aux:
        images = per_part(name, image, len(parts))
        for i, (part, img) in enumerate(zip(parts, images)):
            if img is None:
                per_part_aux[i].append(None)
                continue
            if not isinstance(img, np.ndarray):
                img = np.asarray(img)
            # Trailing axes beyond the spatial shape are allowed (a paired
            # target image with its channels moved last).
            if tuple(img.shape[: len(part.spatial_shape)]) != part.spatial_shape:
                raise ValueError(
                    f"{name} has shape {tuple(img.shape)} but the pixels of {part.name} have "
                    f"shape {part.spatial_shape} (its shape without the channel axis "
                    f"{part.channel_axis})"
                )
            per_part_aux[i].append(img)
    return per_part_aux


def slab_indices(shape: tuple[int, ...], axis: int, itemsize: int, max_bytes: int) -> Iterator[tuple]:
    """Index tuples cutting an array into slabs of about ``max_bytes``, all channels each.

    Slabs run along the outermost spatial axis whose single index still fits
    in ``max_bytes``; the axes outside it are stepped one index at a time.
    """
    spatial = [ax for ax in range(len(shape)) if ax != axis]
    if not spatial:
        yield (slice(None),) * len(shape)
        return
    pixel_bytes = shape[axis] * itemsize
    split = len(spatial) - 1
    for j in range(len(spatial)):
        inner = math.prod(shape[s] for s in spatial[j + 1 :])
        if inner * pixel_bytes <= max_bytes:
            split = j
            break
    ax = spatial[split]
    inner = math.prod(shape[s] for s in spatial[split + 1 :])
    step = max(1, max_bytes // max(1, inner * pixel_bytes))
    outer_axes = spatial[:split]
    for outer in np.ndindex(*(shape[s] for s in outer_axes)):
        for start in range(0, shape[ax], step):
            index = [slice(None)] * len(shape)
            for s, i in zip(outer_axes, outer):
                index[s] = slice(i, i + 1)
            index[ax] = slice(start, min(start + step, shape[ax]))
            yield tuple(index)


def _part_blocks(part: Part, max_bytes: int) -> Iterator[tuple[tuple, np.ndarray, int]]:
    """``(index, values, channel_axis)`` for each slab of one part."""
    if is_path(part.source):
        from ..tiff import open_stack

        with open_stack(part.source, channel_axis=part.channel_axis) as stack:
            for index, values in stack.iter_slabs(max_bytes=max_bytes):
                yield tuple(index), np.asarray(values), int(stack.channel_axis)
        return
    array = part.source
    for index in slab_indices(array.shape, part.channel_axis, array.dtype.itemsize, max_bytes):
        # np.asarray: a memmap slab becomes a plain view, read in place.
        yield index, np.asarray(array[index]), part.channel_axis


def _aux_index(index: tuple, axis: int) -> tuple:
    return tuple(s for i, s in enumerate(index) if i != axis)


def iter_blocks(
    data,
    channel_axis=-1,
    *,
    aux: Sequence[tuple[str, Any]] = (),
    max_bytes: int = BLOCK_BYTES,
    parts: list[Part] | None = None,
) -> Iterator[Block]:
    """Blocks of bounded size covering every pixel of ``data`` once.

    Parameters
    ----------
    data : ndarray, np.memmap, str or path, or list of these
        Channels on ``channel_axis``; for TIFF files the axis comes from the
        file's metadata unless ``channel_axis`` is given (other than -1).
    channel_axis : int
        The channel axis of array data (negative counts from the end).
    aux : sequence of (name, image)
        Companion per-pixel images (a mask, labels, a paired target image),
        each with the data's spatial shape, optionally followed by more axes
        (a list of them for list data), or None. They are cut like the data
        along the spatial axes; ``name`` appears in errors.
    max_bytes : int
        About how many bytes of pixel data each block holds.
    parts : list of Part, optional
        :func:`describe`'s result when the caller already has it.

    Yields
    ------
    Block

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.sources import iter_blocks
    >>> x = np.zeros((100, 10, 3), dtype=np.uint16)
    >>> [b.values.shape for b in iter_blocks(x, max_bytes=2400)]
    [(40, 10, 3), (40, 10, 3), (20, 10, 3)]
    """
    parts = _parts(data, channel_axis) if parts is None else parts
    aux_per_part = _split_aux(list(aux), parts)
    number = 0
    for i, part in enumerate(parts):
        for index, values, axis in _part_blocks(part, max_bytes):
            cut = _aux_index(index, axis)
            companions = tuple(
                None if img is None else np.asarray(img[cut]) for img in aux_per_part[i]
            )
            yield Block(values=values, channel_axis=axis, aux=companions, part=i, number=number)
            number += 1
