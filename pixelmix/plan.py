"""The plan of a call: what every backend, the file jobs and the fits share.

- the one list of supported dtypes and the dtype / nodata policy
  (:func:`output_dtype`, :func:`accumulation_dtype`, :func:`check_nodata`);
- the one channel-axis helper (:func:`normalize_axis`);
- the (A, C, B) view (:func:`view3`) and a validated call (:class:`Request`);
- the one slab planner (:func:`plan_slabs`): the engine's contiguous pieces,
  the GPU's streamed tiles, TIFF slabs and the fits' blocks are all cut by it.

This module imports nothing of pixelmix but :mod:`pixelmix.config`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from . import config

# The dtypes the kernels read.
KERNEL_DTYPES = tuple(np.dtype(t) for t in ("uint8", "uint16", "int16", "int32", "float32", "float64"))
# Read exactly by converting each piece to a kernel dtype first (see :func:`working_dtype`).
CONVERTED_DTYPES = {
    np.dtype("int8"): np.dtype("int16"),
    np.dtype("uint32"): np.dtype("float64"),
    np.dtype("float16"): np.dtype("float32"),
}
# What every input path (arrays, files, fits) accepts, and every output path writes.
SUPPORTED_DTYPES = KERNEL_DTYPES + tuple(CONVERTED_DTYPES)
_NAMES = ", ".join(d.name for d in SUPPORTED_DTYPES)


def normalize_axis(channel_axis, ndim: int, what: str = "an image") -> int:
    """``channel_axis`` as a non-negative index into ``ndim`` axes, or a clear error.

    Examples
    --------
    >>> from pixelmix.plan import normalize_axis
    >>> normalize_axis(-1, 3)
    2
    """
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
        raise TypeError(f"channel_axis must be an integer, got {channel_axis!r}")
    if not -ndim <= channel_axis < ndim:
        raise np.exceptions.AxisError(
            f"channel_axis={channel_axis} is out of range for {what} with {ndim} "
            f"dimension{'s' if ndim != 1 else ''}; use a value from {-ndim} to {ndim - 1}"
        )
    return int(channel_axis) % ndim


def dtype_problem(dtype: np.dtype) -> str | None:
    """Why data of ``dtype`` cannot be mixed or fitted, in one line a CLI user can act on; None if it can.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.plan import dtype_problem
    >>> dtype_problem(np.dtype(">f4")) is None
    True
    >>> print(dtype_problem(np.dtype(complex)))
    data of type complex128 cannot be mixed: pixelmix needs real numbers (uint8, uint16, int16, int32, float32, float64, int8, uint32, float16); save the image as one of these
    """
    native = np.dtype(dtype).newbyteorder("=")
    if native in SUPPORTED_DTYPES:
        return None
    if native.kind in "bcOSUVMm":
        return (
            f"data of type {native} cannot be mixed: pixelmix needs real numbers "
            f"({_NAMES}); save the image as one of these"
        )
    return f"data of type {native} is not supported ({_NAMES}); save the image as one of these"


def check_input_dtype(dtype: np.dtype) -> None:
    """Raise TypeError for an array dtype that cannot be mixed, with advice for Python users."""
    native = np.dtype(dtype).newbyteorder("=")
    if native in SUPPORTED_DTYPES:
        return
    if native.kind in "bcOSUVMm":
        raise TypeError(
            f"image dtype {native} cannot be mixed; pixelmix needs numeric channel values ({_NAMES})"
        )
    hint = ""
    if native.kind in "iu":
        hint = "; convert first, e.g. image.astype(np.int32) or image.astype(np.float64)"
    elif native.kind == "f":
        hint = "; convert first, e.g. image.astype(np.float64)"
    raise TypeError(f"image dtype {native} is not supported (supported: {_NAMES}){hint}")


def working_dtype(dtype: np.dtype) -> np.dtype:
    """The supported dtype that holds every value of ``dtype`` exactly (native byte order)."""
    native = np.dtype(dtype).newbyteorder("=")
    return CONVERTED_DTYPES.get(native, native)


def output_dtype(in_dtype: np.dtype, dtype) -> np.dtype:
    """The output dtype: ``dtype`` if given, else float64 for float64 input, else float32.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.plan import output_dtype
    >>> output_dtype(np.dtype(np.uint16), None), output_dtype(np.dtype(">f8"), None)
    (dtype('float32'), dtype('float64'))
    """
    if dtype is None:
        # Byte order aside: big-endian float64 input gives (native) float64 too.
        return np.dtype(np.float64) if np.dtype(in_dtype).newbyteorder("=") == np.float64 else np.dtype(np.float32)
    try:
        out = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype={dtype!r} is not a NumPy dtype") from exc
    if out not in KERNEL_DTYPES:
        names = ", ".join(d.name for d in KERNEL_DTYPES)
        raise TypeError(f"output dtype {out} is not supported (supported: {names})")
    return out


def accumulation_dtype(in_dtype: np.dtype, out_dtype: np.dtype) -> np.dtype:
    """The float type the sums run in: that of a float output, else float64.

    float32 output sums in float32 and float64 output in float64, as asked.
    Integer output is the exactly rounded (half to even) and saturated value
    of the float64 result, so it sums in float64: float32 partial sums
    round before the final rounding and can land one off.
    """
    if out_dtype.kind == "f":
        return out_dtype
    return np.dtype(np.float64)


def check_nodata(nodata, in_dtype: np.dtype) -> float | None:
    """``nodata`` as a float that values of ``in_dtype`` can equal, or a clear error."""
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

    Calls on data that must not be touched (Dask arrays, GPU arrays) are
    validated through these: same shape and dtype, no allocation.
    """
    base = np.zeros(1, dtype=dtype)
    return np.lib.stride_tricks.as_strided(base, shape=tuple(shape), strides=(0,) * len(shape), writeable=writeable)


