"""Where fits read their pixels: the one place that knows the kinds of ``data``.

A fit accepts an ndarray, a ``np.memmap``, a TIFF path, a Dask array, or a
list of any of these (fitted together as one data set), with per-pixel
companion images: a mask, labels, a paired target. :class:`Source` checks
them all once, reading no pixels, and cuts them into the same blocks for
both drivers of a fit (:mod:`pixelmix.learn.gather`):

- in memory, :meth:`Source.blocks` streams :class:`Block` objects of about
  ``config.FIT_BLOCK_BYTES`` (all channels of a slab of pixels), so no fit
  ever holds a whole file;
- on Dask, :mod:`pixelmix.learn.chunked` cuts each part along the same
  :meth:`Part.plan` and reads what is not yet a Dask array through the
  :class:`Part` itself (an array-like that Dask slices), then hands each
  chunk to :func:`make_block`, as the in-memory stream does.

TIFF files are read through the io layer's
:func:`pixelmix.io.read.open_stack` only. Dtypes no fit can take (complex,
bool, ...) are refused here, before any pixel is read, with
:func:`pixelmix.plan.dtype_problem`'s message. A new kind of data needs a
branch in :func:`describe` and in :class:`Part`'s reading methods, nowhere
else.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from .. import config
from ..backends.dask import is_dask_array
from ..io.read import open_stack
from ..plan import SlabPlan, dtype_problem, normalize_axis, plan_slabs

__all__ = ["Source", "Part", "Block", "describe", "iter_blocks", "tiff_part", "make_block", "is_path"]


def is_path(obj: Any) -> bool:
    """True for a str or path-like: a TIFF file to read."""
    return isinstance(obj, (str, os.PathLike))


def _is_list(data: Any) -> bool:
    return isinstance(data, (list, tuple))


@dataclass(frozen=True, eq=False)
class Part:
    """One array or file of the data: its layout, and how to read a region of it.

    It is also the array-like that Dask reads a TIFF file or an in-memory
    array through (``shape``, ``dtype``, ``ndim``, ``part[index]``): a TIFF
    part holds only the path, so it pickles to any worker that sees the
    same file system.
    """

    source: Any  # the ndarray, the Dask array, or the path
    shape: tuple[int, ...]
    dtype: np.dtype
    channel_axis: int  # non-negative
    channel_names: tuple[str, ...] | None = None
    wavelengths: tuple[float, ...] | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def n_channels(self) -> int:
        return self.shape[self.channel_axis]

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The shape without the channel axis: what masks and labels must have."""
        return self.shape[: self.channel_axis] + self.shape[self.channel_axis + 1 :]

    @property
    def name(self) -> str:
        return str(self.source) if self.is_file else f"array of shape {self.shape}"

    @property
    def is_file(self) -> bool:
        return is_path(self.source)

    @property
    def is_lazy(self) -> bool:
        """A Dask array: its chunks are read by the tasks that need them."""
        return is_dask_array(self.source)

    def plan(self, max_bytes: int) -> SlabPlan:
        """The slabs this part is read in: about ``max_bytes`` each, whole tiles of a file."""
        chunks = None
        if self.is_file:
            with open_stack(self.source, channel_axis=self.channel_axis) as stack:
                chunks = stack.chunk_shape()
        return plan_slabs(self.shape, self.channel_axis, self.dtype.itemsize, max_bytes, chunks)

    def slabs(self, max_bytes: int) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
        """``(index, values)`` for each slab of :meth:`plan`, in order, read as they are needed."""
        if self.is_file:
            with open_stack(self.source, channel_axis=self.channel_axis) as stack:
                # The reader's own slab loop: it reads the next slab ahead.
                for index, values in stack.iter_slabs(max_bytes=max_bytes):
                    yield tuple(index), np.asarray(values)
            return
        for index in self.plan(max_bytes):
            # np.asarray: a memmap slab becomes a plain view, read in place.
            yield index, np.asarray(self.source[index])

    def __getitem__(self, index) -> np.ndarray:
        """The pixels of ``self[index]`` in memory (a file is opened for each read)."""
        index = index if isinstance(index, tuple) else (index,)
        if self.is_file:
            index = index + (slice(None),) * (self.ndim - len(index))
            with open_stack(self.source, channel_axis=self.channel_axis) as stack:
                # A copy: a view would keep the closed file's memory map alive.
                return np.array(stack.read(index))
        return np.asarray(self.source[index])


