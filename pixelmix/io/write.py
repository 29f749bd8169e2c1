"""Writing TIFF stacks, from a memory map or from tiles, with their metadata.

Two forms, both keeping the input's axes with the channel axis resized
(:func:`output_layout`), its spatial calibration, the output channel names
and the program's provenance:

- :func:`create_stack`: an uncompressed, contiguous file, memory-mapped for
  writing, so slabs are written in any order with no private buffer (the
  fastest, and the result is memory-mappable in turn).
- :func:`write_stack`: a tiled, compressed file written from an iterator of
  tiles in file order (:func:`page_tiles` cuts blocks of pages into tiles;
  :func:`in_file_order` says whether a slab plan can feed it directly).

Both write BigTIFF when the data will not fit a classic TIFF
(:data:`BIGTIFF_ABOVE`). Outputs whose axes OME can express (``TZCYX``
letters, channels as planes) are OME-TIFF; others, such as channels-last
``YXS``, use tifffile's JSON description, which holds the same information.
The output of a GeoTIFF also gets its georeferencing and GDAL tags (the
``extratags`` of :func:`pixelmix.io.geotiff.output_tags`).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .names import clean_names
from .space import reserved_map

__all__ = [
    "output_layout",
    "page_ndim",
    "create_stack",
    "write_stack",
    "page_tiles",
    "in_file_order",
    "codec_problem",
    "BIGTIFF_ABOVE",
    "PROVENANCE_KEY",
]

# Classic TIFF offsets are 32-bit; leave room for the IFDs and metadata.
BIGTIFF_ABOVE = 2**32 - 2**25
# tifffile's OME writer needs these letters, each once, ending in YX.
_OME_AXES = set("TZCYX")
# Where the provenance record goes: the key of the JSON in the OME Description
# or in tifffile's JSON description.
PROVENANCE_KEY = "pixelmix"


def output_layout(stack, n_out: int) -> tuple[tuple[int, ...], str]:
    """Shape and axes of the output of a K-channel mix of ``stack``: C replaced by K.

    ``stack`` is a :class:`~pixelmix.io.read.TiffStack` (anything with its
    ``shape``, ``axes``, ``channel_axis`` and ``ndim``). A channels-first
    GeoTIFF (``stack.geo``) gives ``"SYX"``: one page of K sample planes.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from pixelmix.io.write import output_layout
    >>> output_layout(SimpleNamespace(shape=(5, 8, 8), axes="QYX", channel_axis=0, ndim=3), 2)
    ((2, 8, 8), 'CYX')
    """
    shape = list(stack.shape)
    shape[stack.channel_axis] = n_out
    axes = list(stack.axes)
    letter = axes[stack.channel_axis]
    if getattr(stack, "geo", None) is not None and stack.ndim == 3 and stack.channel_axis == 0:
        # a band-interleaved (or one-band) GeoTIFF: one page of K sample planes,
        # which GDAL reads as K bands (pages would be 1 band and subdatasets)
        axes[0] = "S"
        return tuple(shape), "".join(axes)
    if stack.channel_axis == stack.ndim - 1 and stack.ndim >= 3:
        axes[stack.channel_axis] = "S"  # channels-last stays contiguous samples
    elif letter not in "CS":
        axes[stack.channel_axis] = "C"  # a plain page stack's pages are channels
    elif letter == "S":
        axes[stack.channel_axis] = "C"  # separate sample planes are written as channel planes
    if "C" in axes and axes.count("C") > 1:
        axes[stack.channel_axis] = "Q"
    return tuple(shape), "".join(axes)


def _is_ome(axes: str) -> bool:
    return (
        axes.endswith("YX")
        and "C" in axes
        and set(axes) <= _OME_AXES
        and len(set(axes)) == len(axes)
    )


def page_ndim(shape, axes: str) -> int:
    """Axes of one TIFF page: 3 (``Y, X, S``) for channels-last data, else 2 (``Y, X``).

    Examples
    --------
    >>> from pixelmix.io.write import page_ndim
    >>> page_ndim((8, 8, 3), "YXS"), page_ndim((3, 8, 8), "CYX")
    (3, 2)
    """
    return 3 if axes.endswith("S") and len(shape) >= 3 else 2


def _write_kwargs(
    shape, dtype, axes: str, *, channel_names, provenance, calibration, wavelengths=None, extratags=()
) -> dict[str, Any]:
    """tifffile keyword arguments describing an output file."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    kwargs: dict[str, Any] = {"photometric": "minisblack"}
    k = shape[axes.index("S")] if "S" in axes else None
    if page_ndim(shape, axes) == 3 and k and k > 1:
        kwargs["planarconfig"] = "contig"
    elif k is not None and k > 1 and not axes.endswith("S"):
        kwargs["planarconfig"] = "separate"  # "SYX": the sample planes of one page
    if extratags:
        kwargs["extratags"] = list(extratags)
    calibration = dict(calibration or {})
    if "resolution" in calibration:
        kwargs["resolution"] = tuple(calibration.pop("resolution"))
        kwargs["resolutionunit"] = calibration.pop("resolutionunit", None)
    else:
        calibration.pop("resolutionunit", None)
    # Names may come from any mixer file or input: only storable text goes in.
    channel_names = clean_names(channel_names)
    desc = json.dumps({PROVENANCE_KEY: provenance}) if provenance is not None else None
    if _is_ome(axes):
        meta: dict[str, Any] = {"axes": axes}
        meta.update(calibration)
        if channel_names:
            meta["Channel"] = {"Name": list(channel_names)}
        if wavelengths:
            meta.setdefault("Channel", {}).update(
                EmissionWavelength=[float(w) for w in wavelengths], EmissionWavelengthUnit=["nm"] * len(wavelengths)
            )
        if desc:
            meta["Description"] = desc
        kwargs["ome"] = True
    else:
        meta = {"axes": axes}
        if channel_names:
            meta["channel_names"] = list(channel_names)
        if wavelengths:
            meta["wavelengths"] = [float(w) for w in wavelengths]
        if provenance is not None:
            meta[PROVENANCE_KEY] = provenance
        meta.update({k: v for k, v in calibration.items() if k.startswith(("PhysicalSize", "Time"))})
        kwargs["ome"] = False
    kwargs["metadata"] = meta
    # Read at call time, so a test can lower the threshold.
    kwargs["bigtiff"] = nbytes > BIGTIFF_ABOVE
    return kwargs


