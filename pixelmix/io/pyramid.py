"""Every series and pyramid level of a TIFF file: what it holds, and outputs of the same shape.

A file may hold several images (series: OME ``Image`` elements, or the
series tifffile finds) and each may be a pyramid (reduced-resolution
levels in SubIFDs, as OME-TIFF and tifffile's ``subifds=`` write them, or
in the main IFD chain). A mix is per pixel, so every level of every series
is mixed in turn (:class:`~pixelmix.io.read.TiffStack` opens one with
``series=`` and ``level=``) and written as the same series and levels:

- :func:`describe` lists the series and levels of an open stack's file
  (``pixelmix info``);
- :func:`output_flavour` says which files need this module's writer:
  OME and ImageJ inputs (so their metadata is carried, :mod:`pixelmix.io.ome`,
  :mod:`pixelmix.io.imagej`), outputs named ``.ome.tif``, and files of
  more than one series or level (written as OME-TIFF pyramids, the form
  OME readers know: the reduced levels of each image in SubIFDs);
- :class:`TiffOutput` writes such a file: uncompressed, its whole layout
  is written first and each level is then a writable memory map (filled
  slab by slab, in any order); compressed, each level is streamed from an
  iterator of tiles (strips for ImageJ, which reads no tiles), level after
  level in file order.

Examples
--------
>>> import os, tempfile
>>> import numpy as np, tifffile
>>> from pixelmix.io.pyramid import LevelOut, SeriesOut, TiffOutput
>>> path = os.path.join(tempfile.mkdtemp(), "p.ome.tif")
>>> series = SeriesOut(axes="CYX", dtype=np.dtype("float32"),
...                    levels=[LevelOut((2, 32, 32)), LevelOut((2, 16, 16))],
...                    metadata={"axes": "CYX", "Name": "p"})
>>> with TiffOutput(path, [series], flavour="ome") as out:
...     for level in range(2):
...         out.array(0, level)[:] = level + 1
>>> with tifffile.TiffFile(path) as tif:
...     [(lv.shape, float(lv.asarray().max())) for lv in tif.series[0].levels]
[((2, 32, 32), 1.0), ((2, 16, 16), 2.0)]
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from . import write as _write
from .imagej import imagej_problem
from .ome import ome_layout
from .space import is_full, no_space, reserve

__all__ = ["SeriesInfo", "describe", "tiff_series", "output_flavour", "LevelOut", "SeriesOut", "TiffOutput",
           "is_ome_name"]

@dataclass
class SeriesInfo:
    """One series of a file: its name, kind, axes, dtype and the shape of each level."""

    index: int
    name: str
    kind: str
    axes: str
    dtype: str
    levels: list[tuple[int, ...]]


def _reduces(full, part) -> bool:
    """Whether tifffile series ``part`` looks like a reduced level of ``full``: same axes but Y and X, smaller."""
    a, b = tuple(full.shape), tuple(part.shape)
    return (
        len(a) == len(b) >= 2 and a[:-2] == b[:-2] and np.dtype(full.dtype) == np.dtype(part.dtype)
        and b[-2] <= a[-2] and b[-1] <= a[-1] and b[-2:] != a[-2:]
    )


def _level(tif, full, part, subifd: int):
    """SubIFD ``subifd`` of every page of series ``full``, as a series with ``full``'s axes.

    tifffile's own series for such a level lists its first page only and
    finds the others in the main IFD chain, where they are not.
    """
    import tifffile

    pages = []
    for page in full:
        offsets = None if page is None else getattr(page, "subifds", None)
        if not offsets or len(offsets) <= subifd:
            return part  # not a SubIFD of every page: as tifffile lists it
        try:
            tif.filehandle.seek(offsets[subifd])
            pages.append(tifffile.TiffPage(tif, (page.index, subifd)))
        except Exception:  # an unreadable SubIFD: as tifffile lists it, judged when opened
            return part
    return tifffile.TiffPageSeries(pages, tuple(part.shape), part.dtype, str(full.axes), parent=tif,
                                   name=full.name, kind=full.kind)


def tiff_series(tif) -> list[list[Any]]:
    """The images of an open ``tifffile.TiffFile``, each the list of its levels (full resolution first).

    tifffile's series and their ``levels``; but a series whose pages are the
    SubIFDs of an earlier series and reduce its Y and X is a level of that
    series. (tifffile's shaped writer labels such levels with axes of their
    own, ``QYX``, when they are written without ``axes``, and its reader
    then lists them as series of their own.)

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile
    >>> from pixelmix.io.pyramid import tiff_series
    >>> path = os.path.join(tempfile.mkdtemp(), "p.tif")
    >>> with tifffile.TiffWriter(path) as w:
    ...     w.write(np.zeros((2, 32, 32), np.uint8), subifds=1, metadata={"axes": "CYX"})
    ...     w.write(np.zeros((2, 16, 16), np.uint8), subfiletype=1)
    >>> with tifffile.TiffFile(path) as tif:
    ...     [[lv.shape for lv in levels] for levels in tiff_series(tif)]
    [[(2, 32, 32), (2, 16, 16)]]
    """
    found: list[list[Any]] = []
    owner: dict[Any, int] = {}  # index of a series' first page -> its position in found
    for series in tif.series:
        try:
            index = tuple(series.keyframe.treeindex)  # (page,) in the main chain, (page, i) a SubIFD
        except Exception:  # no readable first page: a series of its own, judged when opened
            index = ()
        if len(index) == 2 and index[0] in owner and _reduces(found[owner[index[0]]][0], series):
            found[owner[index[0]]].append(_level(tif, found[owner[index[0]]][0], series, index[1]))
            continue
        if len(index) == 1:
            owner[index[0]] = len(found)
        found.append(list(series.levels))
    for levels in found:
        levels[1:] = sorted(levels[1:], key=lambda lv: -math.prod(lv.shape))
    return found


def describe(stack) -> list[SeriesInfo]:
    """The series of ``stack``'s file and the shapes of their pyramid levels.

    ``stack`` is an open :class:`~pixelmix.io.read.TiffStack`.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile
    >>> from pixelmix.io.pyramid import describe
    >>> from pixelmix.io.read import open_stack
    >>> path = os.path.join(tempfile.mkdtemp(), "p.ome.tif")
    >>> with tifffile.TiffWriter(path, ome=True) as w:
    ...     w.write(np.zeros((2, 32, 32), np.uint8), subifds=1, metadata={"axes": "CYX", "Name": "a"})
    ...     w.write(np.zeros((2, 16, 16), np.uint8), subfiletype=1)
    ...     w.write(np.zeros((8, 8), np.uint8), metadata={"Name": "thumb"})
    >>> with open_stack(path) as s:
    ...     [(i.name, i.axes, i.levels) for i in describe(s)]
    [('a', 'CYX', [(2, 32, 32), (2, 16, 16)]), ('thumb', 'YX', [(8, 8)])]
    """
    found = []
    for i, levels in enumerate(tiff_series(stack.tiff)):
        series = levels[0]
        found.append(SeriesInfo(
            index=i, name=str(series.name or ""), kind=str(series.kind), axes=str(series.axes),
            dtype=np.dtype(series.dtype).name, levels=[tuple(int(n) for n in lv.shape) for lv in levels],
        ))
    return found


def is_ome_name(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named as an OME-TIFF file (``.ome.tif``, ``.ome.tiff``, any case)."""
    return Path(path).name.lower().endswith((".ome.tif", ".ome.tiff"))


