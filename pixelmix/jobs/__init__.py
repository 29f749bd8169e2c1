"""Jobs on files: one file, a batch here, a batch on a Dask cluster.

- :mod:`pixelmix.jobs.file`: one input to one output under the batch rules
  (:func:`~pixelmix.jobs.file.process_file`, the per-file job of a batch).
- :mod:`pixelmix.jobs.batch`: the local batch loop
  (:func:`~pixelmix.jobs.batch.run_local`), input expansion, progress, summary.
- :mod:`pixelmix.jobs.cluster`: :func:`~pixelmix.jobs.cluster.connect` and
  the batch on a Dask cluster or into a Zarr store
  (:func:`~pixelmix.jobs.cluster.run_on_cluster`).

The documented paths ``pixelmix.batch`` and ``pixelmix.cluster`` re-export
these functions under their former names.
"""
