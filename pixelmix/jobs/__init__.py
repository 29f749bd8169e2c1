"""Jobs on files: one file, a batch here, a batch on a Dask cluster.

- :mod:`pixelmix.jobs.file`: one input of a batch under the batch rules
  (:func:`~pixelmix.jobs.file.run_job`: resume, failures as results), built on
  :mod:`~pixelmix.jobs.to_tiff` (:func:`~pixelmix.jobs.to_tiff.process_file`)
  and :mod:`~pixelmix.jobs.to_zarr` (the writers), :mod:`~pixelmix.jobs.rules`
  (the checks before any output exists, the result of a job) and
  :mod:`~pixelmix.jobs.provenance` (what every output records of how it was made).
- :mod:`pixelmix.jobs.batch`: the local batch loop
  (:func:`~pixelmix.jobs.batch.run_local`), input expansion, progress, summary.
- :mod:`pixelmix.jobs.cluster`: :func:`~pixelmix.jobs.cluster.connect` and
  the batch on a Dask cluster or into a Zarr store
  (:func:`~pixelmix.jobs.cluster.run_on_cluster`).

The documented paths ``pixelmix.batch`` and ``pixelmix.cluster`` re-export
these functions under their former names.
"""
