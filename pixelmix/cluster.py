"""Batches on a Dask cluster, and Zarr / OME-Zarr output.

:func:`run_batch` sends whole files to the workers of a
``dask.distributed`` cluster (an existing one, by its scheduler address,
or a :class:`~distributed.LocalCluster` started for the run) under the
rules of :mod:`pixelmix.batch`: each output is written to a temporary name
and renamed into place only when complete, ``resume`` skips finished
outputs, and one bad file gives a failed result without stopping the
others. Each worker runs the batch module's own per-file job.

With an output path ending in ``.zarr`` each input becomes one image group
of that Zarr store, written as OME-Zarr (v0.4: an array ``"0"`` with
``multiscales`` and ``omero`` channel metadata) when its axes can be put in
OME-Zarr's ``t, c, z, y, x`` order, else as a plain Zarr array in the
input's axis order with the axes in its attributes. Zarr output works with
or without a cluster.

Workers must see the input and output paths under the same names (a shared
file system) and have the same pixelmix installed. Dask is imported only
when these functions run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = ["connect", "run_batch", "run_batch_cli", "process_file_zarr", "zarr_output_path", "is_zarr_path"]

# OME-Zarr (v0.4) axes: tifffile letter -> (name, type), in the order OME-Zarr requires.
_OME_ORDER = "tczyx"
_OME_LETTERS = {"T": "t", "C": "c", "S": "c", "Z": "z", "Y": "y", "X": "x"}
_OME_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
# Zarr chunks of the image plane (rows, columns); other axes get chunks of 1.
PLANE_CHUNK = 1024


def is_zarr_path(path: str | os.PathLike) -> bool:
    """True when ``path`` names a Zarr store (ends in ``.zarr``)."""
    return Path(path).suffix.lower() == ".zarr"


@contextlib.contextmanager
def connect(scheduler: str | None = None, *, n_workers: int | None = None) -> Iterator[Any]:
    """A ``dask.distributed`` client: to ``scheduler``, or to a new local cluster.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``"tcp://10.0.0.5:8786"``) or a
        scheduler file path (``dask scheduler --scheduler-file``). None
        starts a :class:`~distributed.LocalCluster` for the ``with`` block.
    n_workers : int, optional
        Worker processes of the local cluster (default: one per core), each
        running one task at a time, its Numba kernels on ``cores //
        n_workers`` threads (unless ``NUMBA_NUM_THREADS`` is set).

    Examples
    --------
    >>> from pixelmix.cluster import connect
    >>> with connect(n_workers=1) as client:               # doctest: +SKIP
    ...     print(len(client.scheduler_info()["workers"]))
    1
    """
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        if os.path.isfile(scheduler):
            client = Client(scheduler_file=scheduler)
        else:
            client = Client(scheduler)
        with client:
            yield client
        return
    cores = os.cpu_count() or 1
    n = n_workers or cores
    env = {}
    if "NUMBA_NUM_THREADS" not in os.environ:
        # Each worker's kernels get its share of the cores, not all of them.
        env["NUMBA_NUM_THREADS"] = str(max(1, cores // n))
    # Workers are started with spawn, never fork: a forked child of a process
    # that has run OpenMP-backed Numba kernels (the "omp" threading layer) is
    # terminated by Numba, as GNU OpenMP is not fork-safe.
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0", env=env
        )
    with cluster, Client(cluster) as client:
        yield client


# -- Zarr output -------------------------------------------------------------------------


def zarr_output_path(src: str | os.PathLike, store: str | os.PathLike) -> Path:
    """``STORE/<input name without its TIFF suffixes>``: the input's image group."""
    name = Path(src).name
    lower = name.lower()
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".btf", ".tf8", ".tf2"):
        if lower.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return Path(store) / name


def _ome_layout(axes: str, channel_axis: int) -> list[int] | None:
    """Permutation putting ``axes`` in OME-Zarr order, or None if OME-Zarr cannot hold them."""
    names = []
    for i, letter in enumerate(axes):
        if i == channel_axis:
            names.append("c")
        elif letter in _OME_LETTERS and letter not in "CS":
            names.append(_OME_LETTERS[letter])
        else:
            return None
    if len(set(names)) != len(names) or not {"y", "x"} <= set(names) or len(names) > 5:
        return None
    return sorted(range(len(names)), key=lambda i: _OME_ORDER.index(names[i]))