def view3(a, axis: int):
    """The (A, C, B) view of a C-contiguous array with channels on ``axis``.

    Works for anything with ``shape`` and ``reshape`` (NumPy and device arrays).
    """
    shape = a.shape
    return a.reshape(math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :]))


def default_tile(width: int) -> int:
    """Pixels per tile so that one scratch buffer holds about ``config.TILE_VALUES`` values."""
    return int(min(16384, max(64, config.TILE_VALUES // max(width, 1))))


@dataclass(frozen=True)
class Request:
    """A validated call: everything a backend needs, nothing left to check."""

    image: Any  # the input, any layout (a stand-in for lazy and device data)
    out: Any  # the output array, same axes with C replaced by K
    axis: int  # the channel axis, non-negative
    program: Any  # a lowering.CompiledProgram
    out_dtype: np.dtype
    acc_dtype: np.dtype
    nodata: float | None
    tile: int


class SlabPlan(Sequence):
    """Consecutive slabs of an array, each holding every channel; see :func:`plan_slabs`.

    A lazy sequence: its length and each slab are computed, never stored,
    so a file that claims absurd dimensions costs nothing to plan.
    """

    def __init__(self, shape, channel_axis, split, step, outer):
        self.shape, self.channel_axis = tuple(shape), channel_axis
        self.split, self.step, self.outer = split, step, tuple(outer)
        self._n_outer = math.prod(self.shape[j] for j in self.outer)
        self._n_split = 1 if split is None else -(-self.shape[split] // step)

    def __len__(self) -> int:
        return self._n_outer * self._n_split

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("slab index out of range")
        index = [slice(0, n) for n in self.shape]
        if self.split is None:
            return tuple(index)
        o, s = divmod(i, self._n_split)
        for j, v in zip(self.outer, np.unravel_index(o, [self.shape[j] for j in self.outer]) if self.outer else ()):
            index[j] = slice(int(v), int(v) + 1)
        start = s * self.step
        index[self.split] = slice(start, min(start + self.step, self.shape[self.split]))
        return tuple(index)

    def __iter__(self) -> Iterator[tuple[slice, ...]]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"SlabPlan({len(self)} slabs of {self.shape})"


def plan_slabs(
    shape: tuple[int, ...],
    channel_axis: int,
    itemsize: int,
    max_bytes: int | None = None,
    chunks: tuple[int, ...] | None = None,
) -> SlabPlan:
    """Cut an array into consecutive slabs of about ``max_bytes``, each with all channels.

    The array is cut along the outermost axis (other than the channel axis)
    where one index still fits in ``max_bytes``; the axes before it are
    walked one index at a time, the axes after it are taken whole. Cuts are
    rounded to whole ``chunks`` (tiles, strips) so no chunk is decoded twice.
    Default ``max_bytes``: ``config.SLAB_BYTES``.

    Examples
    --------
    >>> from pixelmix.plan import plan_slabs
    >>> list(plan_slabs((3, 4, 8, 8), 1, 2, max_bytes=1024))
    [(slice(0, 2, None), slice(0, 4, None), slice(0, 8, None), slice(0, 8, None)), (slice(2, 3, None), slice(0, 4, None), slice(0, 8, None), slice(0, 8, None))]
    """
    if max_bytes is None:
        max_bytes = config.SLAB_BYTES
    ndim = len(shape)
    chunks = chunks or (1,) * ndim
    axes = [j for j in range(ndim) if j != channel_axis]
    if not axes:
        return SlabPlan(shape, channel_axis, None, 1, ())

    def unit(j: int) -> int:  # bytes of one index along axis j, all channels
        inner = math.prod(shape[j + 1 :])
        return itemsize * inner * (shape[channel_axis] if channel_axis < j else 1)

    split = next((j for j in axes if unit(j) <= max_bytes), axes[-1])
    step = max(1, min(shape[split], max_bytes // max(unit(split), 1)))
    grain = max(1, int(chunks[split]))
    if step >= grain:
        step -= step % grain
    return SlabPlan(shape, channel_axis, split, step, [j for j in axes if j < split])


def tiles(A: int, B: int, n_pixels: int) -> Iterator[tuple[int, int, int, int]]:
    """``(a0, a1, b0, b1)`` boxes of at most ``n_pixels`` pixels covering an (A, ., B) view.

    Examples
    --------
    >>> from pixelmix.plan import tiles
    >>> list(tiles(2, 5, 3))
    [(0, 1, 0, 3), (0, 1, 3, 5), (1, 2, 0, 3), (1, 2, 3, 5)]
    """
    for index in plan_slabs((A, 1, B), 1, 1, max(1, n_pixels)):
        yield index[0].start, index[0].stop, index[2].start, index[2].stop


def pieces(request: Request):
    """Yield ``(x3, out3, finish)``: contiguous (A, C, B) pieces covering the request.

    A C-contiguous image (in native byte order) and output give one piece,
    the whole arrays, with no copy. Otherwise the image is cut by
    :func:`plan_slabs` into slabs of about ``config.CHUNK_BYTES``, each copied
    to contiguous memory in native byte order and a kernel dtype
    (:func:`working_dtype`: int8, uint32 and float16 are converted exactly) (never the whole image at once); ``finish()``
    copies a piece's result into ``out`` when ``out`` could not be written
    directly.
    """
    image, out, axis = request.image, request.out, request.axis
    native = working_dtype(image.dtype)
    if image.flags.c_contiguous and image.dtype == native and out.flags.c_contiguous:
        yield view3(image, axis), view3(out, axis), lambda: None
        return
    for index in plan_slabs(image.shape, axis, image.dtype.itemsize, config.CHUNK_BYTES):
        x = np.ascontiguousarray(image[index], dtype=native)
        # The output has K channels, not C: all of them.
        dest = out[index[:axis] + (slice(None),) + index[axis + 1 :]]
        buf = dest if dest.flags.c_contiguous else np.empty(dest.shape, dest.dtype)

        def finish(dest=dest, buf=buf):
            if buf is not dest:
                dest[...] = buf

        yield view3(x, axis), view3(buf, axis), finish
