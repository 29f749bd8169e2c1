"""One input of a batch under the batch rules: :func:`run_job`, here or on a cluster worker.

It skips an input whose output is already complete and made by the same
program (``resume``), else mixes it (:func:`~pixelmix.jobs.to_tiff.process_file`
into a TIFF file, :func:`~pixelmix.jobs.to_zarr.process_file_zarr` into a
Zarr image group), and turns any error into a failed :class:`FileResult`,
never raising.

An existing output is replaced only when asked (``overwrite``, or
``resume`` redoing an output that is incomplete or made otherwise); an
output that another run publishes first, while this one is writing, is
kept and this input fails with "appeared while this output was written"
(or is skipped under ``resume`` when it is the same output).

The per-file pieces live in their own modules and are re-exported here:
:mod:`pixelmix.jobs.rules` (checks, results), :mod:`pixelmix.jobs.provenance`
(what an output records), :mod:`pixelmix.jobs.to_tiff` and
:mod:`pixelmix.jobs.to_zarr` (the writers).
"""

from __future__ import annotations

import math
import os
import traceback
from pathlib import Path
from typing import Any

from ..io import geotiff
from ..io import zarr as zarr_io
from ..io.pyramid import describe
from ..io.read import open_stack
from ..io.write import output_layout
from ..plan import output_dtype
from .provenance import (
    PROVENANCE_MAX_BYTES,
    is_complete,
    keeps_channels,
    program_info,
    program_input_names,
    program_sha256,
    provenance,
    same_origin,
)
from .rules import FileResult, failure_reason, same_file
from .to_tiff import process_file
from .to_zarr import process_file_zarr, zarr_layout

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
    "same_file",
    "PROVENANCE_MAX_BYTES",
]


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
            shape, axes, out_dtype, _ = zarr_layout(stack, program, options.get("dtype"))
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
