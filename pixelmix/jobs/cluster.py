"""Batches on a Dask cluster, and batches into a Zarr store.

:func:`run_on_cluster` sends whole files to the workers of a
``dask.distributed`` cluster (an existing one, by its scheduler address, or
a :class:`~distributed.LocalCluster` started for the run by
:func:`connect`) under the rules of the local batch
(:func:`pixelmix.jobs.batch.run_local`): each output is written to a
temporary name and renamed into place only when complete, ``resume`` skips
finished outputs, and one bad file gives a failed result without stopping
the others. Each worker runs the same per-file job,
:func:`pixelmix.jobs.file.run_job`.

With an output path ending in ``.zarr`` each input becomes one image group
of that Zarr store (:mod:`pixelmix.io.zarr`); Zarr output works with or
without a cluster. :func:`connect_and_run` is what ``pixelmix apply`` calls:
it connects as the command line asks, then runs :func:`run_on_cluster`.

Workers must see the input and output paths under the same names (a shared
file system) and have the same pixelmix installed. Dask is imported only
when these functions run.

The temporaries of a worker that dies (killed, out of memory) are removed
before the batch returns: stale temporaries are cleaned on the client and on
every worker's host, at the start and at the end of a run, each host
removing the entries of its own dead processes. The processes of a local
cluster ignore Ctrl-C, which the terminal sends to the whole process group:
the client alone stops, with one line, and shuts them down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from ..io.names import shown
from ..io.publish import clean_stale, clean_stale_dirs
from ..io.zarr import is_zarr_path, open_group
from .batch import Summary, file_size, output_path, plan_batch, progress_bar
from .file import FileResult, failure_reason, run_job

__all__ = ["connect", "run_on_cluster", "connect_and_run", "zarr_output_path"]


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
    >>> from pixelmix.jobs.cluster import connect
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
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}), _without_ctrl_c():
        # Only errors from the cluster's own logs: pixelmix reports each file itself,
        # and a Ctrl-C would otherwise add a warning per cancelled task.
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0", env=env,
            silence_logs=logging.ERROR,
        )
    with cluster, Client(cluster) as client:
        yield client


@contextlib.contextmanager
def _without_ctrl_c() -> Iterator[None]:
    """Ignore SIGINT while a local cluster's processes start: they inherit the ignored signal.

    So do the workers their nannies restart later. Ctrl-C reaches every process of the terminal's process group: without
    this each worker and nanny prints its own traceback. The client keeps
    Python's handler, stops with one line, and closes the cluster.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may change signal handlers
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # a handler set outside Python: leave it alone
        yield
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def zarr_output_path(src: str | os.PathLike, store: str | os.PathLike) -> Path:
    """``STORE/<input name without its TIFF suffixes>``: the input's image group.

    Examples
    --------
    >>> from pixelmix.jobs.cluster import zarr_output_path
    >>> zarr_output_path("scans/a.ome.tif", "out.zarr").as_posix()
    'out.zarr/a'
    """
    name = Path(src).name
    lower = name.lower()
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".btf", ".tf8", ".tf2"):
        if lower.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return Path(store) / name


def _clean_here(outdir: str, dirs: bool) -> int:
    """Remove this host's stale temporaries in ``outdir``; run on each worker. Never raises."""
    try:
        return len(clean_stale(outdir, dirs=dirs))
    except Exception:
        return 0


def _clean_everywhere(client, outdir: Path, zarr_out: bool) -> None:
    """Stale temporaries removed here and on every worker's host (a dead worker's, for one)."""
    _clean_here(str(outdir), zarr_out)
    if client is not None:
        with contextlib.suppress(Exception):
            client.run(_clean_here, str(outdir.resolve()), zarr_out)


def _plan(inputs, outdir: Path, zarr_out: bool):
    """:func:`~pixelmix.jobs.batch.plan_batch` for TIFF or Zarr outputs, with absolute paths for the workers."""
    todo, failed = plan_batch(
        inputs,
        outdir,
        output_name=zarr_output_path if zarr_out else output_path,
        clean=clean_stale_dirs if zarr_out else clean_stale,
    )
    # Absolute paths: a worker's working directory is not the client's.
    return [(src, dst, src.resolve(), dst.resolve()) for src, dst in todo], failed


