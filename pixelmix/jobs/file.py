"""One input file to one output under the batch rules.

- :func:`process_file` mixes a TIFF stack into a new TIFF file and
  :func:`process_file_zarr` into a Zarr image group, slab by slab, in
  bounded memory; the output is written under a temporary name and
  published (:mod:`pixelmix.io.publish`) only when complete and flushed to
  disk, so a crash or SIGKILL never leaves a partial output under the final
  name. Errors are raised.
- :func:`run_job` is what a batch runs for each input, here or on a cluster
  worker: it skips an input whose output is already complete and made by
  the same program (``resume``) and turns any error into a failed
  :class:`FileResult`, never raising.

An existing output is replaced only when asked (``overwrite``, or
``resume`` redoing an output that is incomplete or made otherwise); an
output that another run publishes first, while this one is writing, is
kept and this input fails with "appeared while this output was written"
(or is skipped under ``resume`` when it is the same output). A file that
does not fit on the disk fails alone, with the space it needs.

Every output records its provenance (:func:`provenance`): the program's
SHA-256, the program itself when its JSON is at most
:data:`PROVENANCE_MAX_BYTES` (else a bounded summary), the source, the
output dtype, nodata and the time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__, config
from ..dispatch import BACKENDS
from ..io import geotiff
from ..io import zarr as zarr_io
from ..io.imagej import imagej_metadata, read_imagej
from ..io.names import shown
from ..io.ome import ome_layout, ome_metadata, read_image
from ..io.ome_zarr import zarr_calibration
from ..io.publish import published
from ..io.pyramid import LevelOut, SeriesOut, TiffOutput, describe, output_flavour
from ..io.read import open_stack
from ..io.space import is_full, reserved_map
from .constraints import HeldAtZero
from ..io.write import create_stack, in_file_order, output_layout, page_ndim, page_tiles, write_stack
from ..ops import Program
from ..plan import dtype_problem, output_dtype, plan_slabs

__all__ = [
    "FileResult",
    "process_file",
    "process_file_zarr",
    "run_job",
    "is_complete",
    "failure_reason",
    "provenance",
    "program_sha256",
    "same_origin",
    "program_info",
    "program_input_names",
    "keeps_channels",
    "PROVENANCE_MAX_BYTES",
]

# Provenance embeds the program whole only when its JSON is at most this many
# bytes; a larger one (a huge matrix, a hostile metadata string) is recorded
# by its SHA-256 and a summary of at most about 8 KB, so every output carries
# a bounded record.
PROVENANCE_MAX_BYTES = 2**20
# Bounds of the summary of a program too large to embed.
_SUMMARY_NAMES = 32
_SUMMARY_TEXT = 2048


@dataclass
class FileResult:
    """What happened to one input."""

    src: Path
    dst: Path | None
    status: str  # "done", "skipped" or "failed"
    reason: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    traceback: str = ""
    held: int = 0  # pixels with an abundance held at 0 by a constrained unmixer (jobs.constraints)
    unmixed: int = 0  # pixels counted for ``held``


def failure_reason(exc: BaseException, path=None) -> str:
    """One line saying what went wrong (without ``path``, which the caller prints).

    Examples
    --------
    >>> from pixelmix.jobs.file import failure_reason
    >>> failure_reason(ValueError("a.tif is not a readable TIFF file (bad header)"), "a.tif")
    'not a readable TIFF file (bad header)'
    """
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.strerror:
        # A full disk is about the disk, not the temporary entry that hit it.
        text = exc.strerror + (f": {shown(exc.filename)}" if exc.filename and not is_full(exc) else "")
    if not text or not isinstance(exc, (ValueError, TypeError, OSError, ImportError)):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if path is not None:
        for prefix in (f"{path}: ", f"{path} is ", f"{path} "):
            if text.startswith(prefix):
                text = text[len(prefix):]
                break
    return text.splitlines()[0] if text else text


def program_info(program) -> tuple[int | None, int | None, list[str] | None]:
    """(n_inputs, n_outputs, output names) of a Mixer or Program.

    Examples
    --------
    >>> import pixelmix as pm
    >>> from pixelmix.jobs.file import program_info
    >>> program_info(pm.Mixer([[1.0, 0.0], [0.0, 1.0]], output_names=["a", "b"]))
    (2, 2, ['a', 'b'])
    """
    names = None
    if isinstance(program, Program):
        for step in reversed(program.steps):
            if hasattr(step, "output_names"):
                names = step.output_names
                break
    else:
        names = program.output_names
    return program.n_inputs, program.n_outputs, None if names is None else list(names)


def program_input_names(program) -> list[str] | None:
    """The channel names a Mixer or Program was made for (its first mixer's input names), or None.

    Examples
    --------
    >>> import pixelmix as pm
    >>> from pixelmix import ops
    >>> from pixelmix.jobs.file import program_input_names
    >>> program_input_names(pm.Program([ops.relu(), pm.Mixer([[1.0, 1.0]], input_names=["a", "b"])]))
    ['a', 'b']
    """
    step = _first_mixing_step(program)
    names = getattr(step, "input_names", None)
    return None if names is None else list(names)


def _first_mixing_step(program):
    steps = program.steps if isinstance(program, Program) else (program,)
    # elementwise steps before it keep the channels: its inputs are the file's
    return next((step for step in steps if step.n_inputs is not None), None)


def keeps_channels(program) -> bool:
    """Whether output channel i of ``program`` is its input channel i.

    True for an elementwise program, and for a map whose output names are
    its input names (a denoiser such as ``pca.pinv() @ pca``): what the
    input says of its channels (wavelengths) then still holds.

    Examples
    --------
    >>> import numpy as np
    >>> import pixelmix as pm
    >>> from pixelmix.jobs.file import keeps_channels
    >>> pca = pm.Mixer(np.eye(2, 3), input_names=["a", "b", "c"], output_names=["PC1", "PC2"])
    >>> keeps_channels(pca), keeps_channels(pca.pinv() @ pca)
    (False, True)
    """
    _, n_out, out_names = program_info(program)
    if n_out is None:
        return True
    in_names = program_input_names(program)
    return in_names is not None and out_names is not None and list(in_names) == list(out_names)


def _program_text(program) -> tuple[dict[str, Any], str]:
    body = program.to_dict()
    return body, json.dumps(body, sort_keys=True)


def program_sha256(program) -> str:
    """SHA-256 of the program's canonical JSON: what provenance records and ``resume`` compares.

    Examples
    --------
    >>> import pixelmix as pm
    >>> from pixelmix.jobs.file import program_sha256
    >>> program_sha256(pm.Mixer([[1.0, 2.0]])) == program_sha256(pm.Mixer([[1.0, 2.0]]))
    True
    >>> program_sha256(pm.Mixer([[1.0, 2.0]])) == program_sha256(pm.Mixer([[2.0, 1.0]]))
    False
    """
    return hashlib.sha256(_program_text(program)[1].encode()).hexdigest()


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary(body: dict[str, Any], program, n_bytes: int) -> dict[str, Any]:
    """What a program too large to embed leaves in provenance: kind, sizes, a few names."""
    n_in, n_out, names = program_info(program)
    summary: dict[str, Any] = {
        "kind": body.get("kind"),
        "n_inputs": n_in,
        "n_outputs": n_out,
        "json_bytes": n_bytes,
        "note": f"the program's JSON is over {PROVENANCE_MAX_BYTES} bytes: only this summary is kept",
    }
    if isinstance(body.get("steps"), list):
        summary["n_steps"] = len(body["steps"])
    if names:
        summary["output_names"] = [_cut(str(n), 64) for n in names[:_SUMMARY_NAMES]]
    metadata = body.get("metadata")
    if metadata:
        summary["metadata"] = _cut(json.dumps(metadata, sort_keys=True), _SUMMARY_TEXT)
    return summary


def provenance(program, src: Path, dtype: np.dtype, nodata) -> dict[str, Any]:
    """The record of how an output was made, JSON-ready and bounded in size.

    It holds the program's SHA-256 (:func:`program_sha256`), and the
    program itself when its JSON is at most :data:`PROVENANCE_MAX_BYTES`,
    else a summary of a few KB (kind, sizes, the first output names, the
    start of the metadata).

    Examples
    --------
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import pixelmix as pm
    >>> from pixelmix.jobs.file import provenance
    >>> huge = pm.Mixer([[1.0]], metadata={"note": "x" * 10**7})
    >>> record = provenance(huge, Path("a.tif"), np.dtype("float32"), None)
    >>> "program" in record, len(str(record)) < 8000, record["program_summary"]["n_outputs"]
    (False, True, 1)
    """
    body, text = _program_text(program)
    record: dict[str, Any] = {
        "software": f"pixelmix {__version__}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": _cut(src.name, 512),
        "dtype": dtype.name,
        "nodata": nodata,
        "program_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    if len(text) <= PROVENANCE_MAX_BYTES:  # ASCII: json.dumps escapes the rest
        record["program"] = body
    else:
        record["program_summary"] = _summary(body, program, len(text))
    return record


def same_origin(record: dict[str, Any] | None, sha256: str, dtype, nodata) -> bool:
    """Whether a provenance ``record`` says its output was made by this program, dtype and nodata.

    Examples
    --------
    >>> from pixelmix.jobs.file import same_origin
    >>> record = {"program_sha256": "ab12", "dtype": "float32", "nodata": None}
    >>> same_origin(record, "ab12", "float32", None), same_origin(record, "cd34", "float32", None)
    (True, False)
    """
    if not isinstance(record, dict) or record.get("dtype") is None:
        return False
    try:
        return (
            record.get("program_sha256") == sha256
            and np.dtype(record.get("dtype")) == np.dtype(dtype)
            and record.get("nodata") == nodata
        )
    except TypeError:
        return False


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` both exist and are the same file (or directory)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def is_complete(
    dst: str | os.PathLike,
    shape: tuple[int, ...] | None = None,
    dtype=None,
    *,
    sha256: str | None = None,
    nodata=None,
) -> bool:
    """Whether ``dst`` is a whole, readable TIFF (of ``shape`` and ``dtype`` if given).

    With ``sha256`` it must also have been made by that program (its
    provenance records the SHA-256, see :func:`program_sha256`) with the
    same ``dtype`` and ``nodata``.
    """
    try:
        with open_stack(dst) as stack:
            # TIFF readers drop axes of length 1 (one output channel of an OME or ImageJ file)
            if shape is not None and [n for n in stack.shape if n != 1] != [n for n in shape if n != 1]:
                return False
            if dtype is not None and stack.dtype != np.dtype(dtype):
                return False
            if sha256 is not None and not same_origin(stack.provenance, sha256, stack.dtype, nodata):
                return False
    except Exception:
        return False
    return True


def _listed(names, limit: int = 16) -> str:
    shown_names = [repr(shown(n)) for n in names]
    if len(shown_names) > limit:
        shown_names = shown_names[:limit] + [f"... ({len(names)} in all)"]
    return "[" + ", ".join(shown_names) + "]"


def _check_names(program, stack) -> None:
    """Refuse a mixer made for channels named otherwise than the file's (in order and set).

    A preset's input names say what it expects in general (``R, G, B``, the
    wavelengths it was built for), not which file it came from: not checked.
    """
    metadata = getattr(_first_mixing_step(program), "metadata", None) or {}
    while metadata.get("method") == "compose" and metadata.get("steps"):
        metadata = metadata["steps"][0] or {}  # the map applied first holds the input names
    if metadata.get("method") == "preset":
        return
    expected = program_input_names(program)
    found = stack.channel_names
    if expected is None or found is None or len(expected) != len(found) or list(expected) == list(found):
        return
    first = next(i for i, (a, b) in enumerate(zip(found, expected)) if a != b)
    how = "the same channels in another order" if sorted(expected) == sorted(found) else "other channels"
    raise ValueError(
        f"has channels {_listed(found)} but the mixer was made for {_listed(expected)} ({how}: "
        f"channel {first} is {shown(found[first])!r}, the mixer's is {shown(expected[first])!r}); "
        f"give it a file with the mixer's channels, or pass --ignore-channel-names "
        f"(check_names=False) to apply it by position anyway"
    )


def _check_input(program, stack, check_names: bool) -> None:
    """Refuse an input the program cannot run on, before any output is created."""
    problem = dtype_problem(stack.dtype)
    if problem is not None:
        raise ValueError(problem)
    _check_program(program, stack)
    if check_names:
        _check_names(program, stack)


def _check_program(program, stack) -> None:
    n_in = program.n_inputs
    if n_in is not None and stack.n_channels != n_in:
        hint = ""
        matches = [ax for ax, n in enumerate(stack.shape) if n == n_in and ax != stack.channel_axis]
        if matches:
            hint = f"; pass --channel-axis {matches[0]} (channel_axis={matches[0]}) if that axis holds the channels"
        raise ValueError(
            f"has {stack.n_channels} channels on axis {stack.channel_axis} "
            f"(axes {stack.axes}, shape {stack.shape}) but the mixer expects {n_in}{hint}"
        )


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {', '.join(map(repr, BACKENDS))}")


def _output(stack, program, dtype) -> tuple[np.dtype, int, list[str] | None]:
    """The output dtype, channel count and channel names of ``program`` on ``stack``."""
    out_dtype = output_dtype(stack.dtype, dtype)
    _, n_out, names = program_info(program)
    if n_out is None:  # an elementwise program keeps the channels
        n_out, names = stack.n_channels, stack.channel_names
    return out_dtype, n_out, names


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
    >>> from pixelmix.jobs.file import process_file
    >>> d = tempfile.mkdtemp()
    >>> tifffile.imwrite(os.path.join(d, "in.tif"), np.ones((3, 32, 32), np.uint16),
    ...                  photometric="minisblack")
    >>> r = process_file(os.path.join(d, "in.tif"), os.path.join(d, "out.tif"),
    ...                  pm.Mixer([[1.0, 1.0, 1.0]]))
    >>> r.status, tifffile.imread(os.path.join(d, "out.tif")).max()
    ('done', np.float32(3.0))
    """
    _check_backend(backend)
    if max_bytes is None:
        max_bytes = config.SLAB_BYTES
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve() or same_file(src, dst):
        raise ValueError(f"refusing to overwrite the input {shown(src)}: choose another output directory")
    if os.path.lexists(dst) and not overwrite:
        raise FileExistsError(f"{shown(dst)} exists; pass --resume to skip finished outputs or --overwrite")
    t0 = time.perf_counter()
    with open_stack(src, channel_axis=channel_axis, max_ratio=max_ratio) as stack:
        _check_input(program, stack, check_names)
        nodata = geotiff.input_nodata(stack.geo, stack.dtype, nodata, file_nodata)
        out_dtype, n_out, names = _output(stack, program, dtype)
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
                _check_program(program, part)
            except ValueError as exc:
                raise ValueError(f"series {s} ({layout[s].name or 'unnamed'}) {exc}" if s else str(exc)) from None
            out_dtype, n_out, names = _output(part, program, dtype)
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
                _, n_out, names = _output(part, program, dtype)
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