def output_flavour(stack, dst: str | os.PathLike, *, shape: Sequence[int], axes: str, dtype) -> str | None:
    """``"imagej"``, ``"ome"`` or None: how the output of ``stack`` (level 0 of series 0) is written.

    None leaves it to :mod:`pixelmix.io.write` (a single image that is not
    OME or ImageJ, and every file GDAL wrote, ``stack.geo``, whose tags
    that writer keeps; its overviews are not written).
    ``shape``, ``axes`` and ``dtype`` are the output's: an ImageJ input
    whose output ImageJ cannot hold (:func:`~pixelmix.io.imagej.imagej_problem`)
    is written as OME-TIFF.
    """
    if getattr(stack, "geo", None) is not None:
        return None
    several = stack.n_series > 1 or stack.n_levels > 1
    if stack.kind == "imagej" and not several and imagej_problem(shape, axes, dtype) is None:
        return "imagej"
    if several or stack.kind in ("ome", "imagej") or is_ome_name(dst):
        return "ome"
    return None


@dataclass
class LevelOut:
    """One level of an output series: its shape as mixed, and its resolution tags."""

    shape: tuple[int, ...]
    resolution: tuple[float, float] | None = None
    resolutionunit: int | None = None


@dataclass
class SeriesOut:
    """One output series: axes, dtype, its levels (level 0 first) and the writer's metadata for it."""

    axes: str
    dtype: np.dtype
    levels: list[LevelOut]
    metadata: dict[str, Any] = field(default_factory=dict)