def _zarr_options(outdir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` for Zarr output, refusing the TIFF-only ones; creates the store's root group."""
    unsupported = sorted(k for k in ("compression", "tile") if options.get(k) is not None)
    if unsupported:
        raise ValueError(
            f"{' and '.join(unsupported)} {'apply' if len(unsupported) > 1 else 'applies'} to "
            f"TIFF output only; Zarr output is chunked and compressed with Zarr's default codec"
        )
    if outdir.exists() and not outdir.is_dir():
        raise ValueError(f"{shown(outdir)} exists and is not a Zarr store (a directory)")
    try:
        open_group(outdir, "a")  # the store's root group, so readers see one store
    except OSError as exc:
        raise ValueError(f"cannot create the Zarr store {shown(outdir)}: {exc.strerror or exc}") from None
    return {k: v for k, v in options.items() if k not in ("compression", "tile")}


def run_on_cluster(
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
) -> Summary:
    """Mix many TIFF files, each one a task on a Dask cluster (or here), atomically.

    The rules are :func:`pixelmix.jobs.batch.run_local`'s (outputs appear
    only whole, ``resume`` skips complete ones, a failed file never stops
    the others); each file is one task, run by the per-file job
    :func:`pixelmix.jobs.file.run_job` on whichever worker is free.

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
        As for :func:`pixelmix.jobs.batch.run_local`.
    **options
        Passed to the per-file job (``channel_axis``, ``dtype``, ``nodata``,
        ``backend``, ``max_bytes``; for TIFF output also ``compression``
        and ``tile``).

    Returns
    -------
    pixelmix.jobs.batch.Summary

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile
    >>> import pixelmix as pm
    >>> from pixelmix.jobs.cluster import connect, run_on_cluster
    >>> d = tempfile.mkdtemp()
    >>> for name in ("a.tif", "b.tif"):
    ...     tifffile.imwrite(os.path.join(d, name), np.ones((2, 16, 16), np.uint16))
    >>> with connect(n_workers=2) as client:                       # doctest: +SKIP
    ...     s = run_on_cluster([d], os.path.join(d, "out.zarr"), pm.Mixer([[1.0, -1.0]]), client=client)
    >>> s = run_on_cluster([d], os.path.join(d, "out.zarr"), pm.Mixer([[1.0, -1.0]]), quiet=True)
    >>> s.count("done"), sorted(os.listdir(os.path.join(d, "out.zarr")))[-2:]
    (2, ['a', 'b'])
    """
    t0 = time.perf_counter()
    outdir = Path(outdir)
    zarr_out = is_zarr_path(outdir)
    if zarr_out:
        options = _zarr_options(outdir, options)
    todo, results = _plan(inputs, outdir, zarr_out)
    if client is not None:
        _clean_everywhere(client, outdir, zarr_out)  # the workers' hosts too
    summary = Summary(results=results)
    sizes = {src: file_size(src) for src, *_ in todo}
    bar = progress_bar(sum(sizes.values()), quiet=quiet, stream=stream)
    args = dict(zarr=zarr_out, resume=resume, overwrite=overwrite, debug=debug, options=options)
    try:
        if client is None:
            for src, dst, src_abs, dst_abs in todo:
                result = run_job(src_abs, dst_abs, program, **args)
                summary.results.append(_relative(result, src, dst))
                bar.update(sizes[src])
        else:
            from distributed import as_completed

            # The program once per worker, shared by its tasks: on every worker, so
            # one that dies does not take the only copy (and every task) with it.
            [shared] = client.scatter([program], broadcast=True, hash=False)
            futures = {
                client.submit(run_job, src_abs, dst_abs, shared, **args, pure=False): (src, dst)
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
            # A worker that died mid-file left its temporary behind (its task may
            # have been redone elsewhere): remove it now, not at the next run.
            _clean_everywhere(client, outdir, zarr_out)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _relative(result: FileResult, src: Path, dst: Path) -> FileResult:
    """The result with the paths as the caller gave them (workers get absolute ones)."""
    result.src, result.dst = src, dst
    return result


def connect_and_run(
    inputs,
    outdir,
    program,
    *,
    scheduler: str | None = None,
    local: bool = False,
    n_workers: int | None = None,
    **kwargs: Any,
) -> Summary:
    """:func:`run_on_cluster` on the cluster ``pixelmix apply`` asks for.

    On the cluster at ``scheduler`` (``--scheduler ADDRESS``), on a local
    cluster of ``n_workers`` processes (``--dask``, ``--workers N``), or,
    with neither, in this process (Zarr output without a cluster).
    ``kwargs`` go to :func:`run_on_cluster`.
    """
    if n_workers is not None and n_workers < 1:
        raise ValueError(f"--workers must be at least 1, got {n_workers}")
    if scheduler is None and not local and n_workers is None:
        return run_on_cluster(inputs, outdir, program, **kwargs)
    try:
        with connect(scheduler, n_workers=n_workers) as client:
            return run_on_cluster(inputs, outdir, program, client=client, **kwargs)
    finally:
        # Interrupted (Ctrl-C): a local cluster's workers were stopped mid-file
        # when it closed; their temporaries go now.
        if os.path.isdir(outdir):
            _clean_here(str(outdir), is_zarr_path(outdir))
