"""Reading TIFF stacks of any size in slabs, never whole.

When the pixel data of the first series is stored contiguous and
uncompressed it is memory-mapped, and a slab is a view of the file (its
pages are page cache, not private memory; the kernel is asked to read the
next slab ahead while the current one is mixed). Otherwise the tiles or
strips a slab touches are read and decoded through tifffile's zarr store,
by a reader thread that keeps one slab ahead of the consumer. Slabs are cut
by :func:`pixelmix.plan.plan_slabs` (a lazy plan: an absurd claimed size
costs nothing to plan); the metadata is parsed by :mod:`pixelmix.io.metadata`.

Before anything is planned or created, a file must be able to hold the
pixels it claims: every page must list all its strips or tiles, the data
must lie inside the file, and the stored bytes must cover the claimed
pixels (uncompressed) or at least their share at the best ratio the codec
can reach (compressed; :data:`CODEC_MAX_RATIO`, :data:`MAX_COMPRESSION_RATIO`).
A 16 x 16 page whose tags claim 10^6 x 10^6 pixels is refused in
milliseconds instead of becoming a 2 TB output.
"""

from __future__ import annotations

import json
import logging
import math
import mmap
import os
import queue
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np

from ..plan import normalize_axis, plan_slabs
from .geotiff import read_geotiff
from .metadata import read_metadata
from .pyramid import tiff_series
from .names import shown
from .write import PROVENANCE_KEY

__all__ = ["TiffStack", "open_stack", "read_provenance", "CODEC_MAX_RATIO", "MAX_COMPRESSION_RATIO"]

