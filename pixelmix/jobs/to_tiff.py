"""One TIFF stack mixed into a new TIFF file of its flavour, slab by slab, atomically.

:func:`process_file` writes the output under a temporary name and
publishes it (:mod:`pixelmix.io.publish`) only when complete and flushed to
disk, so a crash or SIGKILL never leaves a partial output under the final
name; an existing output is replaced only when asked (``overwrite``); a
file that does not fit on the disk fails alone, with the space it needs.
Errors are raised (:func:`pixelmix.jobs.file.run_job` turns them into a
failed result).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import config
from ..io import geotiff
from ..io.imagej import imagej_metadata, read_imagej
from ..io.ome import ome_layout, ome_metadata, read_image
from ..io.publish import published
from ..io.pyramid import LevelOut, SeriesOut, TiffOutput, describe, output_flavour
from ..io.read import open_stack
from ..io.space import reserved_map
from ..io.write import create_stack, in_file_order, output_layout, page_ndim, page_tiles, write_stack
from ..plan import plan_slabs
from .constraints import HeldAtZero
from .provenance import keeps_channels, provenance
from .rules import FileResult, check_backend, check_destination, check_input, check_program, planned_output


def process_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    program,
    *,
    channel_axis: int | None = None,
    dtype=None,
    nodata=None,
    compression: str | None = None,
    backend: str = "auto",
    tile: tuple[int, int] | None = None,
    max_bytes: int | None = None,
    max_ratio: float | None = None,
    overwrite: bool = False,
    progress: Callable[[int], Any] | None = None,
    file_nodata: bool = True,
    check_names: bool = True,
) -> FileResult:
    """Mix one TIFF stack into a new TIFF file, slab by slab, atomically.

    The output is of the input's flavour (:func:`pixelmix.io.pyramid.output_flavour`):
    an OME-TIFF of an OME input (its name, sizes, date, positions carried;
    :mod:`pixelmix.io.ome`), an ImageJ hyperstack of an ImageJ one
    (:mod:`pixelmix.io.imagej`), a GeoTIFF of a GeoTIFF; every series and
    pyramid level of the input is mixed and written as the same series and
    levels.

    Parameters
    ----------
    src, dst : path-like
        Input TIFF and output path. ``dst`` must not be ``src``.
    program : Mixer or Program
        Applied to every pixel (``pixelmix.load`` reads both).
    channel_axis : int, optional
        Overrides the channel axis read from the file's axes.
    dtype : dtype, optional
        Output dtype (default float32; float64 for float64 input). Integer
        types round half to even and saturate.
    nodata : number, optional
        Input value marking missing pixels (see ``Mixer.apply``). Default:
        the file's own (a GeoTIFF's ``GDAL_NODATA``) unless ``file_nodata``
        is False.
    compression : {None, "zlib", "zstd", "lzw"}
        None writes an uncompressed, contiguous, memory-mappable file
        (fastest; tiled when the input is a tiled GeoTIFF); otherwise a
        tiled, compressed one.
    backend : {"auto", "cpu", "cuda", "numpy"}
        Passed to ``apply``.
    tile : (int, int), optional
        Tile size of tiled outputs (default: a tiled GeoTIFF's own, else 256 x 256).
    max_bytes : int, optional
        Size of the input slabs read at once; bounds the memory used.
        Default ``pixelmix.config.SLAB_BYTES``.
    max_ratio : float, optional
        Passed to :func:`pixelmix.io.read.open_stack`: how many bytes of
        pixels one stored byte may claim before the input is refused.
    overwrite : bool
        Replace an existing ``dst`` (it is replaced atomically, at the end).
        Without it an existing ``dst``, or one another run publishes while
        this one writes, raises :class:`FileExistsError` and is kept.
    progress : callable, optional
        Called with the number of input bytes after each slab.
    file_nodata : bool
        Use the file's own nodata when ``nodata`` is not given.
    check_names : bool
        Refuse a mixer whose input channel names, when it records them,
        differ from the file's channel names (in order or set); False
        applies it by position.

    Returns
    -------
    FileResult
        ``status="done"``, sizes and time. Errors are raised (a batch
        turns them into failed results); ``dst`` is then untouched. A disk
        too full for an uncompressed output is an ``OSError`` ("No space
        left on device (needs N MB)") raised before any pixel is written.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile
    >>> import pixelmix as pm
    >>> from pixelmix.jobs.to_tiff import process_file
    >>> d = tempfile.mkdtemp()
    >>> tifffile.imwrite(os.path.join(d, "in.tif"), np.ones((3, 32, 32), np.uint16),
    ...                  photometric="minisblack")
    >>> r = process_file(os.path.join(d, "in.tif"), os.path.join(d, "out.tif"),
    ...                  pm.Mixer([[1.0, 1.0, 1.0]]))
    >>> r.status, tifffile.imread(os.path.join(d, "out.tif")).max()
    ('done', np.float32(3.0))
    """
    check_backend(backend)
    if max_bytes is None:
        max_bytes = config.SLAB_BYTES
    src, dst = check_destination(src, dst, overwrite, where="output directory")
    t0 = time.perf_counter()
    with open_stack(src, channel_axis=channel_axis, max_ratio=max_ratio) as stack:
        check_input(program, stack, check_names)
        nodata = geotiff.input_nodata(stack.geo, stack.dtype, nodata, file_nodata)
        out_dtype, n_out, names = planned_output(stack, program, dtype)
        record = provenance(program, src, out_dtype, nodata)
        held = HeldAtZero(program, channel_axis=stack.channel_axis, dtype=out_dtype)
        shape, axes = output_layout(stack, n_out)
        flavour = output_flavour(stack, dst, shape=shape, axes=axes, dtype=out_dtype)
        tile, tiled = _out_tile(stack, tile)
        with published(dst, replace=overwrite) as tmp:
            if flavour is None:
                wavelengths = stack.wavelengths if keeps_channels(program) else None
                _write_tiff(
                    stack, tmp, program, n_out=n_out, names=names, out_dtype=out_dtype, nodata=nodata,
                    compression=compression, backend=backend, tile=tile, max_bytes=max_bytes,
                    provenance=record, progress=progress, held=held, wavelengths=wavelengths, tiled=tiled,
                    extratags=_geo_tags(stack, program, names, wavelengths, out_dtype, nodata, file_nodata),
                )
                bytes_in = stack.nbytes
            else:  # OME or ImageJ, every series and pyramid level (pixelmix.io.pyramid)
                bytes_in = _write_flavoured(
                    src, stack, tmp, program, flavour, dtype=dtype, channel_axis=channel_axis, max_ratio=max_ratio,
                    nodata=nodata, compression=compression, backend=backend, tile=tile, max_bytes=max_bytes,
                    provenance=record, progress=progress, held=held,
                )
    return FileResult(
        src=src, dst=dst, status="done", bytes_in=bytes_in,
        bytes_out=dst.stat().st_size, seconds=time.perf_counter() - t0, held=held.hits, unmixed=held.pixels,
    )


def _geo_tags(stack, program, names, wavelengths, out_dtype, nodata, file_nodata) -> list[tuple]:
    """The GeoTIFF and GDAL tags of the output of a GeoTIFF (none for other inputs)."""
    geo = stack.geo
    if geo is None:
        return []
    # NaN declared as the input's nodata: its missing pixels are NaN, and so the output's
    nan = file_nodata and geo.nodata is not None and math.isnan(geo.nodata)
    return geotiff.output_tags(
        geo, names=names, wavelengths=wavelengths, keeps_channels=keeps_channels(program),
        nodata=geotiff.output_nodata(nodata, out_dtype, nan=nan),
    )


def _out_tile(stack, tile) -> tuple[tuple[int, int], bool]:
    """The output's tile size, and whether it is tiled even uncompressed (a tiled GeoTIFF in)."""
    geo_tile = None if stack.geo is None else stack.geo.tile
    if geo_tile is not None and (geo_tile[0] % 16 or geo_tile[1] % 16):
        geo_tile = None  # TIFF tiles are multiples of 16: such a file gets the default
    if tile is None:
        tile = geo_tile or (256, 256)
    return (int(tile[0]), int(tile[1])), geo_tile is not None


def _write_tiff(
    stack, tmp: Path, program, *, n_out, names, out_dtype, nodata, compression, backend,
    tile, max_bytes, provenance, progress, held, create=create_stack, write=write_stack,
    wavelengths=None, extratags=(), tiled=False,
) -> None:
    """Mix ``stack`` into the new file ``tmp`` (uncompressed memory map, or tiles).

    ``create`` makes the memory-mapped output (:func:`~pixelmix.io.write.create_stack`)
    and ``write`` streams the tiles of a compressed one
    (:func:`~pixelmix.io.write.write_stack`); :func:`_write_flavoured` passes
    ones that fill one level of a file of several series and levels.
    ``tiled`` writes tiles even uncompressed (the input is a tiled GeoTIFF).
    """
    shape, axes = output_layout(stack, n_out)
    meta = dict(channel_names=names, provenance=provenance, calibration=stack.calibration)
    if wavelengths is not None or extratags:
        meta.update(wavelengths=wavelengths, extratags=extratags)
    axis = stack.channel_axis

    def mix(slab, out):
        program.apply(slab, channel_axis=axis, dtype=out_dtype, nodata=nodata, out=out, backend=backend)
        held.add(out)
        if progress is not None:
            progress(slab.nbytes)

    if compression is None and not tiled:
        out = create(tmp, shape=shape, dtype=out_dtype, axes=axes, **meta)
        try:
            whole = stack.mapped()
            if whole is not None and out.flags.c_contiguous:
                # Both files map contiguously: the kernel runs from map to map,
                # through the page cache (no private copy of either, and no slab
                # copies: a row band of every channel is not contiguous). Pieces
                # along the first axis, when it is not the channels, stay
                # contiguous and give progress. (Along the channels, the input's C
                # and the output's K differ: one piece.)
                if axis == 0:
                    mix(whole, out)
                else:
                    step = max(1, max_bytes * whole.shape[0] // max(whole.nbytes, 1))
                    for i in range(0, whole.shape[0], step):
                        mix(whole[i : i + step], out[i : i + step])
            else:
                for index, slab in stack.iter_slabs(max_bytes):
                    mix(slab, out[_all_channels(index, axis)])
            out.flush()
        finally:
            del out
        return

    n_page = page_ndim(shape, axes)
    tile = tuple(int(t) for t in tile)
    plan = plan_slabs(stack.shape, axis, stack.dtype.itemsize, max_bytes, _tile_grain(stack, tile, n_page))
    if in_file_order(shape, n_page, plan, tile[0]):
        # Stream: each slab's output is cut into tiles as tifffile asks for them.
        def tiles():
            for index, slab in stack.iter_slabs(max_bytes):
                out_shape = tuple(s.stop - s.start for s in index)
                out_shape = out_shape[:axis] + (n_out,) + out_shape[axis + 1 :]
                block = np.empty(out_shape, out_dtype)
                mix(slab, block)
                yield from page_tiles(block, tile, n_page)

        write(tmp, tiles(), shape=shape, dtype=out_dtype, axes=axes, tile=tile,
                    compression=compression, **meta)
        return

    # The slabs cut across pages (e.g. row bands of every channel plane):
    # mix into an uncompressed spill file first, then compress it page by page.
    spill_path = tmp.with_suffix(".spill")
    try:
        spill = _open_spill(spill_path, out_dtype, shape)
        for index, slab in stack.iter_slabs(max_bytes):
            mix(slab, spill[_all_channels(index, axis)])
        spill.flush()
        write(tmp, page_tiles(spill, tile, n_page), shape=shape, dtype=out_dtype,
                    axes=axes, tile=tile, compression=compression, **meta)
        del spill
    finally:
        if spill_path.exists():
            spill_path.unlink()


def _write_flavoured(
    src: Path, first, tmp: Path, program, flavour: str, *, dtype, channel_axis, max_ratio, held, **options
) -> int:
    """Every series and pyramid level of ``src`` mixed into ``tmp``, an OME or ImageJ file.

    Each level is mixed directly, slab by slab, by :func:`_write_tiff` (the
    mean downsampling that made a level commutes with an affine mix; a
    nonlinear program is applied to each level as it is). ``first`` is the
    open series 0, level 0; ``held`` counts the full-resolution levels.
    Returns the bytes of pixels read.
    """
    layout = describe(first)
    parts = [(s, level) for s, info in enumerate(layout) for level in range(len(info.levels))]
    keep = keeps_channels(program)

    def opened(s, level):
        if (s, level) == (0, 0):
            return contextlib.nullcontext(first)
        return open_stack(src, channel_axis=channel_axis, max_ratio=max_ratio, series=s, level=level)

    series: list[SeriesOut] = []
    for s, level in parts:
        with opened(s, level) as part:
            try:
                check_program(program, part)
            except ValueError as exc:
                raise ValueError(f"series {s} ({layout[s].name or 'unnamed'}) {exc}" if s else str(exc)) from None
            out_dtype, n_out, names = planned_output(part, program, dtype)
            shape, axes = output_layout(part, n_out)
            cal = part.calibration
            if level == 0:
                if flavour == "imagej":
                    meta = imagej_metadata(read_imagej(part.tiff), shape=shape, axes=axes, channel_names=names,
                                           provenance=options["provenance"])
                else:
                    declared, declared_axes = ome_layout(shape, axes)
                    meta = ome_metadata(
                        read_image(part.tiff, s), shape=declared, axes=declared_axes, channel_names=names,
                        keep_channels=keep, calibration=cal, provenance=options["provenance"] if s == 0 else None,
                        name=layout[s].name or _stem(src), wavelengths=part.wavelengths,
                    )
                series.append(SeriesOut(axes=axes, dtype=out_dtype, levels=[], metadata=meta))
            series[s].levels.append(LevelOut(shape, cal.get("resolution"), cal.get("resolutionunit")))

    bytes_in = 0
    with TiffOutput(tmp, series, flavour=flavour, compression=options["compression"], tile=options["tile"]) as out:
        for s, level in parts:
            with opened(s, level) as part:
                _, n_out, names = planned_output(part, program, dtype)
                planned = series[s].levels[level].shape

                def create(path, *, shape, s=s, level=level, planned=planned, **_):
                    _same_shape(shape, planned)
                    return out.array(s, level)

                def write(path, tiles, *, shape, s=s, level=level, planned=planned, **_):
                    _same_shape(shape, planned)
                    out.write(s, level, tiles)

                counter = held if (s, level) == (0, 0) else HeldAtZero(
                    program, channel_axis=part.channel_axis, dtype=series[s].dtype)
                _write_tiff(part, tmp, program, n_out=n_out, names=names, out_dtype=series[s].dtype,
                            held=counter, create=create, write=write, **options)
                if level == 0 and s > 0:
                    held.hits += counter.hits
                    held.pixels += counter.pixels
                bytes_in += part.nbytes
    return bytes_in


def _same_shape(got, planned) -> None:
    if tuple(got) != tuple(planned):
        raise RuntimeError(f"a level mixed to shape {tuple(got)} where {tuple(planned)} was laid out")


def _stem(path: Path) -> str:
    """A file's name without its TIFF suffixes: the image name of an output whose input has none."""
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".btf", ".tf8", ".tf2"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _all_channels(index: tuple[slice, ...], axis: int) -> tuple[slice, ...]:
    """The output's part for an input slab ``index``: the same pixels, every output channel."""
    return index[:axis] + (slice(None),) + index[axis + 1 :]


def _open_spill(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A new ``.npy`` scratch file mapped for writing, its blocks reserved (no SIGBUS on a full disk)."""
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    return reserved_map(path, nbytes, lambda: np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape))


def _tile_grain(stack, tile, n_page) -> tuple[int, ...]:
    """Chunk sizes for slab planning: the input's chunks, with output tile rows on Y."""
    grain = list(stack.chunk_shape())
    y = stack.ndim - n_page
    if 0 <= y < stack.ndim:
        grain[y] = int(np.lcm(max(1, grain[y]), tile[0]))
    return tuple(grain)