class TiffOutput:
    """A new TIFF file of one or more series, each one or more levels, in one flavour.

    Parameters
    ----------
    path : path-like
        The file to create.
    series : list of SeriesOut
        In file order. ``metadata`` is what tifffile's OME (``"ome"``) or
        ImageJ (``"imagej"``) writer takes (:func:`pixelmix.io.ome.ome_metadata`,
        :func:`pixelmix.io.imagej.imagej_metadata`); OME declares the shape
        of :func:`~pixelmix.io.ome.ome_layout`.
    flavour : {"ome", "imagej"}
    compression : str, optional
        None: an uncompressed file, laid out at once and filled through
        :meth:`array`. Otherwise every level is streamed with :meth:`write`,
        in file order (series by series, each level 0 first).
    tile : (int, int)
        Tile size of compressed outputs (ImageJ outputs are written in strips).

    Use it as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        series: Sequence[SeriesOut],
        *,
        flavour: str = "ome",
        compression: str | None = None,
        tile: tuple[int, int] = (256, 256),
    ):
        import tifffile

        if flavour not in ("ome", "imagej"):
            raise ValueError(f"flavour must be 'ome' or 'imagej', not {flavour!r}")
        if flavour == "imagej" and (len(series) != 1 or len(series[0].levels) != 1):
            raise ValueError("an ImageJ hyperstack holds one image: no second series and no pyramid")
        self.path = Path(path)
        self.series = list(series)
        self.flavour = flavour
        self.compression = compression
        self.tile = tuple(int(t) for t in tile)
        self._next = (0, 0)
        self._offsets: dict[tuple[int, int], int] = {}
        nbytes = sum(math.prod(lv.shape) * np.dtype(s.dtype).itemsize for s in self.series for lv in s.levels)
        self._nbytes = nbytes
        # read at call time, so a test can lower the threshold
        bigtiff = nbytes > _write.BIGTIFF_ABOVE
        opened = dict(bigtiff=bigtiff, ome=flavour == "ome", imagej=flavour == "imagej")
        self._writer = None
        self._opened = opened
        if compression is not None:
            problem = _write.codec_problem(compression)
            if problem:
                raise RuntimeError(problem)
            return  # the file is created by the first write(), when its first level is ready
        try:
            with tifffile.TiffWriter(os.fspath(self.path), **opened) as writer:
                for s, out in enumerate(self.series):
                    for level in range(len(out.levels)):
                        shape, _ = self._declared(s, level)
                        writer.write(None, shape=shape, dtype=np.dtype(out.dtype), **self._kwargs(s, level))
        except OSError as exc:
            if is_full(exc):
                raise no_space(exc.errno, nbytes) from None
            raise
        self._find_offsets()
        reserve(self.path)

    # -- layout ---------------------------------------------------------------

    def _declared(self, s: int, level: int) -> tuple[tuple[int, ...], str]:
        """The shape and axes the file declares for a level (OME cannot say one interleaved sample)."""
        out = self.series[s]
        shape = out.levels[level].shape
        if self.flavour == "ome":
            return ome_layout(shape, out.axes)
        return tuple(shape), out.axes

    def _kwargs(self, s: int, level: int) -> dict[str, Any]:
        """tifffile's keywords for one level's write call."""
        out = self.series[s]
        lv = out.levels[level]
        shape, axes = self._declared(s, level)
        kwargs: dict[str, Any] = {"photometric": "minisblack"}
        if _write.page_ndim(shape, axes) == 3 and shape[-1] > 1:
            kwargs["planarconfig"] = "contig"
        if lv.resolution is not None:
            kwargs["resolution"] = tuple(lv.resolution)
            if self.flavour != "imagej":  # ImageJ's are pixels per its own unit
                kwargs["resolutionunit"] = lv.resolutionunit
        if level == 0:
            kwargs["metadata"] = dict(out.metadata, axes=axes)
            if len(out.levels) > 1:
                kwargs["subifds"] = len(out.levels) - 1
        else:
            kwargs["subfiletype"] = 1  # a reduced-resolution image of level 0
            kwargs["metadata"] = None
        if self.compression is not None:
            kwargs["compression"] = self.compression
            if self.compression in ("zlib", "deflate", "adobe_deflate", "lzw", "zstd") and (
                np.dtype(out.dtype).kind in "iu" or _write._has_imagecodecs()
            ):
                kwargs["predictor"] = True
            if self.flavour != "imagej":
                kwargs["tile"] = self.tile
        return kwargs

    def _find_offsets(self) -> None:
        """Where each level's pixels start in the new file (each level is one contiguous run)."""
        import tifffile

        with tifffile.TiffFile(self.path) as tif:
            for s, out in enumerate(self.series):
                levels = tif.series[s].levels
                for level in range(len(out.levels)):
                    offset = levels[level].dataoffset
                    if offset is None:
                        raise RuntimeError(f"{self.path}: level {level} of series {s} was not laid out contiguously")
                    self._offsets[s, level] = int(offset)

    # -- filling ----------------------------------------------------------------

    def array(self, s: int, level: int) -> np.memmap:
        """Level ``level`` of series ``s`` of an uncompressed output, memory-mapped for writing.

        Its shape is the level's ``shape`` (as mixed). Write the pixels in any
        order, then ``flush()`` and drop the array.
        """
        if self.compression is not None:
            raise RuntimeError("a compressed output is written with write(), in file order")
        out = self.series[s]
        declared, _ = self._declared(s, level)
        mapped = np.memmap(self.path, dtype=np.dtype(out.dtype), mode="r+", offset=self._offsets[s, level],
                           shape=declared)
        return mapped.reshape(out.levels[level].shape)

    def write(self, s: int, level: int, tiles: Iterable[np.ndarray]) -> None:
        """Stream level ``level`` of series ``s`` of a compressed output from its tiles.

        ``tiles`` are in file order, as :func:`pixelmix.io.write.page_tiles`
        cuts them (``tile`` plus the samples, smaller at the edges). Levels
        must come in file order: each series in turn, level 0 first.
        """
        if self.compression is None:
            raise RuntimeError("an uncompressed output is filled through array()")
        if (s, level) != self._next:
            raise RuntimeError(f"series {s} level {level} written out of order (expected {self._next})")
        out = self.series[s]
        declared, axes = self._declared(s, level)
        shape = out.levels[level].shape
        chunks: Iterator[np.ndarray] = iter(tiles)
        if len(declared) != len(shape):  # one interleaved sample declared as a plane
            chunks = (t[..., 0] for t in chunks)
        if self.flavour == "imagej":
            chunks = _pages(chunks, declared, _write.page_ndim(declared, axes), self.tile, np.dtype(out.dtype))
        try:
            if self._writer is None:
                import tifffile

                self._writer = tifffile.TiffWriter(os.fspath(self.path), **self._opened)
            self._writer.write(chunks, shape=declared, dtype=np.dtype(out.dtype), **self._kwargs(s, level))
        except OSError as exc:
            if is_full(exc):
                raise no_space(exc.errno, self._nbytes) from None
            raise
        self._next = (s, level + 1) if level + 1 < len(out.levels) else (s + 1, 0)

    def close(self) -> None:
        """Finish the file (a compressed one must have had every level written)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def __enter__(self) -> "TiffOutput":
        return self

    def __exit__(self, kind, value, trace) -> None:
        if kind is None:
            self.close()
            return
        try:  # the file is being abandoned: its own error must not hide the first one
            self.close()
        except Exception:
            pass


def _pages(tiles: Iterator[np.ndarray], shape, n_page: int, tile, dtype) -> Iterator[np.ndarray]:
    """Whole pages from tiles in file order (for writers that take pages, not tiles)."""
    page_shape = tuple(shape[len(shape) - n_page:])
    th, tw = tile
    n_pages = math.prod(shape[: len(shape) - n_page])
    for _ in range(n_pages):
        page = np.empty(page_shape, dtype)
        for y in range(0, page_shape[0], th):
            for x in range(0, page_shape[1], tw):
                page[y : y + th, x : x + tw] = next(tiles)
        yield page
