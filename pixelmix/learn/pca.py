"""Principal component analysis from streamed moments.

Steps (for Dask or multi-file drivers):

1. ``pca_block_statistics(values, channel_axis, mask=, nodata=, sample=, seed=)``
   returns the block's :class:`~pixelmix.learn.stats.Moments`;
2. ``Moments.merge`` (or :func:`pixelmix.learn.stats.merge`) combines them;
3. ``solve_pca(moments, n_components, whiten=, input_names=)`` returns the Mixer.

:func:`fit_pca` runs all three over an array, memmap, TIFF files or a Dask array.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..mixer import Mixer
from .gather import gather_source
from .solve import blas_on_one_thread, check_n_components, fix_signs, input_names, symmetric_eigh
from .source import Source
from .stats import Moments, block_moments

__all__ = ["fit_pca", "pca_block_statistics", "solve_pca"]


def pca_block_statistics(values, channel_axis=-1, *, mask=None, nodata=None, sample=None, seed=0) -> Moments:
    """Step 1: the moments of one block (see :func:`pixelmix.learn.stats.block_moments`)."""
    return block_moments(values, channel_axis, mask=mask, nodata=nodata, sample=sample, seed=seed)


def _n_kept(n_components, ratio: np.ndarray, n_max: int) -> int:
    if isinstance(n_components, (float, np.floating)) and not isinstance(n_components, bool):
        if not 0.0 < n_components < 1.0:
            raise ValueError(
                f"n_components={n_components} as a float must be a fraction of variance in (0, 1); "
                f"pass an integer for a number of components"
            )
        # As scikit-learn: the fewest components whose cumulative ratio exceeds it.
        k = int(np.searchsorted(np.cumsum(ratio), n_components, side="right")) + 1
        return min(k, n_max)
    return check_n_components(n_components, n_max, "PCA", "the number of channels")


@blas_on_one_thread
def solve_pca(
    moments: Moments,
    n_components,
    *,
    whiten: bool = False,
    input_names: Sequence[str] | None = None,
) -> Mixer:
    """Step 3: the PCA mixer from merged moments.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.pca import pca_block_statistics, solve_pca
    >>> x = np.random.default_rng(0).normal(size=(100, 3)) * [5.0, 1.0, 0.1]
    >>> m = solve_pca(pca_block_statistics(x), 1)
    >>> m.output_names, int(np.abs(m.weights).argmax())
    (('PC1',), 0)
    """
    n_channels = moments.n_channels
    if moments.count < 2:
        raise ValueError(
            f"PCA needs at least 2 valid pixels, got {moments.count} "
            f"({moments.skipped} skipped for NaN/nodata); check mask= and nodata="
        )
    cov = moments.covariance()
    values, vectors = symmetric_eigh(cov)
    values = np.maximum(values, 0.0)
    total = float(values.sum())
    ratio = values / total if total > 0 else np.zeros_like(values)
    k = _n_kept(n_components, ratio, n_channels)
    components = vectors[:, :k].T
    components *= fix_signs(components)[:, None]
    variance = values[:k]
    weights = components
    if whiten:
        if np.any(variance <= 0):
            raise ValueError(
                "cannot whiten: some kept components have zero variance; "
                "ask for fewer components or whiten=False"
            )
        weights = components / np.sqrt(variance)[:, None]
    return Mixer(
        weights,
        -weights @ moments.mean,
        input_names=input_names,
        output_names=[f"PC{i + 1}" for i in range(k)],
        metadata={
            "method": "pca",
            "n_components": k,
            "whiten": bool(whiten),
            "mean": moments.mean,
            "explained_variance": variance,
            "explained_variance_ratio": ratio[:k],
            "total_variance": total,
            "n_pixels": moments.count,
            "n_skipped": moments.skipped,
        },
    )


def fit_pca(
    data,
    n_components,
    *,
    channel_axis: int = -1,
    whiten: bool = False,
    mask=None,
    nodata=None,
    sample=None,
) -> Mixer:
    """Principal components of the pixels of ``data``, as a Mixer.

    One streaming pass accumulates the mean and covariance (float64, shifted
    for accuracy), then an eigendecomposition gives the components, by
    decreasing variance, each signed so its largest-magnitude loading is
    positive. The mixer subtracts the mean: ``out = W (x - mean)``.
    ``m.pinv() @ m`` is the "project and reconstruct" denoiser (one pass).

    Parameters
    ----------
    data : ndarray, np.memmap, str or path, dask.array.Array, or list of these
        Pixels with channels on ``channel_axis``; TIFF files are streamed in
        slabs (their channel axis is read from the file unless given), and a
        list is fitted as one data set.
    n_components : int or float
        Components kept; a float in (0, 1) keeps the fewest components that
        explain more than that fraction of the variance.
    channel_axis : int
        The channel axis of array data.
    whiten : bool
        Scale each component to unit variance.
    mask : ndarray of bool, optional
        The data's spatial shape (a list for list data); True = use the pixel.
    nodata : number, optional
        Pixels with any channel equal to this are skipped (NaN pixels always are).
    sample : float or int, optional
        Fit on a fraction of the pixels (float) or every n-th pixel (int).

    Returns
    -------
    Mixer
        Outputs "PC1", "PC2", ...; ``metadata`` holds ``mean``,
        ``explained_variance``, ``explained_variance_ratio``, ``n_pixels``...

    Examples
    --------
    >>> import numpy as np
    >>> import pixelmix as pm
    >>> rng = np.random.default_rng(0)
    >>> cube = rng.normal(size=(32, 32, 6)).astype(np.float32)
    >>> pca = pm.fit_pca(cube, 2)
    >>> pca(cube).shape, pca.output_names
    ((32, 32, 2), ('PC1', 'PC2'))
    >>> denoise = pca.pinv() @ pca          # project and reconstruct, one pass
    >>> denoise(cube).shape
    (32, 32, 6)
    """
    source = Source(data, channel_axis, aux=[("mask", mask)])
    moments = gather_source(
        source,
        lambda b: pca_block_statistics(
            b.values, b.channel_axis, mask=b.aux[0], nodata=nodata, sample=sample, seed=b.number
        ),
    )
    if moments.count == 0:
        raise ValueError(
            f"no valid pixels to fit: all are masked out or hold NaN/nodata "
            f"({moments.skipped} skipped for NaN/nodata)"
        )
    return solve_pca(moments, n_components, whiten=whiten, input_names=input_names(source.parts))
