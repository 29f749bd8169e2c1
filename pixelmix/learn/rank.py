"""How many endmembers the data hold: HySime (Bioucas-Dias and Nascimento 2008).

HySime splits the data's correlation matrix ``R_y = E[y y^T]`` into signal
and noise, then keeps the signal eigenvectors along which the data's power
exceeds twice the noise power: the number of them is the signal subspace's
dimension, the number of endmembers.

The noise is estimated as in HySime's ``estNoise`` ("additive"): each band
regressed on all the others over all the pixels, the residual being the
noise. Those regressions need only ``R_y``: with ``P = R_y^-1`` and ``D`` its
diagonal, the residual is ``n = D^-1 P y``, so the residuals' correlation is
``D^-1 P D^-1`` and the signal ``x = y - n`` has ``R_x = R_y - 2 D^-1 +
D^-1 P D^-1``; HySime keeps only the diagonal of the noise correlation,
``R_n = D^-1``. The whole estimate is then one pass over the data for the
moments (mean and covariance, the ones the PCA and MNF fits gather). ``noise="diagonal"``,
``"right"`` or ``"lower"`` instead takes MNF's noise estimate (half the
covariance of the differences between neighbouring pixels), gathered in the
same pass (then ``R_x = R_y - R_n``); it suits spatially smooth scenes, and
needs rows and columns.
"""

from __future__ import annotations

import numpy as np

from .gather import gather_source
from .mnf import NOISE_DIRECTIONS, MNFStatistics, mnf_block_statistics
from .solve import blas_on_one_thread, symmetric_eigh
from .source import Source
from .stats import Moments

__all__ = ["estimate_rank", "hysime", "NOISE"]

NOISE = ("regression",) + NOISE_DIRECTIONS
# HySime adds this fraction of the mean signal power to the noise
# correlation's diagonal (hysime.m: sum(diag(Rx)) / L / 1e5).
NOISE_FLOOR = 1e-5


@blas_on_one_thread
def regression_noise(correlation: np.ndarray) -> np.ndarray:
    """The correlation of HySime's multiple-regression residuals (the noise), from ``E[y y^T]``.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.rank import regression_noise
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=(5000, 1)) @ np.ones((1, 4)) + 0.1 * rng.normal(size=(5000, 4))
    >>> bool(np.allclose(np.diag(regression_noise(y.T @ y / len(y))), 0.01 * 4 / 3, rtol=0.1))
    True
    """
    scale = float(np.trace(correlation)) / len(correlation)
    if not scale > 0:
        raise ValueError("the data are zero in every channel: no signal or noise to estimate")
    # HySime's own regularisation (hysime.m: inv(RR + 1e-6 * eye)), relative here.
    precision = np.linalg.inv(correlation + 1e-12 * scale * np.eye(len(correlation)))
    precision = (precision + precision.T) / 2
    d = np.diag(precision)
    if not np.all(d > 0):
        raise ValueError("the data's correlation matrix is not positive definite; is some channel constant?")
    return precision / np.outer(d, d)


@blas_on_one_thread
def hysime(correlation: np.ndarray, signal: np.ndarray, noise: np.ndarray) -> tuple[int, np.ndarray]:
    """HySime's subspace size from the correlation matrices of the data, the signal and the noise.

    Returns ``(k, cost)``: ``cost[i] = -P_y + 2 P_n``, the data's power
    against twice the noise's along the i-th signal eigenvector (decreasing
    signal power); ``k`` is the number of negative costs (hysime.m).

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.rank import hysime
    >>> signal = np.diag([4.0, 1.0, 0.0, 0.0])
    >>> noise = 0.1 * np.eye(4)
    >>> hysime(signal + noise, signal, noise)[0]
    2
    """
    _, vectors = symmetric_eigh(signal)
    floored = noise + np.trace(signal) / len(signal) * NOISE_FLOOR * np.eye(len(signal))
    power = np.einsum("ij,ik,kj->j", vectors, correlation, vectors)
    noise_power = np.einsum("ij,ik,kj->j", vectors, floored, vectors)
    cost = -power + 2 * noise_power
    return int(np.sum(cost < 0)), cost


def estimate_rank(
    data,
    *,
    channel_axis: int = -1,
    mask=None,
    nodata=None,
    noise: str = "regression",
    sample=None,
) -> int:
    """The number of endmembers in ``data``: the signal subspace's dimension by HySime.

    Parameters
    ----------
    data : ndarray, np.memmap, str or path, dask.array.Array, or list of these
        Pixels with channels on ``channel_axis`` (TIFF files: the file's own
        channel axis unless given).
    channel_axis : int
        The channel axis of array data.
    mask : ndarray of bool, optional
        True = use the pixel.
    nodata : number, optional
        Pixels with any channel equal to this are skipped (as are NaN pixels).
    noise : {"regression", "diagonal", "right", "lower"}
        The noise estimate: HySime's multiple regression of each band on the
        others (default), or MNF's neighbour differences in that direction.
    sample : float or int, optional
        Use a fraction (float) or every n-th (int) pixel, as in the fits.

    Returns
    -------
    int

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.rank import estimate_rank
    >>> rng = np.random.default_rng(0)
    >>> spectra = rng.random((4, 30))
    >>> cube = rng.dirichlet(np.ones(4), size=(50, 50)) @ spectra
    >>> cube += 0.002 * rng.normal(size=cube.shape)
    >>> estimate_rank(cube)
    4
    """
    if noise not in NOISE:
        raise ValueError(f"noise={noise!r} is not one of {', '.join(map(repr, NOISE))}")
    direction = None if noise == "regression" else noise
    stats: MNFStatistics = gather_source(
        Source(data, channel_axis, aux=[("mask", mask)]),
        lambda b: mnf_block_statistics(
            b.values, b.channel_axis, noise=direction, mask=b.aux[0], nodata=nodata, sample=sample,
            seed=b.number,
        ),
    )
    signal: Moments = stats.signal
    if signal.count < 2:
        raise ValueError(
            f"the rank estimate needs at least 2 valid pixels, got {signal.count} "
            f"({signal.skipped} skipped for NaN/nodata); check mask=, nodata= and sample="
        )
    correlation = signal.covariance(ddof=0) + np.outer(signal.mean, signal.mean)
    if direction is None:
        residuals = regression_noise(correlation)
        noise_correlation = np.diag(np.diag(residuals))
        signal_correlation = correlation - 2 * noise_correlation + residuals
    else:
        diffs = stats.differences
        if diffs is None or diffs.count < 2:
            raise ValueError(
                f"too few neighbour pairs to estimate the noise from {noise!r} differences; "
                f"use noise='regression'"
            )
        noise_correlation = diffs.covariance(ddof=0) / 2.0
        signal_correlation = correlation - noise_correlation
    k, _ = hysime(correlation, signal_correlation, noise_correlation)
    return k