@dataclass
class Block:
    """A slab of pixels, all channels, with its companion images cut to match."""

    values: np.ndarray
    channel_axis: int  # non-negative
    aux: tuple  # one entry per companion image: an ndarray (block's spatial shape) or None
    part: int  # index of the array or file it came from
    number: int  # running number over all blocks (seeds sample=)


def make_block(values, channel_axis: int, aux: Sequence, part: int, number: int) -> Block:
    """The :class:`Block` a block function gets, from whatever a driver read.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.source import make_block
    >>> b = make_block(np.zeros((4, 5, 3)), 2, [None, [[1] * 5] * 4], part=0, number=7)
    >>> b.values.shape, b.aux[1].shape, b.number
    ((4, 5, 3), (4, 5), 7)
    """
    return Block(
        values=np.asarray(values),
        channel_axis=channel_axis,
        aux=tuple(None if a is None else np.asarray(a) for a in aux),
        part=part,
        number=number,
    )


def _check_dtype(dtype, where: str | None = None) -> None:
    """Refuse, before any pixel is read, data that no fit can take (complex, bool, int64...)."""
    problem = dtype_problem(dtype)
    if problem is not None:
        raise TypeError(problem if where is None else f"{where}: {problem}")


def tiff_part(path, channel_axis: int | None = None) -> Part:
    """A TIFF file as a :class:`Part`; its channel axis from the file's axes unless given.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile
    >>> from pixelmix.learn.source import tiff_part
    >>> path = os.path.join(tempfile.mkdtemp(), "cyx.tif")
    >>> tifffile.imwrite(path, np.arange(60, dtype=np.uint16).reshape(3, 4, 5), photometric="minisblack")
    >>> part = tiff_part(path)
    >>> part.shape, part.channel_axis, part[:, 1, :2].tolist()
    ((3, 4, 5), 0, [[5, 6], [25, 26], [45, 46]])
    """
    with open_stack(path, channel_axis=channel_axis) as stack:
        part = Part(
            source=path,
            shape=tuple(stack.shape),
            dtype=np.dtype(stack.dtype),
            channel_axis=int(stack.channel_axis),
            channel_names=None if stack.channel_names is None else tuple(stack.channel_names),
            wavelengths=None if stack.wavelengths is None else tuple(float(w) for w in stack.wavelengths),
        )
    _check_dtype(part.dtype, str(path))
    return part


def _array_part(item, channel_axis) -> Part:
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
    _check_dtype(item.dtype)
    axis = normalize_axis(-1 if channel_axis is None else channel_axis, item.ndim, "data")
    if any(math.isnan(n) for n in item.shape):
        raise ValueError(
            f"data of shape {item.shape} has unknown chunk sizes; call "
            f"data.compute_chunk_sizes() before fitting"
        )
    return Part(source=item, shape=tuple(item.shape), dtype=np.dtype(item.dtype), channel_axis=axis)


def describe(data, channel_axis=-1) -> list[Part]:
    """Shapes, dtypes, channel axes and names of the data's parts, reading no pixels.

    For TIFF files the channel axis comes from the file's axes metadata
    unless ``channel_axis`` is given (other than -1 or None).

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.source import describe
    >>> [p.spatial_shape for p in describe([np.zeros((4, 5, 3)), np.zeros((2, 3))])]
    [(4, 5), (2,)]
    """
    items = list(data) if _is_list(data) else [data]
    if not items:
        raise ValueError("data is an empty list; pass at least one array or TIFF path")
    parts = []
    for item in items:
        if is_path(item):
            parts.append(tiff_part(item, None if channel_axis in (None, -1) else channel_axis))
        elif _is_list(item):
            raise TypeError("data must be an array, a path, or a flat list of arrays and paths")
        else:
            parts.append(_array_part(item, channel_axis))
    counts = {p.n_channels for p in parts}
    if len(counts) > 1:
        listing = ", ".join(f"{p.name}: {p.n_channels}" for p in parts)
        raise ValueError(f"all arrays/files must have the same number of channels, got {listing}")
    return parts


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


def _companion(name: str, image, part: Part):
    """``image`` checked against ``part``'s pixels (trailing axes beyond them allowed)."""
    if not isinstance(image, np.ndarray) and not is_dask_array(image):
        image = np.asarray(image)
    # Trailing axes beyond the spatial shape are allowed (a paired target
    # image with its channels moved last).
    if tuple(image.shape[: len(part.spatial_shape)]) != part.spatial_shape:
        raise ValueError(
            f"{name} has shape {tuple(image.shape)} but the pixels of {part.name} have "
            f"shape {part.spatial_shape} (its shape without the channel axis "
            f"{part.channel_axis})"
        )
    return image


