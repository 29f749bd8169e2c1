"""Former home of the Dask-cluster batch and the Zarr writer, kept so documented imports still work.

The cluster batch is :mod:`pixelmix.jobs.cluster` (``run_batch`` here is
:func:`pixelmix.jobs.cluster.run_on_cluster`), one file into a Zarr group
:func:`pixelmix.jobs.to_zarr.process_file_zarr`, and the Zarr / OME-Zarr
layout :mod:`pixelmix.io.zarr`. Code inside pixelmix imports those modules,
never this one.

Examples
--------
>>> from pixelmix.cluster import connect, run_batch
>>> from pixelmix.jobs import cluster
>>> run_batch is cluster.run_on_cluster and connect is cluster.connect
True
"""

from .io.zarr import is_zarr_path
from .jobs.cluster import connect, zarr_output_path
from .jobs.cluster import run_on_cluster as run_batch
from .jobs.file import process_file_zarr

__all__ = ["connect", "run_batch", "process_file_zarr", "zarr_output_path", "is_zarr_path"]
