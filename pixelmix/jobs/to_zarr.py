"""One TIFF stack mixed into a Zarr image group (OME-Zarr), level by level, atomically.

:func:`process_file_zarr` writes the group under a temporary name beside
its destination and renames it into place when complete; see
:mod:`pixelmix.io.zarr` for the layout.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np

from .. import config
from ..io import geotiff
from ..io import zarr as zarr_io
from ..io.ome import read_image
from ..io.ome_zarr import zarr_calibration
from ..io.publish import published
from ..io.pyramid import describe
from ..io.read import open_stack
from ..io.write import output_layout
from .constraints import HeldAtZero
from .provenance import keeps_channels, provenance
from .rules import FileResult, check_backend, check_destination, check_input, check_program, planned_output


def zarr_layout(stack, program, dtype) -> tuple[tuple[int, ...], str, np.dtype, list[str] | None]:
    """Output shape and axes (the input's own order), dtype and channel names for a Zarr group."""
    out_dtype, n_out, names = planned_output(stack, program, dtype)
    shape, axes = output_layout(stack, n_out)
    return shape, axes, out_dtype, names


def process_file_zarr(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    program,
    *,
    channel_axis: int | None = None,
    dtype=None,
    nodata=None,
    backend: str = "auto",
    max_bytes: int | None = None,
    max_ratio: float | None = None,
    overwrite: bool = False,
    file_nodata: bool = True,
    check_names: bool = True,
) -> FileResult:
    """Mix one TIFF stack into a Zarr image group ``dst``, atomically.

    The group is written under a temporary name beside ``dst`` and renamed
    into place when complete (so ``dst`` exists only whole), from slabs of
    about ``max_bytes`` read by :func:`pixelmix.io.read.open_stack`; see
    :mod:`pixelmix.io.zarr` for the layout. Every pyramid level becomes a
    level of the multiscale image, and an input of several series a group
    of images, one per series.

    Parameters
    ----------
    src : path-like
        Input TIFF.
    dst : path-like
        The image group to create, e.g. ``out.zarr/sample``.
    program : Mixer or Program
    channel_axis, dtype, nodata, backend, max_bytes, max_ratio, overwrite, file_nodata, check_names
        As for :func:`pixelmix.jobs.to_tiff.process_file`. After a failure (a full disk) every
        write Zarr started has ended before the temporary group is removed.

    Returns
    -------
    FileResult

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile, zarr
    >>> import pixelmix as pm
    >>> from pixelmix.jobs.to_zarr import process_file_zarr
    >>> d = tempfile.mkdtemp()
    >>> tifffile.imwrite(os.path.join(d, "in.tif"), np.ones((3, 32, 32), np.uint16), photometric="minisblack")
    >>> r = process_file_zarr(os.path.join(d, "in.tif"), os.path.join(d, "out.zarr", "in"),
    ...                       pm.Mixer([[1.0, 1.0, 1.0]]))
    >>> g = zarr.open_group(os.path.join(d, "out.zarr", "in"), mode="r")
    >>> r.status, g["0"].shape, [a["name"] for a in g.attrs["multiscales"][0]["axes"]]
    ('done', (1, 32, 32), ['c', 'y', 'x'])
    """
    check_backend(backend)
    src, dst = check_destination(src, dst, overwrite, where="output")
    t0 = time.perf_counter()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open_stack(src, channel_axis=channel_axis, max_ratio=max_ratio) as stack:
        check_input(program, stack, check_names)
        nodata = geotiff.input_nodata(stack.geo, stack.dtype, nodata, file_nodata)
        out_dtype = zarr_layout(stack, program, dtype)[2]
        held = HeldAtZero(program, channel_axis=stack.channel_axis, dtype=out_dtype)
        with published(dst, directory=True, replace=overwrite) as tmp:
            try:
                bytes_in = _write_zarr(
                    src, stack, tmp, program, name=dst.name, dtype=dtype, channel_axis=channel_axis,
                    max_ratio=max_ratio, nodata=nodata, backend=backend, max_bytes=max_bytes or config.SLAB_BYTES,
                    record=provenance(program, src, out_dtype, nodata), held=held,
                )
            finally:
                # Zarr's other chunk writes may still run after one failed: they
                # must end before the group is published or removed.
                zarr_io.wait_for_writes()
    return FileResult(
        src=src, dst=dst, status="done", bytes_in=bytes_in, bytes_out=zarr_io.dir_size(dst),
        seconds=time.perf_counter() - t0, held=held.hits, unmixed=held.pixels,
    )


def _write_zarr(
    src: Path, first, tmp: Path, program, *, name, dtype, channel_axis, max_ratio, nodata, backend, max_bytes,
    record, held,
) -> int:
    """Every series and pyramid level of ``src`` mixed into the image group(s) at ``tmp``.

    One series: ``tmp`` is its image group, the levels its arrays ``0``,
    ``1``, ... Several: ``tmp`` holds image groups ``0``, ``1``, ... (OME-Zarr's
    ``bioformats2raw.layout``). ``first`` is the open series 0, level 0.
    Returns the bytes of pixels read.
    """
    layout = describe(first)
    several = len(layout) > 1
    if several:
        root = zarr_io.open_group(tmp, "w")
        root.attrs.update({"bioformats2raw.layout": 3, "pixelmix": {"provenance": record}})
    keep = keeps_channels(program)
    bytes_in = 0
    for s, info in enumerate(layout):
        with contextlib.ExitStack() as stacks:
            parts = [first if (s, level) == (0, 0) else stacks.enter_context(
                open_stack(src, channel_axis=channel_axis, max_ratio=max_ratio, series=s, level=level))
                for level in range(len(info.levels))]
            top = parts[0]
            if s:
                check_program(program, top)
            shape, axes, out_dtype, names = zarr_layout(top, program, dtype)
            levels = [output_layout(part, shape[top.channel_axis])[0] for part in parts[1:]]
            ome = read_image(top.tiff, s)
            image = zarr_io.ZarrImage(
                tmp / str(s) if several else tmp, shape=shape, dtype=out_dtype, axes=axes,
                channel_axis=top.channel_axis, channel_names=names, calibration=zarr_calibration(top),
                provenance=record, name=(info.name or name) if several else name, levels=levels,
                colors=[c.get("Color") for c in ome.channels] if keep and ome is not None else None,
            )
            for level, part in enumerate(parts):
                counter = held if level == 0 else None
                for index, slab in part.iter_slabs(max_bytes):
                    block = program.apply(slab, channel_axis=part.channel_axis, dtype=out_dtype, nodata=nodata,
                                          backend=backend)
                    if counter is not None:
                        counter.add(block)
                    image.write(index, block, level)
                bytes_in += part.nbytes
            image.finish()
    return bytes_in