def _cut(index: tuple, axis: int) -> tuple:
    """A slab's index without the channel axis: where companion images are cut."""
    return tuple(s for i, s in enumerate(index) if i != axis)


class Source:
    """The data of a fit and its per-pixel companion images, checked once.

    Parameters
    ----------
    data : ndarray, np.memmap, str or path, dask.array.Array, or list of these
        Channels on ``channel_axis``; for TIFF files the axis comes from the
        file's metadata unless ``channel_axis`` is given (other than -1).
    channel_axis : int
        The channel axis of array data (negative counts from the end).
    aux : sequence of (name, image)
        Companion per-pixel images (a mask, labels, a paired target image),
        each with the data's spatial shape, optionally followed by more axes
        (a list of them for list data), or None. They are cut like the data
        along the spatial axes; ``name`` appears in errors. NumPy or Dask.
    parts : list of Part, optional
        :func:`describe`'s result when the caller already has it.

    Attributes
    ----------
    parts : list of Part
    companions : list of tuple
        Per part, one image (or None) per entry of ``aux``.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.source import Source
    >>> x = np.zeros((100, 10, 3), dtype=np.uint16)
    >>> source = Source(x, aux=[("mask", np.ones((100, 10), bool))])
    >>> [(b.values.shape, b.aux[0].shape) for b in source.blocks(max_bytes=2400)]
    [((40, 10, 3), (40, 10)), ((40, 10, 3), (40, 10)), ((20, 10, 3), (20, 10))]
    """

    def __init__(
        self,
        data,
        channel_axis=-1,
        *,
        aux: Sequence[tuple[str, Any]] = (),
        parts: list[Part] | None = None,
    ):
        self.parts = describe(data, channel_axis) if parts is None else list(parts)
        self.companions: list[tuple] = [() for _ in self.parts]
        for name, image in aux:
            images = per_part(name, image, len(self.parts))
            for i, (part, img) in enumerate(zip(self.parts, images)):
                self.companions[i] += (None if img is None else _companion(name, img, part),)

    @property
    def is_lazy(self) -> bool:
        """True when some part is a Dask array: the fit then runs on Dask's scheduler."""
        return any(p.is_lazy for p in self.parts)

    def blocks(self, max_bytes: int | None = None) -> Iterator[Block]:
        """Blocks of about ``max_bytes`` (default ``config.FIT_BLOCK_BYTES``) covering every pixel once.

        Blocks are numbered over all parts in the order of each part's
        :meth:`Part.plan`, as the Dask driver numbers its chunks.
        """
        max_bytes = config.FIT_BLOCK_BYTES if max_bytes is None else max_bytes
        number = 0
        for i, part in enumerate(self.parts):
            # A Dask companion of in-memory data is computed once, not per block.
            images = [None if img is None else np.asarray(img) for img in self.companions[i]]
            for index, values in part.slabs(max_bytes):
                cut = _cut(index, part.channel_axis)
                aux = [None if img is None else img[cut] for img in images]
                yield make_block(values, part.channel_axis, aux, i, number)
                number += 1


def iter_blocks(
    data,
    channel_axis=-1,
    *,
    aux: Sequence[tuple[str, Any]] = (),
    max_bytes: int | None = None,
    parts: list[Part] | None = None,
) -> Iterator[Block]:
    """Blocks of bounded size covering every pixel of ``data`` once.

    ``Source(data, channel_axis, aux=aux, parts=parts).blocks(max_bytes)``;
    see :class:`Source`.

    Parameters
    ----------
    data : ndarray, np.memmap, str or path, dask.array.Array, or list of these
    channel_axis : int
    aux : sequence of (name, image)
        Companion per-pixel images, cut like the data.
    max_bytes : int, optional
        About how many bytes of pixel data each block holds (default
        ``config.FIT_BLOCK_BYTES``).
    parts : list of Part, optional
        :func:`describe`'s result when the caller already has it.

    Yields
    ------
    Block

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.source import iter_blocks
    >>> x = np.zeros((100, 10, 3), dtype=np.uint16)
    >>> [b.values.shape for b in iter_blocks(x, max_bytes=2400)]
    [(40, 10, 3), (40, 10, 3), (20, 10, 3)]
    """
    return Source(data, channel_axis, aux=aux, parts=parts).blocks(max_bytes)
