"""TIFF stacks of any size: reading in slabs, writing from tiles.

Reading (:func:`open_stack`) never loads a file whole. When the pixel data
of the first series is stored contiguous and uncompressed it is
memory-mapped, and a slab is a view of the file (its pages are page cache,
not private memory; the kernel is asked to read the next slab ahead while
the current one is mixed). Otherwise the tiles or strips a slab touches are
read and decoded through tifffile's zarr store, by a reader thread that
keeps one slab ahead of the consumer.

Writing comes in two forms, both keeping the input's axes with the channel
axis resized, its spatial calibration, the output channel names and the
program's provenance:

- :func:`create_stack`: an uncompressed, contiguous file, memory-mapped for
  writing, so slabs are written in any order with no private buffer (the
  default: fastest, and the result is memory-mappable in turn).
- :func:`write_stack`: a tiled, compressed file written from an iterator of
  tiles in file order (:func:`page_tiles` cuts blocks of pages into tiles).

Both write BigTIFF when the data will not fit a classic TIFF. Outputs whose
axes OME can express (``TZCYX`` letters, channels as planes) are OME-TIFF;
others, such as channels-last ``YXS``, use tifffile's JSON description, which
holds the same information.
"""

from __future__ import annotations

import json
import logging
import math
import mmap
import os
import queue
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

__all__ = [
    "TiffStack",
    "open_stack",
    "plan_slabs",
    "output_layout",
    "create_stack",
    "write_stack",
    "page_tiles",
    "DEFAULT_SLAB_BYTES",
]

DEFAULT_SLAB_BYTES = 64 * 2**20
# Classic TIFF offsets are 32-bit; leave room for the IFDs and metadata.
BIGTIFF_ABOVE = 2**32 - 2**25
# tifffile's OME writer needs these letters, each once, ending in YX.
_OME_AXES = set("TZCYX")
_TO_NM = {"nm": 1.0, "nanometer": 1.0, "nanometers": 1.0, "µm": 1e3, "um": 1e3,
          "micrometer": 1e3, "micrometers": 1e3, "micron": 1e3, "microns": 1e3,
          "mm": 1e6, "m": 1e9, "pm": 1e-3, "å": 0.1, "angstrom": 0.1}
PROVENANCE_KEY = "pixelmix"