def create_stack(
    path: str | os.PathLike,
    *,
    shape: tuple[int, ...],
    dtype,
    axes: str,
    channel_names: Iterable[str] | None = None,
    provenance: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    wavelengths: Sequence[float] | None = None,
    extratags: Sequence[tuple] = (),
) -> np.memmap:
    """Create an uncompressed, contiguous TIFF and return it memory-mapped for writing.

    Write the pixels in any order (``out[index] = ...``), then ``flush()``
    and drop the array. Metadata as in :func:`write_stack`. The file's
    blocks are allocated first (:func:`pixelmix.io.space.reserve`), so a
    full disk is an ``OSError`` here ("No space left on device (needs N
    MB)"), never a SIGBUS while the map is written; the file is then left
    for the caller to remove.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from pixelmix.io.read import open_stack
    >>> from pixelmix.io.write import create_stack
    >>> path = os.path.join(tempfile.mkdtemp(), "out.ome.tif")
    >>> out = create_stack(path, shape=(2, 8, 8), dtype=np.float32, axes="CYX",
    ...                    channel_names=["a", "b"])
    >>> out[:] = 1.5
    >>> out.flush(); del out
    >>> with open_stack(path) as s:
    ...     print(s.channel_names, s.is_memmap, float(s.read().max()))
    ['a', 'b'] True 1.5
    """
    import tifffile

    kwargs = _write_kwargs(
        shape, dtype, axes, channel_names=channel_names, provenance=provenance, calibration=calibration,
        wavelengths=wavelengths, extratags=extratags,
    )
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    return reserved_map(
        path, nbytes, lambda: tifffile.memmap(os.fspath(path), shape=tuple(shape), dtype=np.dtype(dtype), **kwargs)
    )


