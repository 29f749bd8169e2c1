"""Learned mixers: fits that stream statistics over the data and return a Mixer.

Every fit is three separable steps, so that a Dask or multi-process driver
can map step 1 over chunks and merge the results itself:

=========  ===========================  ==================  =================
method     1. per block                 2. merge            3. solve
=========  ===========================  ==================  =================
PCA        ``pca_block_statistics``     ``Moments.merge``   ``solve_pca``
MNF        ``mnf_block_statistics``     ``.merge``          ``solve_mnf``
LDA        ``lda_block_statistics``     ``.merge``          ``solve_lda``
lstsq      ``lstsq_block_statistics``   ``Moments.merge``   ``solve_lstsq``
=========  ===========================  ==================  =================

:func:`pixelmix.learn.stats.merge` merges any number of partial results.

How a fit flows, one way: ``fit_*`` (pca, mnf, lda, lstsq) builds a
:class:`~pixelmix.learn.source.Source` (the one place that knows the kinds
of data: arrays, memmaps, TIFF paths, Dask arrays, lists of them, with
their masks, labels or targets; TIFF read through the io layer only) and
hands it with its block function to :func:`pixelmix.learn.gather.gather_source`,
which merges the blocks in memory or, for Dask data, through
:mod:`pixelmix.learn.chunked` (map on the workers, tree-reduce); the fit's
solve function then turns the merged statistics into a Mixer.

Unmixing: :func:`unmixer` (least squares, sum-to-one, NNLS, FCLS), its
endmembers found in the data (:func:`find_endmembers`: ATGP, N-FINDR, VCA),
their number (:func:`estimate_rank`: HySime) and dye spectra from
single-stain controls (:func:`fit_spillover`).
Importing this package compiles nothing and imports neither SciPy nor
Dask: the Numba kernel compiles on the first fit, SciPy is imported by the
solve step, Dask by a Dask fit.
"""

from .endmembers import find_endmembers
from .lda import fit_lda, lda_block_statistics, solve_lda
from .lstsq import fit_lstsq, lstsq_block_statistics, solve_lstsq
from .mnf import MNFStatistics, fit_mnf, mnf_block_statistics, solve_mnf
from .pca import fit_pca, pca_block_statistics, solve_pca
from .stats import GroupMoments, Moments, block_moments, merge
from .rank import estimate_rank
from .spillover import fit_spillover, spillover_spectra
from .unmix import unmixer

__all__ = [
    "fit_pca", "fit_mnf", "fit_lda", "fit_lstsq", "unmixer",
    "find_endmembers", "estimate_rank", "fit_spillover", "spillover_spectra",
    "pca_block_statistics", "mnf_block_statistics", "lda_block_statistics", "lstsq_block_statistics",
    "solve_pca", "solve_mnf", "solve_lda", "solve_lstsq",
    "Moments", "GroupMoments", "MNFStatistics", "block_moments", "merge",
]
