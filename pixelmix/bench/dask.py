"""A batch of TIFF files on a Dask LocalCluster against the single-process batch.

The same files, the same mixer, the same outputs (written atomically, with
``overwrite``): :func:`pixelmix.jobs.batch.run_local` in this process against
:func:`pixelmix.jobs.cluster.run_on_cluster` sending each file to a worker process of
a :class:`distributed.LocalCluster` (one worker, and one per core). The
cluster runs use ``cores // workers`` Numba threads per worker, so all runs
use the same cores; on a small machine expect no speedup: the table shows
the cluster's overhead (scheduling, a task per file, results sent back).
Peak memory is this process's only (workers are other processes). Files:

- full: 8 files of uint16 CYX 16 x 1024 x 1024 -> 3 float32 (32 MiB each)
- quick: 8 files of uint16 CYX 8 x 256 x 256 -> 3 float32
- tiny: 2 files of uint16 CYX 4 x 16 x 16 -> 3 float32
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref

import numpy as np

from . import Case, Impl


def _make_files(directory: str, n_files: int, shape, rng) -> list[str]:
    import tifffile

    paths = []
    for i in range(n_files):
        path = os.path.join(directory, f"stack{i:02d}.tif")
        tifffile.imwrite(path, rng.integers(0, 4096, size=shape, dtype=np.uint16),
                         photometric="minisblack", metadata={"axes": "CYX"})
        paths.append(path)
    return paths


def _local_cluster(n_workers: int):
    from ..jobs.cluster import connect

    context = connect(n_workers=n_workers)
    client = context.__enter__()
    return context, client


FILES = {"full": (8, (16, 1024, 1024)), "quick": (8, (8, 256, 256)), "tiny": (2, (4, 16, 16))}


def cases(size: str, backend: str) -> list[Case]:
    import pixelmix as pm
    from ..jobs.batch import run_local
    from ..jobs.cluster import run_on_cluster

    rng = np.random.default_rng(0)
    n_files, shape = FILES[size]
    k = 3
    root = tempfile.mkdtemp(prefix="pixelmix-bench-dask-")
    files = _make_files(root, n_files, shape, rng)
    m = pm.Mixer(rng.standard_normal((k, shape[0])))
    cores = os.cpu_count() or 1
    options = dict(quiet=True, overwrite=True, backend=backend)

    def single():
        summary = run_local(files, os.path.join(root, "out-single"), m, **options)
        assert summary.ok, summary.text()

    impls = {"pixelmix batch, 1 process": Impl(single, "pixelmix")}
    contexts = []
    for workers in sorted({1, cores}):
        context, client = _local_cluster(workers)
        contexts.append(context)

        def on_cluster(client=client, workers=workers):
            out = os.path.join(root, f"out-cluster-{workers}")
            summary = run_on_cluster(files, out, m, client=client, **options)
            assert summary.ok, summary.text()

        impls[f"LocalCluster, {workers} worker{'s' if workers > 1 else ''}"] = Impl(on_cluster, "dask")

    def zarr_on_cluster(client=client):
        summary = run_on_cluster(files, os.path.join(root, "out.zarr"), m, client=client, **options)
        assert summary.ok, summary.text()

    impls[f"LocalCluster, {cores} -> Zarr"] = Impl(zarr_on_cluster, "dask")
    in_bytes = n_files * int(np.prod(shape)) * 2
    out_bytes = n_files * k * int(np.prod(shape[1:])) * 4
    case = Case(
        name=f"batch of {n_files} uint16 CYX {'x'.join(map(str, shape))} -> {k} float32 TIFF files",
        impls=impls,
        bytes_moved=in_bytes + out_bytes,
        notes=[f"{cores} cores; cluster workers get cores // workers Numba threads each",
               "peak MB: this process only (the workers are other processes)"],
    )

    def cleanup():
        import logging

        # Closing a cluster logs every step at INFO: not what a bench report wants.
        logging.getLogger("distributed").setLevel(logging.WARNING)
        # Last entered, first left: each client restores the default it replaced.
        for context in reversed(contexts):
            context.__exit__(None, None, None)
        shutil.rmtree(root, ignore_errors=True)

    weakref.finalize(case, cleanup)
    return [case]