def _ome_attrs(names: list[str], shape, calibration, channel_names, stem: str) -> dict[str, Any]:
    scale = []
    axes = []
    for name in names:
        axis: dict[str, Any] = {"name": name, "type": _OME_TYPES[name]}
        size = calibration.get(f"PhysicalSize{name.upper()}") if name in "zyx" else None
        unit = str(calibration.get(f"PhysicalSize{name.upper()}Unit", "")).lower()
        if size is not None and unit in ("µm", "um", "micrometer", "micron"):
            axis["unit"] = "micrometer"
        scale.append(float(size) if size else 1.0)
        axes.append(axis)
    attrs: dict[str, Any] = {
        "multiscales": [
            {
                "version": "0.4",
                "name": stem,
                "axes": axes,
                "datasets": [
                    {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
                ],
            }
        ]
    }
    if channel_names is not None:
        attrs["omero"] = {
            "version": "0.4",
            "channels": [{"label": str(n), "active": True} for n in channel_names],
        }
    return attrs


def _open_group(path: Path, mode: str):
    import zarr

    if int(zarr.__version__.split(".")[0]) >= 3:
        # OME-Zarr v0.4 is defined on Zarr format 2.
        return zarr.open_group(str(path), mode=mode, zarr_format=2)
    return zarr.open_group(str(path), mode=mode)


def _create_array(group, shape, chunks, dtype):
    if hasattr(group, "create_array"):
        return group.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
    return group.create_dataset("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0)


def _zarr_complete(dst: Path, shape, dtype) -> bool:
    """Whether ``dst`` holds an image group with array "0" of ``shape`` and ``dtype``."""
    try:
        array = _open_group(dst, "r")["0"]
        return tuple(array.shape) == tuple(shape) and np.dtype(array.dtype) == np.dtype(dtype)
    except Exception:
        return False


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _layout(stack, program, dtype):
    """Output shape, dtype, names, and the permutation to the stored axis order."""
    from .batch import _program_info
    from .engine import output_dtype
    from .tiff import output_layout

    out_dtype = output_dtype(stack.dtype, dtype)
    _, n_out, names = _program_info(program)
    if n_out is None:
        n_out, names = stack.n_channels, stack.channel_names
    shape, axes = output_layout(stack, n_out)
    perm = _ome_layout(axes, stack.channel_axis)
    stored = tuple(shape) if perm is None else tuple(shape[p] for p in perm)
    return shape, axes, out_dtype, names, perm, stored


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
    overwrite: bool = False,
):
    """Mix one TIFF stack into a Zarr image group ``dst``, atomically.

    The group is written under a temporary name beside ``dst`` and renamed
    into place when complete (so ``dst`` exists only whole), from slabs of
    about ``max_bytes`` read by :func:`pixelmix.tiff.open_stack`.

    Parameters
    ----------
    src : path-like
        Input TIFF.
    dst : path-like
        The image group to create, e.g. ``out.zarr/sample``.
    program : Mixer or Program
    channel_axis, dtype, nodata, backend, max_bytes, overwrite
        As for :func:`pixelmix.batch.process_file`.

    Returns
    -------
    pixelmix.batch.FileResult

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile, zarr
    >>> import pixelmix as pm
    >>> from pixelmix.cluster import process_file_zarr
    >>> d = tempfile.mkdtemp()
    >>> tifffile.imwrite(os.path.join(d, "in.tif"), np.ones((3, 32, 32), np.uint16), photometric="minisblack")
    >>> r = process_file_zarr(os.path.join(d, "in.tif"), os.path.join(d, "out.zarr", "in"),
    ...                       pm.Mixer([[1.0, 1.0, 1.0]]))
    >>> g = zarr.open_group(os.path.join(d, "out.zarr", "in"), mode="r")
    >>> r.status, g["0"].shape, [a["name"] for a in g.attrs["multiscales"][0]["axes"]]
    ('done', (1, 32, 32), ['c', 'y', 'x'])
    """
    from .batch import FileResult, _fsync_path, _provenance, _same_file, _temp_name, _check_program
    from .engine import BACKENDS
    from .tiff import DEFAULT_SLAB_BYTES, open_stack

    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {', '.join(map(repr, BACKENDS))}")
    src, dst = Path(src), Path(dst)
    if _same_file(src, dst) or src.resolve() == dst.resolve():
        raise ValueError(f"refusing to overwrite the input {src}: choose another output")
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} exists; pass --resume to skip finished outputs or --overwrite")
    t0 = time.perf_counter()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open_stack(src, channel_axis=channel_axis) as stack:
        _check_program(program, stack)
        shape, axes, out_dtype, names, perm, stored = _layout(stack, program, dtype)
        axis = stack.channel_axis
        order = list(range(len(shape))) if perm is None else perm
        chunks = [1] * len(stored)
        spatial = [i for i, a in enumerate(order) if a != axis][-2:]
        for i in spatial:
            chunks[i] = min(stored[i], PLANE_CHUNK)
        if perm is None:
            chunks[order.index(axis)] = stored[order.index(axis)]
        tmp = _temp_name(dst)
        try:
            group = _open_group(tmp, "w")
            if perm is not None:
                ome_names = [_OME_LETTERS.get(axes[p], "c") if p != axis else "c" for p in perm]
                group.attrs.update(_ome_attrs(ome_names, stored, stack.calibration, names, dst.name))
            group.attrs.update({
                "pixelmix": {
                    "axes": "".join(axes[p] for p in order),
                    "channel_names": None if names is None else list(names),
                    "provenance": _provenance(program, src, out_dtype, nodata),
                }
            })
            array = _create_array(group, stored, tuple(chunks), out_dtype)
            for index, slab in stack.iter_slabs(max_bytes or DEFAULT_SLAB_BYTES):
                block = program.apply(slab, channel_axis=axis, dtype=out_dtype, nodata=nodata, backend=backend)
                target = tuple(slice(None) if i == axis else index[i] for i in order)
                array[target] = block if perm is None else np.transpose(block, perm)
            _fsync_tree(tmp)
            _replace_dir(tmp, dst)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        _fsync_path(dst.parent, directory=True)
        bytes_in = stack.nbytes
    return FileResult(
        src=src, dst=dst, status="done", bytes_in=bytes_in, bytes_out=_dir_size(dst),
        seconds=time.perf_counter() - t0,
    )