# Bytes of pixels per stored byte that a codec reaches at best (with some room):
# deflate about 1032:1, TIFF's 12-bit LZW about 1400:1, PackBits 64:1, zstd
# 32768:1 (a 4-byte RLE block per 128 KB). A file claiming more is lying.
CODEC_MAX_RATIO = {
    "NONE": 1.0,
    "PACKBITS": 70.0,
    "ADOBE_DEFLATE": 1100.0,
    "DEFLATE": 1100.0,
    "LZW": 1500.0,
    "ZSTD": 33000.0,
    "ZSTD_DEPRECATED": 33000.0,
}
# The same for codecs without a known bound (JPEG, LERC, LZMA, WebP, ...); read
# at call time. A genuine file beyond it (sparse tiles, a blank image) is read
# with max_ratio= (``pixelmix apply --max-ratio``).
MAX_COMPRESSION_RATIO = 1000.0


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
    geo : pixelmix.io.geotiff.GeoInfo or None
        The GeoTIFF / GDAL tags (CRS, geotransform, nodata, interleave,
        tiling) of a file GDAL wrote, else None; they describe level 0 of
        series 0.
    compression : str
        Compression of the pixel data (``"NONE"``, ``"ADOBE_DEFLATE"``, ...).
    is_memmap : bool
        Whether slabs are views of a memory map (contiguous uncompressed data).
    provenance : dict or None
        The record of how pixelmix made the file (an output of ``pixelmix
        apply``), else None; read when first asked for.
    series_index, level : int
        The series and pyramid level read (both 0 unless asked otherwise).
    n_series : int
        Series in the file (OME images, or tifffile's series).
    n_levels : int
        Pyramid levels of this series (1: no pyramid).
    """

    def __init__(
        self,
        path,
        channel_axis: int | None = None,
        *,
        max_ratio: float | None = None,
        series: int = 0,
        level: int = 0,
    ):
        import tifffile

        self.path = Path(path)
        self.series_index = int(series)
        self.level = int(level)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path} is a directory, not a TIFF file")
        self._mmap = None
        self._memmap = None
        self._zarr = None
        self._store = None
        self._max_ratio = max_ratio
        with _TiffLog() as log:
            try:
                self._tif = tifffile.TiffFile(self.path)
            except (tifffile.TiffFileError, EOFError, OSError, ValueError, struct.error) as exc:
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
        images = tiff_series(tif)
        self.n_series = len(images)
        if not 0 <= self.series_index < self.n_series:
            raise ValueError(f"{self.path} has {self.n_series} series; there is no series {self.series_index}")
        levels = images[self.series_index]
        self.n_levels = len(levels)
        if not 0 <= self.level < self.n_levels:
            raise ValueError(f"{self.path} series {self.series_index} has {self.n_levels} levels, not {self.level + 1}")
        series = levels[self.level]
        self._series = series
        shape = tuple(int(n) for n in series.shape)
        axes = str(series.axes)
        if len(shape) == 0 or 0 in shape:
            raise ValueError(f"{self.path} holds an empty image (shape {shape})")
        # tifffile reports the native dtype; the bytes on disk have the file's order.
        self.dtype = np.dtype(series.dtype).newbyteorder("=")
        stored = self.dtype.newbyteorder(tif.byteorder)
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
        self.channel_axis = normalize_axis(channel_axis, self.ndim, str(self.path))

        self._check_complete(series)
        offset = series.dataoffset
        if offset is not None:
            self._open_memmap(offset, stored)
        self.is_memmap = self._memmap is not None

        meta = read_metadata(
            tif, self.shape[self.channel_axis], self.axes[self.channel_axis], self.series_index, self.level
        )
        self.kind = meta.kind
        self.calibration = meta.calibration
        self.channel_names = meta.channel_names
        self.wavelengths = meta.wavelengths
        # GDAL's tags describe the file's first image (its full resolution)
        self.geo = read_geotiff(tif) if self.series_index == 0 else None

    def _check_complete(self, series) -> None:
        """Raise if the file cannot hold the pixels its tags claim, or ends before them."""
        size = self._tif.filehandle.size
        end = 0
        missing = 0
        claimed = stored = 0
        try:
            for page in series.pages:
                if page is None:
                    missing += 1
                    continue
                offsets, counts = page.dataoffsets, page.databytecounts
                key = page.keyframe
                if len(offsets) < math.prod(key.chunked):
                    raise ValueError(
                        f"{shown(self.path)} is damaged or crafted: a page claims {key.shape} pixels, which "
                        f"take {math.prod(key.chunked)} strips or tiles, but lists only {len(offsets)}"
                    )
                claimed += math.prod(key.shape) * key.bitspersample // 8
                stored += sum(counts)
                if offsets:
                    end = max(end, max((o + c for o, c in zip(offsets, counts) if c), default=0))
        except ValueError:
            raise
        except Exception as exc:  # tifffile raises many types for a broken IFD chain
            raise ValueError(f"{self.path} is damaged: its pages cannot be read ({exc})") from None
        self._check_ratio(claimed, stored)
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

    def _check_ratio(self, claimed: int, stored: int) -> None:
        """Raise if ``stored`` bytes cannot hold ``claimed`` bytes of pixels at this codec's best."""
        limit = self._max_ratio
        if limit is None:
            limit = CODEC_MAX_RATIO.get(self.compression, MAX_COMPRESSION_RATIO)
        if claimed <= limit * stored:
            return
        what = "uncompressed" if self.compression == "NONE" else f"{self.compression}-compressed"
        ratio = "" if stored == 0 else f" (a ratio of {claimed / stored:.3g}:1, over the {limit:g}:1 this allows)"
        raise ValueError(
            f"{shown(self.path)} claims {claimed / 1e6:.4g} MB of pixels (shape {tuple(self._series.shape)}) "
            f"but stores {stored} bytes of {what} data{ratio}: its size tags are damaged or crafted; "
            f"if the file is genuine (sparse tiles, a blank image), raise the limit with max_ratio= "
            f"(pixelmix --max-ratio)"
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
    def provenance(self) -> dict | None:
        """The record of how pixelmix made this file (:func:`read_provenance`), or None."""
        if not hasattr(self, "_provenance"):
            self._provenance = read_provenance(self._tif)
        return self._provenance

    @property
    def tiff(self):
        """The open ``tifffile.TiffFile`` (for the metadata readers of :mod:`pixelmix.io`)."""
        return self._tif

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
        self, max_bytes: int | None = None, *, prefetch: int = 1
    ) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
        """Yield ``(index, slab)``: consecutive pieces covering the whole image.

        Each slab holds all channels (channel axis at ``channel_axis``) and
        about ``max_bytes`` bytes, and ``slab is stack[index]``; ``index``
        is a tuple of slices, one per axis, so slabs keep every dimension.

        Parameters
        ----------
        max_bytes : int, optional
            Target size of a slab (one line along the innermost axis at
            least); default ``pixelmix.config.SLAB_BYTES``.
        prefetch : int
            Slabs read ahead by a background thread (decoded files) or
            announced to the kernel for readahead (memory-mapped files).

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np, tifffile
        >>> from pixelmix.io.read import open_stack
        >>> path = os.path.join(tempfile.mkdtemp(), "stack.tif")
        >>> tifffile.imwrite(path, np.zeros((4, 64, 32), np.uint16), photometric="minisblack")
        >>> with open_stack(path) as stack:
        ...     [s.shape for _, s in stack.iter_slabs(max_bytes=8192)]
        [(4, 32, 32), (4, 32, 32)]
        """
        plan = plan_slabs(self.shape, self.channel_axis, self.dtype.itemsize, max_bytes, self.chunk_shape())
        if self._memmap is not None:
            # The hints are a system call per run of bytes (a channel of a channels-first slab): a thread of
            # their own makes them while the consumer works, not between its slabs.
            base = np.frombuffer(self._mmap, dtype=np.uint8, count=0).__array_interface__["data"][0]
            with ThreadPoolExecutor(1, thread_name_prefix="pixelmix-willneed") as hints:
                for i, index in enumerate(plan):
                    # Each slab is announced once, ``prefetch`` slabs before it is read.
                    ahead = plan[1 : 1 + prefetch] if i == 0 else plan[i + prefetch : i + 1 + prefetch]
                    for later in ahead if prefetch > 0 else ():
                        runs = [(lo - base, hi - lo) for lo, hi in _byte_runs(self._memmap[later])]
                        hints.submit(_willneed, self._tif.filehandle.fileno(), self._mmap, runs)
                    yield index, self.read(index)
            return
        if prefetch < 1:
            for index in plan:
                yield index, self.read(index)
            return
        yield from _read_ahead(self, plan, prefetch)

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


def open_stack(
    path: str | os.PathLike,
    channel_axis: int | None = None,
    *,
    max_ratio: float | None = None,
    series: int = 0,
    level: int = 0,
) -> TiffStack:
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
    max_ratio : float, optional
        The most bytes of pixels one stored byte may claim to hold (default:
        what the file's codec can reach, :data:`CODEC_MAX_RATIO`, 1 for
        uncompressed data, :data:`MAX_COMPRESSION_RATIO` for other codecs).
        Raise it for genuine sparse or blank files; ``math.inf`` turns the
        check off.
    series, level : int
        Which series of the file (an OME ``Image``, a tifffile series) and
        which level of its pyramid (0: full resolution) to read; see
        ``n_series`` and ``n_levels``.

    Returns
    -------
    TiffStack
        Use it as a context manager, or call ``close()``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a TIFF file, a truncated or damaged one, one that cannot hold the
        pixels it claims, or a bad ``channel_axis``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile
    >>> from pixelmix.io.read import open_stack
    >>> path = os.path.join(tempfile.mkdtemp(), "zcyx.ome.tif")
    >>> tifffile.imwrite(path, np.zeros((2, 3, 16, 16), np.uint16), ome=True,
    ...                  metadata={"axes": "ZCYX", "Channel": {"Name": ["a", "b", "c"]}})
    >>> with open_stack(path) as stack:
    ...     print(stack.shape, stack.axes, stack.channel_axis, stack.channel_names)
    (2, 3, 16, 16) ZCYX 1 ['a', 'b', 'c']
    """
    return TiffStack(path, channel_axis, max_ratio=max_ratio, series=series, level=level)


def read_provenance(tif) -> dict | None:
    """The provenance record pixelmix wrote into an open ``tifffile.TiffFile``, or None.

    It is the ``pixelmix`` entry of the JSON in the OME ``Description``, of
    tifffile's JSON image description, or of an ImageJ file's ``Properties``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile
    >>> from pixelmix.io.read import read_provenance
    >>> from pixelmix.io.write import create_stack
    >>> path = os.path.join(tempfile.mkdtemp(), "out.ome.tif")
    >>> out = create_stack(path, shape=(1, 8, 8), dtype=np.uint8, axes="CYX", provenance={"source": "a.tif"})
    >>> del out
    >>> with tifffile.TiffFile(path) as tif:
    ...     read_provenance(tif)
    {'source': 'a.tif'}
    """
    record = None
    try:
        if tif.is_ome and tif.ome_metadata:
            import xml.etree.ElementTree as ET

            root = ET.fromstring(tif.ome_metadata)
            ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            description = root.find(f"{ns}Image/{ns}Description")
            if description is not None and description.text:
                record = json.loads(description.text).get(PROVENANCE_KEY)
        elif tif.is_shaped and tif.shaped_metadata:
            record = tif.shaped_metadata[0].get(PROVENANCE_KEY)
        elif tif.is_imagej:  # pixelmix.io.imagej keeps it in the Properties
            record = json.loads(((tif.imagej_metadata or {}).get("Properties") or {}).get(PROVENANCE_KEY, "null"))
    except Exception:  # unreadable metadata: no record, the file is judged on its pixels
        return None
    return record if isinstance(record, dict) else None


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


def _willneed(fd: int, buffer: mmap.mmap, runs: list[tuple[int, int]]) -> None:
    """Ask the kernel to read ``runs`` (offset, length) of the file ``fd`` mapped as ``buffer`` ahead.

    A hint, never an error. ``posix_fadvise`` where the system has it: it lets
    go of the GIL, so that the thread that needs it (the consumer, back from
    a kernel) does not wait out Python's switch interval.
    """
    page = mmap.PAGESIZE
    for offset, length in runs:
        try:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)
            elif hasattr(buffer, "madvise"):
                start = offset // page * page
                buffer.madvise(mmap.MADV_WILLNEED, start, offset + length - start)
        except (OSError, ValueError):
            return


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