def _zarr_layout(stack, program, dtype) -> tuple[tuple[int, ...], str, np.dtype, list[str] | None]:
    """Output shape and axes (the input's own order), dtype and channel names for a Zarr group."""
    out_dtype, n_out, names = _output(stack, program, dtype)
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
        As for :func:`process_file`. After a failure (a full disk) every
        write Zarr started has ended before the temporary group is removed.

    Returns
    -------
    FileResult

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile, zarr
    >>> import pixelmix as pm
    >>> from pixelmix.jobs.file import process_file_zarr
    >>> d = tempfile.mkdtemp()
    >>> tifffile.imwrite(os.path.join(d, "in.tif"), np.ones((3, 32, 32), np.uint16), photometric="minisblack")
    >>> r = process_file_zarr(os.path.join(d, "in.tif"), os.path.join(d, "out.zarr", "in"),
    ...                       pm.Mixer([[1.0, 1.0, 1.0]]))
    >>> g = zarr.open_group(os.path.join(d, "out.zarr", "in"), mode="r")
    >>> r.status, g["0"].shape, [a["name"] for a in g.attrs["multiscales"][0]["axes"]]
    ('done', (1, 32, 32), ['c', 'y', 'x'])
    """
    _check_backend(backend)
    src, dst = Path(src), Path(dst)
    if same_file(src, dst) or src.resolve() == dst.resolve():
        raise ValueError(f"refusing to overwrite the input {shown(src)}: choose another output")
    if os.path.lexists(dst) and not overwrite:
        raise FileExistsError(f"{shown(dst)} exists; pass --resume to skip finished outputs or --overwrite")
    t0 = time.perf_counter()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open_stack(src, channel_axis=channel_axis, max_ratio=max_ratio) as stack:
        _check_input(program, stack, check_names)
        nodata = geotiff.input_nodata(stack.geo, stack.dtype, nodata, file_nodata)
        out_dtype = _zarr_layout(stack, program, dtype)[2]
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
                _check_program(program, top)
            shape, axes, out_dtype, names = _zarr_layout(top, program, dtype)
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


def _tiff_resumable(src: Path, dst: Path, program, options) -> bool:
    """Whether ``dst`` already holds the complete TIFF output of ``program`` for ``src``."""
    try:
        with open_stack(src, options.get("channel_axis"), max_ratio=options.get("max_ratio")) as stack:
            n_out = program.n_outputs or stack.n_channels
            shape, _ = output_layout(stack, n_out)
            dtype = output_dtype(stack.dtype, options.get("dtype"))
            nodata = _options_nodata(stack, options)
    except Exception:
        return False
    return is_complete(dst, shape, dtype, sha256=program_sha256(program), nodata=nodata)


def _options_nodata(stack, options) -> float | None:
    """The nodata a job with ``options`` uses on ``stack`` (what its provenance records)."""
    return geotiff.input_nodata(stack.geo, stack.dtype, options.get("nodata"), options.get("file_nodata", True))


def _zarr_resumable(src: Path, dst: Path, program, options) -> bool:
    """Whether ``dst`` already holds the complete image group of ``program`` for ``src``."""
    try:
        with open_stack(src, options.get("channel_axis"), max_ratio=options.get("max_ratio")) as stack:
            shape, axes, out_dtype, _ = _zarr_layout(stack, program, options.get("dtype"))
            stored = zarr_io.stored_shape(shape, axes, stack.channel_axis)
            nodata = _options_nodata(stack, options)
    except Exception:
        return False
    return zarr_io.is_complete(dst, stored, out_dtype) and same_origin(
        zarr_io.read_provenance(dst), program_sha256(program), out_dtype, nodata
    )


def _run(process, resumable, src, dst, program, *, resume, overwrite, **kwargs) -> FileResult:
    """The resume rules around ``process`` (process_file or process_file_zarr); errors are raised.

    An output that another run publishes while this one writes is kept: the
    input fails with FileExistsError, or is skipped under ``resume`` when
    that output is this program's.
    """
    existed = os.path.lexists(dst)
    if existed and resume and resumable(src, dst, program, kwargs):
        return FileResult(src, dst, "skipped", "output already complete")
    try:
        # resume replaces only what it found and judged unfinished or made otherwise
        return process(src, dst, program, overwrite=overwrite or (resume and existed), **kwargs)
    except FileExistsError:
        if resume and resumable(src, dst, program, kwargs):
            return FileResult(src, dst, "skipped", "output already complete")
        raise


def _tiff_job(src, dst, program, *, resume, overwrite, debug, options, bar, size) -> FileResult:
    seen = 0
    total_pixels = [0]

    def progress(nbytes):
        nonlocal seen
        total_pixels[0] += nbytes
        # the bar counts file bytes; advance it in proportion to pixels mixed
        step = int(size * total_pixels[0] / max(expected[0], 1)) - seen
        if step > 0:
            bar.update(step)
            seen += step

    expected = [1]
    try:
        if bar is not None:
            with open_stack(src, options.get("channel_axis"), max_ratio=options.get("max_ratio")) as stack:
                expected[0] = stack.nbytes
                if stack.geo is None:  # every series and level is mixed (_write_flavoured)
                    pixels = sum(math.prod(shape) for info in describe(stack) for shape in info.levels)
                    expected[0] = pixels * stack.dtype.itemsize
        return _run(process_file, _tiff_resumable, src, dst, program, resume=resume, overwrite=overwrite,
                    progress=None if bar is None else progress, **options)
    except Exception as exc:
        reason = failure_reason(exc, src)
        return FileResult(
            src, dst, "failed", reason,
            traceback=traceback.format_exc() if debug else "",
        )
    finally:
        if bar is not None and size - seen > 0:
            bar.update(size - seen)


def _zarr_job(src: Path, dst: Path, program, *, resume, overwrite, debug, options) -> FileResult:
    try:
        return _run(process_file_zarr, _zarr_resumable, src, dst, program, resume=resume, overwrite=overwrite,
                    **options)
    except Exception as exc:
        return FileResult(
            src, dst, "failed", failure_reason(exc, src), traceback=traceback.format_exc() if debug else ""
        )


def run_job(
    src: Path,
    dst: Path,
    program,
    *,
    zarr: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    debug: bool = False,
    options: dict[str, Any] | None = None,
    bar=None,
    size: int = 0,
) -> FileResult:
    """One input of a batch: skipped if its output is complete, else processed; never raises.

    Parameters
    ----------
    src, dst : pathlib.Path
        The input and its output (a TIFF file, or with ``zarr`` an image group).
    program : Mixer or Program
    zarr : bool
        Write a Zarr image group (:func:`process_file_zarr`) instead of a TIFF.
    resume : bool
        Skip the input when ``dst`` already holds its complete output made
        by the same program (the SHA-256 in its provenance), dtype and
        nodata; redo (replace) an existing ``dst`` otherwise.
    overwrite : bool
        Replace an existing ``dst``. Without it (or ``resume``) an existing
        output, or one another run publishes meanwhile, is kept and the
        input fails.
    debug : bool
        Keep the traceback of a failure in the result.
    options : dict, optional
        Passed to :func:`process_file` or :func:`process_file_zarr`.
    bar : tqdm-like, optional
        Advanced by ``size`` in all, in proportion to the pixels mixed (TIFF output).
    size : int
        The input's share of ``bar``.

    Returns
    -------
    FileResult
        ``"done"``, ``"skipped"``, or ``"failed"`` with a one-line reason.

    Examples
    --------
    >>> from pathlib import Path
    >>> import pixelmix as pm
    >>> from pixelmix.jobs.file import run_job
    >>> r = run_job(Path("no-such.tif"), Path("out.tif"), pm.Mixer([[1.0]]))
    >>> r.status, r.reason
    ('failed', 'no such file')
    """
    options = options or {}
    if zarr:
        return _zarr_job(src, dst, program, resume=resume, overwrite=overwrite, debug=debug, options=options)
    return _tiff_job(src, dst, program, resume=resume, overwrite=overwrite, debug=debug, options=options,
                     bar=bar, size=size)