def _has_imagecodecs() -> bool:
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        return False
    return True


def codec_problem(compression: str | None) -> str | None:
    """Why ``compression`` cannot be written here (a missing codec), or None.

    zlib/deflate work with the standard library; the others need imagecodecs.

    Examples
    --------
    >>> from pixelmix.io.write import codec_problem
    >>> codec_problem("zlib") is None
    True
    """
    if compression in (None, "none", "zlib", "deflate", "adobe_deflate") or _has_imagecodecs():
        return None
    return (
        f"{compression} compression needs the imagecodecs package: "
        f"pip install 'pixelmix[codecs]' (or use --compression zlib)"
    )


def write_stack(
    path: str | os.PathLike,
    tiles: Iterable[np.ndarray],
    *,
    shape: tuple[int, ...],
    dtype,
    axes: str,
    tile: tuple[int, int] = (256, 256),
    compression: str | None = None,
    channel_names: Iterable[str] | None = None,
    provenance: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    wavelengths: Sequence[float] | None = None,
    extratags: Sequence[tuple] = (),
) -> None:
    """Write a tiled TIFF from an iterator of tiles, never holding the image.

    Parameters
    ----------
    path : str or path-like
    tiles : iterable of ndarray
        Tiles in file order: pages in C order over the axes before the page
        (``Y, X``, or ``Y, X, S`` for channels-last), and within a page, tile
        rows top to bottom, each left to right. Each tile is ``tile`` (plus
        the samples) or smaller at the right and bottom edges.
    shape, dtype, axes
        The whole image (e.g. from :func:`output_layout`).
    tile : (int, int)
        Tile height and width, multiples of 16.
    compression : {None, "zlib", "zstd", "lzw", ...}
        Any codec tifffile knows; zstd and lzw need imagecodecs.
    channel_names : sequence of str, optional
        OME ``Channel Name`` (or ``channel_names`` in the JSON description).
    provenance : dict, optional
        JSON-ready record of how the file was made (OME ``Description``, or
        the ``pixelmix`` key of the JSON description).
    calibration : dict, optional
        ``TiffStack.calibration`` of the input: resolution and physical sizes.
    wavelengths : sequence of float, optional
        Channel wavelengths in nm (OME ``EmissionWavelength``, or
        ``wavelengths`` in the JSON description), given when they still hold.
    extratags : sequence of tuple, optional
        More tags, as tifffile's ``extratags`` (the GeoTIFF and GDAL tags of
        :func:`pixelmix.io.geotiff.output_tags`). Axes ``"SYX"`` write one
        page of planar sample planes (a band-interleaved GeoTIFF).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from pixelmix.io.read import open_stack
    >>> from pixelmix.io.write import page_tiles, write_stack
    >>> image = np.arange(2 * 40 * 40, dtype=np.uint16).reshape(2, 40, 40)
    >>> path = os.path.join(tempfile.mkdtemp(), "tiled.ome.tif")
    >>> write_stack(path, page_tiles(image, (16, 16)), shape=image.shape,
    ...             dtype=image.dtype, axes="CYX", tile=(16, 16), compression="zlib")
    >>> with open_stack(path) as s:
    ...     bool((s.read() == image).all()), s.compression
    (True, 'ADOBE_DEFLATE')
    """
    import tifffile

    if tile[0] % 16 or tile[1] % 16 or min(tile) < 16:
        raise ValueError(f"tile sizes must be positive multiples of 16, got {tile}")
    kwargs = _write_kwargs(
        shape, dtype, axes, channel_names=channel_names, provenance=provenance, calibration=calibration,
        wavelengths=wavelengths, extratags=extratags,
    )
    ome = kwargs.pop("ome")
    bigtiff = kwargs.pop("bigtiff")
    if compression is not None:
        problem = codec_problem(compression)
        if problem:
            raise RuntimeError(problem)
        kwargs["compression"] = compression
        # Differencing makes smooth images compress much better; tifffile does
        # it itself for integers, but floats need imagecodecs.
        if compression in ("zlib", "deflate", "adobe_deflate", "lzw", "zstd") and (
            np.dtype(dtype).kind in "iu" or _has_imagecodecs()
        ):
            kwargs["predictor"] = True
    with tifffile.TiffWriter(os.fspath(path), bigtiff=bigtiff, ome=ome) as writer:
        writer.write(
            iter(tiles), shape=tuple(shape), dtype=np.dtype(dtype), tile=tuple(tile), **kwargs
        )