class TiffStack:
    """An open TIFF stack, read in slabs; see :func:`open_stack`.

    Attributes
    ----------
    path : pathlib.Path
    shape : tuple of int
        Shape of the first series (a 2-D image gets a leading channel axis
        of length 1, axes ``"CYX"``).
    dtype : numpy.dtype
        Native-byte-order dtype of the slabs.
    axes : str
        tifffile's axes letters for ``shape`` (``"ZCYX"``, ``"QYX"``, ``"YXS"``...).
    channel_axis : int
        Non-negative index of the channel axis in ``shape``.
    channel_names : list of str or None
    wavelengths : list of float or None
        Channel wavelengths in nm.
    calibration : dict
        Spatial calibration to carry to outputs: ``resolution``,
        ``resolutionunit`` and OME ``PhysicalSize*`` entries found in the file.
    kind : str
        ``"ome"``, ``"imagej"``, ``"shaped"``, ... (tifffile's series kind).
    compression : str
        Compression of the pixel data (``"NONE"``, ``"ADOBE_DEFLATE"``, ...).
    is_memmap : bool
        Whether slabs are views of a memory map (contiguous uncompressed data).
    """

    def __init__(self, path, channel_axis: int | None = None):
        import tifffile

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path} is a directory, not a TIFF file")
        self._mmap = None
        self._memmap = None
        self._zarr = None
        self._store = None
        with _TiffLog() as log:
            try:
                self._tif = tifffile.TiffFile(self.path)
            except (tifffile.TiffFileError, EOFError, OSError, ValueError, struct_error()) as exc:
                raise ValueError(f"{self.path} is not a readable TIFF file ({exc})") from None
            try:
                self._setup(channel_axis)
                if log.errors:
                    # tifffile reads around a broken tag or IFD chain; refuse
                    # rather than mix a file whose metadata or pages are lost.
                    raise ValueError(
                        f"{self.path} is truncated or damaged ({'; '.join(log.errors[:3])})"
                    )
            except BaseException:
                self.close()
                raise

    # -- opening ---------------------------------------------------------------

    def _setup(self, channel_axis):
        tif = self._tif
        if not tif.series:
            raise ValueError(f"{self.path} holds no image series")
        series = tif.series[0]
        self._series = series
        shape = tuple(int(n) for n in series.shape)
        axes = str(series.axes)
        if len(shape) == 0 or 0 in shape:
            raise ValueError(f"{self.path} holds an empty image (shape {shape})")
        # tifffile reports the native dtype; the bytes on disk have the file's order.
        self.dtype = np.dtype(series.dtype).newbyteorder("=")
        stored = self.dtype.newbyteorder(tif.byteorder)
        self.kind = str(series.kind)
        keyframe = series.keyframe
        self.compression = getattr(keyframe.compression, "name", str(keyframe.compression))

        # A 2-D image is one channel: give it a channel axis so every stack
        # has one (a mixer with one input then scales or offsets it).
        self._expanded = len(shape) == 2 and channel_axis is None and "S" not in axes and "C" not in axes
        if self._expanded:
            shape, axes = (1, *shape), "C" + axes
        self.shape = shape
        self.axes = axes
        self.ndim = len(shape)
        if channel_axis is None:
            channel_axis = axes.find("C") if "C" in axes else axes.find("S") if "S" in axes else 0
        self.channel_axis = _normalize_axis(channel_axis, self.ndim, self.path)

        self._check_complete(series)
        offset = series.dataoffset
        if offset is not None:
            self._open_memmap(offset, stored)
        self.is_memmap = self._memmap is not None

        self.calibration = _calibration(tif, keyframe)
        names, waves = _channel_metadata(tif, self.shape[self.channel_axis], self.axes[self.channel_axis])
        self.channel_names = names
        self.wavelengths = waves

    def _check_complete(self, series) -> None:
        """Raise if the file ends before the pixel data its tags point to."""
        size = self._tif.filehandle.size
        end = 0
        missing = 0
        try:
            for page in series.pages:
                if page is None:
                    missing += 1
                    continue
                offsets, counts = page.dataoffsets, page.databytecounts
                if offsets:
                    end = max(end, max(o + c for o, c in zip(offsets, counts) if c))
        except Exception as exc:  # tifffile raises many types for a broken IFD chain
            raise ValueError(f"{self.path} is damaged: its pages cannot be read ({exc})") from None
        if missing:
            raise ValueError(
                f"{self.path} is truncated or damaged: {missing} of the "
                f"{len(series.pages)} pages its metadata lists cannot be found"
            )
        if end > size:
            raise ValueError(
                f"{self.path} is truncated: the pixel data runs to byte {end} but the "
                f"file has only {size} bytes"
            )

    def _open_memmap(self, offset: int, stored: np.dtype) -> None:
        count = math.prod(self._series.shape)
        end = offset + count * stored.itemsize
        size = self._tif.filehandle.size
        if end > size:
            raise ValueError(
                f"{self.path} is truncated: the pixel data runs to byte {end} but the "
                f"file has only {size} bytes"
            )
        with open(self.path, "rb") as f:
            self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        flat = np.frombuffer(self._mmap, dtype=stored, count=count, offset=offset)
        self._memmap = flat.reshape(self.shape)

    def _zarr_array(self):
        if self._zarr is None:
            try:
                import zarr
            except ImportError:
                raise ImportError(
                    f"{self.path} is compressed or not contiguous: reading it in pieces "
                    f"needs the 'zarr' package (pip install zarr)"
                ) from None
            self._store = self._series.aszarr(level=0)
            self._zarr = zarr.open(self._store, mode="r")
        return self._zarr

    # -- reading ----------------------------------------------------------------

    @property
    def n_channels(self) -> int:
        """Number of channels (the length of the channel axis)."""
        return self.shape[self.channel_axis]

    @property
    def nbytes(self) -> int:
        """Bytes of pixel data (uncompressed)."""
        return math.prod(self.shape) * self.dtype.itemsize

    def chunk_shape(self) -> tuple[int, ...]:
        """Shape of the pieces the file stores (tiles or strips; pages when mapped)."""
        if self.is_memmap:
            return (1,) * self.ndim
        chunks = tuple(int(c) for c in self._zarr_array().chunks)
        return (1, *chunks) if self._expanded else chunks

    def mapped(self) -> np.ndarray | None:
        """The whole image as a read-only memory map, when the file allows one.

        None unless the pixel data is uncompressed, contiguous and in native
        byte order. Reading it costs page cache, not private memory.
        """
        if self._memmap is None or self._memmap.dtype != self.dtype or not self._memmap.flags.c_contiguous:
            return None
        return self._memmap

    def read(self, index: tuple[slice, ...] | None = None) -> np.ndarray:
        """Read ``stack[index]`` (all of it when ``index`` is None) into memory.

        A memory-mapped stack returns a read-only view when the file's byte
        order is native.
        """
        if index is None:
            index = tuple(slice(None) for _ in self.shape)
        if self._memmap is not None:
            part = self._memmap[index]
        else:
            z = self._zarr_array()
            if self._expanded:
                part = np.asarray(z[index[1:]])[None]
            else:
                part = np.asarray(z[index])
        if part.dtype != self.dtype:
            part = part.astype(self.dtype)
        return part

    def iter_slabs(
        self, max_bytes: int = DEFAULT_SLAB_BYTES, *, prefetch: int = 1
    ) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
        """Yield ``(index, slab)``: consecutive pieces covering the whole image.

        Each slab holds all channels (channel axis at ``channel_axis``) and
        about ``max_bytes`` bytes, and ``slab is stack[index]``; ``index``
        is a tuple of slices, one per axis, so slabs keep every dimension.

        Parameters
        ----------
        max_bytes : int
            Target size of a slab (one line along the innermost axis at least).
        prefetch : int
            Slabs read ahead by a background thread (decoded files) or
            announced to the kernel for readahead (memory-mapped files).

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np, tifffile
        >>> from pixelmix.tiff import open_stack
        >>> path = os.path.join(tempfile.mkdtemp(), "stack.tif")
        >>> tifffile.imwrite(path, np.zeros((4, 64, 32), np.uint16), photometric="minisblack")
        >>> with open_stack(path) as stack:
        ...     [s.shape for _, s in stack.iter_slabs(max_bytes=8192)]
        [(4, 32, 32), (4, 32, 32)]
        """
        plan = plan_slabs(self.shape, self.channel_axis, self.dtype.itemsize, max_bytes, self.chunk_shape())
        if self._memmap is not None:
            for i, index in enumerate(plan):
                for ahead in plan[i + 1 : i + 1 + prefetch]:
                    self._willneed(ahead)
                yield index, self.read(index)
            return
        if prefetch < 1:
            for index in plan:
                yield index, self.read(index)
            return
        yield from _read_ahead(self, plan, prefetch)

    def _willneed(self, index) -> None:
        """Ask the kernel to read the pages of ``self[index]`` ahead (a hint, never an error)."""
        if self._mmap is None or not hasattr(self._mmap, "madvise"):
            return
        base = self._memmap.__array_interface__["data"][0]
        page = mmap.PAGESIZE
        for lo, hi in _byte_runs(self._memmap[index]):
            start = (lo - base) // page * page
            try:
                self._mmap.madvise(mmap.MADV_WILLNEED, start, hi - base - start)
            except (OSError, ValueError):
                return

    # -- life cycle -----------------------------------------------------------

    def close(self) -> None:
        """Release the file (and its memory map)."""
        self._memmap = None
        self._zarr = None
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                pass  # a slab view is still alive; the map closes when it dies
            self._mmap = None
        self._tif.close()

    def __enter__(self) -> "TiffStack":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"TiffStack({str(self.path)!r}, shape={self.shape}, dtype={self.dtype}, "
            f"axes={self.axes!r}, channel_axis={self.channel_axis})"
        )


