"""Former home of the batch of files, kept so documented imports still work.

One file under the batch rules is :mod:`pixelmix.jobs.file`, the loop over
many files in this process :mod:`pixelmix.jobs.batch` (``run_batch`` here
is :func:`pixelmix.jobs.batch.run_local`), and the removal of stale
temporaries :mod:`pixelmix.io.publish`. Code inside pixelmix imports those
modules, never this one.

Examples
--------
>>> from pixelmix.batch import process_file, run_batch
>>> from pixelmix.jobs import batch, file
>>> process_file is file.process_file and run_batch is batch.run_local
True
"""

from .io.publish import clean_stale
from .jobs.batch import TIFF_SUFFIXES, Summary, expand_inputs, output_path
from .jobs.batch import run_local as run_batch
from .jobs.file import FileResult, is_complete, process_file

__all__ = [
    "process_file",
    "run_batch",
    "expand_inputs",
    "output_path",
    "is_complete",
    "clean_stale",
    "FileResult",
    "Summary",
    "TIFF_SUFFIXES",
]