def page_tiles(block: np.ndarray, tile: tuple[int, int], page_ndim: int = 2) -> Iterator[np.ndarray]:
    """Cut whole pages (or whole-width rows of one page) into tiles, in file order.

    ``block`` has the page axes last (``Y, X``, or ``Y, X, S`` with
    ``page_ndim=3``); the axes before them are pages, in C order.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.io.write import page_tiles
    >>> [t.shape for t in page_tiles(np.zeros((20, 40)), (16, 32))]
    [(16, 32), (16, 8), (4, 32), (4, 8)]
    """
    pages = block.reshape((-1, *block.shape[block.ndim - page_ndim :]))
    th, tw = tile
    for page in pages:
        for y in range(0, page.shape[0], th):
            for x in range(0, page.shape[1], tw):
                yield page[y : y + th, x : x + tw]


def in_file_order(
    shape: tuple[int, ...], page_ndim: int, plan: Iterable[tuple[slice, ...]], tile_rows: int
) -> bool:
    """Whether the slabs of ``plan``, in turn, cover the file's tiles in file order.

    True when every slab is a run of whole pages that are consecutive in C
    order, or whole-width rows of one page that start on a tile row; then
    the output can be streamed to a compressed file tile by tile.

    Examples
    --------
    >>> from pixelmix.io.write import in_file_order
    >>> from pixelmix.plan import plan_slabs
    >>> in_file_order((2, 3, 32, 32), 2, plan_slabs((2, 3, 32, 32), 1, 2, 3 * 32 * 32 * 2), 16)
    True
    """
    outer = len(shape) - page_ndim
    position = 0
    for index in plan:
        spans = [(s.start, s.stop) for s in index]
        page_part = spans[outer:]
        full_page = all(lo == 0 and hi == n for (lo, hi), n in zip(page_part, shape[outer:]))
        rows_only = all(
            lo == 0 and hi == n for (lo, hi), n in zip(page_part[1:], shape[outer + 1 :])
        )
        pages = spans[:outer]
        # a C-order run of pages: single indices, then one range, then whole axes
        j = 0
        while j < outer and pages[j][1] - pages[j][0] == 1:
            j += 1
        if j < outer and not all(
            lo == 0 and hi == n for (lo, hi), n in zip(pages[j + 1 :], shape[j + 1 : outer])
        ):
            return False
        first = 0
        for (lo, _), n in zip(pages, shape[:outer]):
            first = first * n + lo
        n_pages = math.prod(hi - lo for lo, hi in pages)
        rows = page_part[0] if page_part else (0, 1)
        if full_page:
            start = first * shape[outer] if outer < len(shape) else first
            if start != position:
                return False
            position = start + n_pages * shape[outer]
        elif rows_only and n_pages == 1 and rows[0] % tile_rows == 0:
            start = first * shape[outer] + rows[0]
            if start != position:
                return False
            position = start + rows[1] - rows[0]
        else:
            return False
    return True