class _TiffLog(logging.Handler):
    """Collect tifffile's error messages while a file is opened, instead of printing them."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.errors: list[str] = []

    def emit(self, record) -> None:
        self.errors.append(record.getMessage()[:200])

    def __enter__(self) -> "_TiffLog":
        self._logger = logging.getLogger("tifffile")
        self._saved = self._logger.propagate
        self._logger.propagate = False
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self._logger.removeHandler(self)
        self._logger.propagate = self._saved


def struct_error():
    import struct

    return struct.error


def open_stack(path: str | os.PathLike, channel_axis: int | None = None) -> TiffStack:
    """Open a TIFF stack for reading in slabs, without loading it.

    Parameters
    ----------
    path : str or path-like
        Multi-page, OME-TIFF, ImageJ hyperstack, tiled or striped,
        compressed or not, classic or BigTIFF. The first series is read.
    channel_axis : int, optional
        Overrides the channel axis found from the file's axes: ``C``, else
        ``S`` (samples), else axis 0 (a plain page stack is channels-first).
        Negative values count from the end.

    Returns
    -------
    TiffStack
        Use it as a context manager, or call ``close()``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a TIFF file, a truncated or damaged one, or a bad ``channel_axis``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile
    >>> from pixelmix.tiff import open_stack
    >>> path = os.path.join(tempfile.mkdtemp(), "zcyx.ome.tif")
    >>> tifffile.imwrite(path, np.zeros((2, 3, 16, 16), np.uint16), ome=True,
    ...                  metadata={"axes": "ZCYX", "Channel": {"Name": ["a", "b", "c"]}})
    >>> with open_stack(path) as stack:
    ...     print(stack.shape, stack.axes, stack.channel_axis, stack.channel_names)
    (2, 3, 16, 16) ZCYX 1 ['a', 'b', 'c']
    """
    return TiffStack(path, channel_axis)


def _normalize_axis(axis, ndim: int, path) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"channel_axis must be an integer, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"channel_axis={axis} is out of range for {path}, which has {ndim} axes; "
            f"use a value from {-ndim} to {ndim - 1}"
        )
    return int(axis) % ndim


def _read_ahead(stack: TiffStack, plan, depth: int):
    """Read the slabs of ``plan`` in a thread, ``depth`` ahead of the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader():
        try:
            for index in plan:
                if not put((index, stack.read(index))):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
            return
        put(done)

    thread = threading.Thread(target=reader, name="pixelmix-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _byte_runs(view: np.ndarray, limit: int = 4096) -> list[tuple[int, int]]:
    """Address ranges covering ``view``: split along leading axes until contiguous."""
    if view.size == 0:
        return []
    if view.flags.c_contiguous or view.ndim == 1:
        lo = view.__array_interface__["data"][0]
        if view.flags.c_contiguous:
            return [(lo, lo + view.nbytes)]
    runs: list[tuple[int, int]] = []
    if view.ndim == 1:
        lo = view.__array_interface__["data"][0]
        span = (view.shape[0] - 1) * view.strides[0] + view.itemsize
        return [(lo, lo + span)]
    for i in range(view.shape[0]):
        runs.extend(_byte_runs(view[i], limit))
        if len(runs) > limit:
            break
    return runs


def plan_slabs(
    shape: tuple[int, ...],
    channel_axis: int,
    itemsize: int,
    max_bytes: int = DEFAULT_SLAB_BYTES,
    chunks: tuple[int, ...] | None = None,
) -> list[tuple[slice, ...]]:
    """Cut an image into consecutive slabs of about ``max_bytes``, each with all channels.

    The image is cut along the outermost axis (other than the channel axis)
    where one index still fits in ``max_bytes``; the axes before it are
    walked one index at a time, the axes after it are taken whole. Cuts are
    rounded to whole ``chunks`` (tiles, strips) so no chunk is decoded twice.

    Examples
    --------
    >>> from pixelmix.tiff import plan_slabs
    >>> plan_slabs((3, 4, 8, 8), 1, 2, max_bytes=1024)
    [(slice(0, 2, None), slice(0, 4, None), slice(0, 8, None), slice(0, 8, None)), (slice(2, 3, None), slice(0, 4, None), slice(0, 8, None), slice(0, 8, None))]
    """
    ndim = len(shape)
    chunks = chunks or (1,) * ndim
    axes = [j for j in range(ndim) if j != channel_axis]
    if not axes:
        return [tuple(slice(0, n) for n in shape)]

    def unit(j: int) -> int:
        inner = math.prod(shape[j + 1 :])
        return itemsize * inner * (shape[channel_axis] if channel_axis < j else 1)

    split = next((j for j in axes if unit(j) <= max_bytes), axes[-1])
    step = max(1, min(shape[split], max_bytes // max(unit(split), 1)))
    grain = max(1, int(chunks[split]))
    if step >= grain:
        step -= step % grain
    outer = [j for j in axes if j < split]
    plan = []
    for combo in np.ndindex(*(shape[j] for j in outer)):
        fixed = dict(zip(outer, combo))
        for start in range(0, shape[split], step):
            index = []
            for j in range(ndim):
                if j in fixed:
                    index.append(slice(fixed[j], fixed[j] + 1))
                elif j == split:
                    index.append(slice(start, min(start + step, shape[split])))
                else:
                    index.append(slice(0, shape[j]))
            plan.append(tuple(index))
    return plan


# -- metadata ------------------------------------------------------------------


def _ome_root(tif):
    text = tif.ome_metadata if tif.is_ome else None
    if not text:
        return None, ""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None, ""
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    return root, ns


def _to_nm(value, unit) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    factor = _TO_NM.get(str(unit or "nm").strip().lower(), None)
    return None if factor is None else v * factor


def _channel_metadata(tif, n: int, letter: str) -> tuple[list[str] | None, list[float] | None]:
    """Channel names and wavelengths (nm) from OME, ImageJ, JSON or GDAL metadata."""
    names: list[str] | None = None
    waves: list[float] | None = None

    root, ns = _ome_root(tif)
    if root is not None:
        pixels = root.find(f"{ns}Image/{ns}Pixels")
        if pixels is not None:
            channels = pixels.findall(f"{ns}Channel")
            if len(channels) == n:
                got = [c.get("Name") for c in channels]
                if all(got):
                    names = [str(s) for s in got]
                for attr in ("EmissionWavelength", "ExcitationWavelength"):
                    vals = [_to_nm(c.get(attr), c.get(attr + "Unit")) for c in channels]
                    if all(v is not None for v in vals):
                        waves = vals  # type: ignore[assignment]
                        break

    if names is None and tif.is_imagej:
        labels = (tif.imagej_metadata or {}).get("Labels")
        if isinstance(labels, (list, tuple)) and len(labels) >= n and letter == "C":
            # ImageJ labels one plane each, in CZT order: the first n name the channels.
            names = [str(s) for s in labels[:n]]

    shaped = tif.shaped_metadata[0] if tif.is_shaped and tif.shaped_metadata else {}
    if names is None:
        got = shaped.get("channel_names")
        if isinstance(got, list) and len(got) == n:
            names = [str(s) for s in got]
    if waves is None:
        got = shaped.get("wavelengths", shaped.get("wavelength"))
        if isinstance(got, list) and len(got) == n:
            vals = [_to_nm(v, shaped.get("wavelength_units", "nm")) for v in got]
            if all(v is not None for v in vals):
                waves = vals  # type: ignore[assignment]

    gdal = tif.pages.first.tags.get("GDAL_METADATA")
    if gdal is not None and (names is None or waves is None):
        g_names, g_waves = _gdal_channels(str(gdal.value), n)
        names = names or g_names
        waves = waves or g_waves
    return names, waves


def _gdal_channels(text: str, n: int) -> tuple[list[str] | None, list[float] | None]:
    """Band descriptions and ENVI-style wavelengths from a GDAL_METADATA tag."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None, None
    unit = "nm"
    names: dict[int, str] = {}
    waves: dict[int, str] = {}
    for item in root.iter("Item"):
        key = (item.get("name") or "").lower()
        sample = item.get("sample")
        if key == "wavelength_units":
            unit = (item.text or "nm").strip()
        if sample is None:
            continue
        if key in ("wavelength", "wavelengths", "center_wavelength"):
            waves[int(sample)] = item.text or ""
        elif key == "description" or item.get("role") == "description":
            names[int(sample)] = (item.text or "").strip()
    out_names = [names[i] for i in range(n)] if sorted(names) == list(range(n)) else None
    out_waves = None
    if sorted(waves) == list(range(n)):
        vals = [_to_nm(waves[i], unit) for i in range(n)]
        if all(v is not None for v in vals):
            out_waves = vals
    return out_names, out_waves  # type: ignore[return-value]


def _calibration(tif, keyframe) -> dict[str, Any]:
    """Spatial calibration worth carrying to an output file."""
    cal: dict[str, Any] = {}
    try:
        res = keyframe.resolution
        if res and all(r and math.isfinite(r) for r in res) and tuple(res) != (1.0, 1.0):
            cal["resolution"] = (float(res[0]), float(res[1]))
            cal["resolutionunit"] = int(keyframe.resolutionunit)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        pass
    root, ns = _ome_root(tif)
    if root is not None:
        pixels = root.find(f"{ns}Image/{ns}Pixels")
        if pixels is not None:
            for key in ("PhysicalSizeX", "PhysicalSizeY", "PhysicalSizeZ", "TimeIncrement"):
                if pixels.get(key) is not None:
                    cal[key] = float(pixels.get(key))
                    if pixels.get(key + "Unit") is not None:
                        cal[key + "Unit"] = pixels.get(key + "Unit")
    elif tif.is_imagej:
        ij = tif.imagej_metadata or {}
        unit = ij.get("unit")
        unit = {"micron": "µm", "microns": "µm", "um": "µm", "\\u00B5m": "µm"}.get(unit, unit)
        res = cal.get("resolution")
        if res:  # ImageJ stores pixels per unit
            cal["PhysicalSizeX"] = 1.0 / res[0]
            cal["PhysicalSizeY"] = 1.0 / res[1]
        if ij.get("spacing"):
            cal["PhysicalSizeZ"] = float(ij["spacing"])
        if unit:
            for key in ("PhysicalSizeX", "PhysicalSizeY", "PhysicalSizeZ"):
                if key in cal:
                    cal[key + "Unit"] = unit
        if ij.get("finterval"):
            cal["TimeIncrement"] = float(ij["finterval"])
    return cal


# -- writing -----------------------------------------------------------------------


def output_layout(stack: TiffStack, n_out: int) -> tuple[tuple[int, ...], str]:
    """Shape and axes of the output of a K-channel mix of ``stack``: C replaced by K."""
    shape = list(stack.shape)
    shape[stack.channel_axis] = n_out
    axes = list(stack.axes)
    letter = axes[stack.channel_axis]
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


def _page_ndim(shape, axes: str) -> int:
    return 3 if axes.endswith("S") and len(shape) >= 3 else 2


def _write_kwargs(
    shape, dtype, axes: str, *, channel_names, provenance, calibration
) -> dict[str, Any]:
    """tifffile keyword arguments describing an output file."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    kwargs: dict[str, Any] = {"photometric": "minisblack"}
    k = shape[axes.index("S")] if "S" in axes else None
    if _page_ndim(shape, axes) == 3 and k and k > 1:
        kwargs["planarconfig"] = "contig"
    calibration = dict(calibration or {})
    if "resolution" in calibration:
        kwargs["resolution"] = tuple(calibration.pop("resolution"))
        kwargs["resolutionunit"] = calibration.pop("resolutionunit", None)
    else:
        calibration.pop("resolutionunit", None)
    desc = json.dumps({PROVENANCE_KEY: provenance}) if provenance is not None else None
    if _is_ome(axes):
        meta: dict[str, Any] = {"axes": axes}
        meta.update(calibration)
        if channel_names:
            meta["Channel"] = {"Name": list(channel_names)}
        if desc:
            meta["Description"] = desc
        kwargs["ome"] = True
    else:
        meta = {"axes": axes}
        if channel_names:
            meta["channel_names"] = list(channel_names)
        if provenance is not None:
            meta[PROVENANCE_KEY] = provenance
        meta.update({k: v for k, v in calibration.items() if k.startswith(("PhysicalSize", "Time"))})
        kwargs["ome"] = False
    kwargs["metadata"] = meta
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
) -> np.memmap:
    """Create an uncompressed, contiguous TIFF and return it memory-mapped for writing.

    Write the pixels in any order (``out[index] = ...``), then ``flush()``
    and drop the array. Metadata as in :func:`write_stack`.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from pixelmix.tiff import create_stack, open_stack
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
        shape, dtype, axes, channel_names=channel_names, provenance=provenance, calibration=calibration
    )
    return tifffile.memmap(os.fspath(path), shape=tuple(shape), dtype=np.dtype(dtype), **kwargs)


def _has_imagecodecs() -> bool:
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        return False
    return True


def codec_problem(compression: str | None) -> str | None:
    """Why ``compression`` cannot be written here (a missing codec), or None.

    zlib/deflate work with the standard library; the others need imagecodecs.
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

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from pixelmix.tiff import open_stack, page_tiles, write_stack
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
        shape, dtype, axes, channel_names=channel_names, provenance=provenance, calibration=calibration
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
    >>> from pixelmix.tiff import page_tiles
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
    shape: tuple[int, ...], page_ndim: int, plan: list[tuple[slice, ...]], tile_rows: int
) -> bool:
    """Whether the slabs of ``plan``, in turn, cover the file's tiles in file order.

    True when every slab is a run of whole pages that are consecutive in C
    order, or whole-width rows of one page that start on a tile row; then
    the output can be streamed to a compressed file tile by tile.
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