def _fsync_tree(root: Path) -> None:
    """Flush every file and directory of a finished group before it is renamed into place."""
    from .batch import _fsync_path

    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            _fsync_path(Path(dirpath) / name)
        _fsync_path(Path(dirpath), directory=True)


def _replace_dir(tmp: Path, dst: Path) -> None:
    """Rename ``tmp`` to ``dst``; an existing ``dst`` is moved aside first, then removed."""
    from .batch import _temp_name

    old = None
    if dst.exists():
        old = _temp_name(dst)
        os.replace(dst, old)
    os.replace(tmp, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def clean_stale_dirs(store: str | os.PathLike) -> list[Path]:
    """Remove temporary groups left in ``store`` by runs that died (see ``batch.clean_stale``)."""
    from .batch import clean_stale

    return clean_stale(store, dirs=True)


# -- the batch -----------------------------------------------------------------------------


class _NoBar:
    """Stands in for the progress bar of ``batch.process_one`` on a worker."""

    def update(self, n) -> None:
        pass


def _zarr_job(src: Path, dst: Path, program, *, resume, overwrite, debug, options):
    """One input to one Zarr image group, with ``batch``'s skip and failure rules."""
    from .batch import FileResult, failure_reason
    from .tiff import open_stack

    try:
        if dst.exists() and resume:
            with open_stack(src, options.get("channel_axis")) as stack:
                *_, out_dtype, _, _, stored = _layout(stack, program, options.get("dtype"))
            if _zarr_complete(dst, stored, out_dtype):
                return FileResult(src, dst, "skipped", "output already complete")
        return process_file_zarr(src, dst, program, overwrite=overwrite or resume, **options)
    except Exception as exc:
        return FileResult(
            src, dst, "failed", failure_reason(exc, src), traceback=traceback.format_exc() if debug else ""
        )


def _job(src: Path, dst: Path, program, zarr_out: bool, resume, overwrite, debug, options):
    """The task a worker runs for one file; never raises (failures are results)."""
    if zarr_out:
        return _zarr_job(src, dst, program, resume=resume, overwrite=overwrite, debug=debug, options=options)
    from .batch import process_one

    return process_one(src, dst, program, _NoBar(), 0, resume=resume, overwrite=overwrite, debug=debug,
                       options=options)


def _plan(inputs, outdir: Path, zarr_out: bool):
    """``batch.plan`` for TIFF or Zarr outputs, with absolute paths for the workers."""
    from .batch import clean_stale, output_path, plan

    todo, failed = plan(
        inputs,
        outdir,
        output_name=zarr_output_path if zarr_out else output_path,
        clean=clean_stale_dirs if zarr_out else clean_stale,
    )
    # Absolute paths: a worker's working directory is not the client's.
    return [(src, dst, src.resolve(), dst.resolve()) for src, dst in todo], failed


def run_batch(
    inputs,
    outdir: str | os.PathLike,
    program,
    *,
    client=None,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    debug: bool = False,
    stream=None,
    **options: Any,
):
    """Mix many TIFF files, each one a task on a Dask cluster (or here), atomically.

    The rules are :func:`pixelmix.batch.run_batch`'s (outputs appear only
    whole, ``resume`` skips complete ones, a failed file never stops the
    others); each file is one task, run by the batch module's per-file job
    on whichever worker is free.

    Parameters
    ----------
    inputs : iterable of path-like or str
        Files, directories (their TIFF files) or glob patterns.
    outdir : path-like
        A directory of TIFF outputs (same names as the inputs), or a Zarr
        store (a path ending in ``.zarr``) with one image group per input
        (the input's name without its ``.tif``/``.ome.tif`` suffix).
    program : Mixer or Program
    client : distributed.Client, optional
        Where the files go (see :func:`connect`); None runs them one after
        another in this process.
    resume, overwrite, quiet, debug, stream
        As for :func:`pixelmix.batch.run_batch`.
    **options
        Passed to the per-file job (``channel_axis``, ``dtype``, ``nodata``,
        ``backend``, ``max_bytes``; for TIFF output also ``compression``
        and ``tile``).

    Returns
    -------
    pixelmix.batch.Summary

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile
    >>> import pixelmix as pm
    >>> from pixelmix.cluster import connect, run_batch
    >>> d = tempfile.mkdtemp()
    >>> for name in ("a.tif", "b.tif"):
    ...     tifffile.imwrite(os.path.join(d, name), np.ones((2, 16, 16), np.uint16))
    >>> with connect(n_workers=2) as client:                       # doctest: +SKIP
    ...     s = run_batch([d], os.path.join(d, "out.zarr"), pm.Mixer([[1.0, -1.0]]), client=client)
    >>> s = run_batch([d], os.path.join(d, "out.zarr"), pm.Mixer([[1.0, -1.0]]), quiet=True)
    >>> s.count("done"), sorted(os.listdir(os.path.join(d, "out.zarr")))[-2:]
    (2, ['a', 'b'])
    """
    from .batch import FileResult, Summary, failure_reason, progress_bar

    t0 = time.perf_counter()
    outdir = Path(outdir)
    zarr_out = is_zarr_path(outdir)
    if zarr_out:
        unsupported = sorted(k for k in ("compression", "tile") if options.get(k) is not None)
        if unsupported:
            raise ValueError(
                f"{' and '.join(unsupported)} {'apply' if len(unsupported) > 1 else 'applies'} to "
                f"TIFF output only; Zarr output is chunked and compressed with Zarr's default codec"
            )
        options = {k: v for k, v in options.items() if k not in ("compression", "tile")}
        if outdir.exists() and not outdir.is_dir():
            raise ValueError(f"{outdir} exists and is not a Zarr store (a directory)")
        _open_group(outdir, "a")  # the store's root group, so readers see one store
    todo, results = _plan(inputs, outdir, zarr_out)
    summary = Summary(results=results)
    sizes = {src: src.stat().st_size if src.exists() else 0 for src, *_ in todo}
    bar = progress_bar(sum(sizes.values()), quiet=quiet, stream=stream)
    args = dict(resume=resume, overwrite=overwrite, debug=debug, options=options)
    try:
        if client is None:
            for src, dst, src_abs, dst_abs in todo:
                result = _job(src_abs, dst_abs, program, zarr_out, **args)
                summary.results.append(_relative(result, src, dst))
                bar.update(sizes[src])
        else:
            from distributed import as_completed

            # One copy of the program on the cluster, shared by every task.
            [shared] = client.scatter([program], broadcast=False, hash=False)
            futures = {
                client.submit(_job, src_abs, dst_abs, shared, zarr_out, **args, pure=False): (src, dst)
                for src, dst, src_abs, dst_abs in todo
            }
            done = {}
            for future in as_completed(futures):
                src, dst = futures[future]
                try:
                    done[src] = _relative(future.result(), src, dst)
                except Exception as exc:  # the worker died (KilledWorker) or the task was lost
                    done[src] = FileResult(src, dst, "failed", f"on the cluster: {failure_reason(exc)}")
                bar.update(sizes[src])
            summary.results.extend(done[src] for src, *_ in todo)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _relative(result, src: Path, dst: Path):
    """The result with the paths as the caller gave them (workers get absolute ones)."""
    result.src, result.dst = src, dst
    return result


def run_batch_cli(
    inputs,
    outdir,
    program,
    *,
    scheduler: str | None = None,
    local: bool = False,
    n_workers: int | None = None,
    **kwargs: Any,
):
    """:func:`run_batch` where ``pixelmix apply`` asks for it.

    On the cluster at ``scheduler`` (``--scheduler ADDRESS``), on a local
    cluster of ``n_workers`` processes (``--dask``, ``--workers N``), or,
    with neither, in this process (Zarr output without a cluster).
    """
    if n_workers is not None and n_workers < 1:
        raise ValueError(f"--workers must be at least 1, got {n_workers}")
    if scheduler is None and not local and n_workers is None:
        return run_batch(inputs, outdir, program, **kwargs)
    with connect(scheduler, n_workers=n_workers) as client:
        return run_batch(inputs, outdir, program, client=client, **kwargs)
