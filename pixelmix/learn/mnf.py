"""Minimum noise fraction (noise-adjusted principal components) from streamed moments.

MNF whitens the noise, then takes principal components: components come
out ordered by signal-to-noise ratio rather than by variance (Green et al.
1988; Lee, Woodyatt and Berman 1990). The noise covariance is estimated, by
default, as half the covariance of the differences between each pixel and
its lower-right diagonal neighbour, as Spectral Python's
``noise_from_diffs`` does.

Steps (for Dask or multi-file drivers):

1. ``mnf_block_statistics(values, channel_axis, noise=, mask=, nodata=, sample=, seed=)``
   returns :class:`MNFStatistics` (signal moments and neighbour-difference
   moments) of one block; neighbour pairs that straddle two blocks are not
   counted (a ~1/rows-per-block share of the pairs);
2. ``MNFStatistics.merge`` combines them;
3. ``solve_mnf(statistics, n_components, noise_covariance=, noise_ridge=, input_names=)``.

:func:`fit_mnf` runs all three.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..mixer import Mixer
from .gather import gather_source
from .solve import blas_on_one_thread, check_n_components, fix_signs, input_names, symmetric_eigh
from .source import Source, is_path
from .stats import Moments, block_moments

__all__ = ["fit_mnf", "mnf_block_statistics", "solve_mnf", "MNFStatistics", "NOISE_DIRECTIONS"]

NOISE_DIRECTIONS = ("diagonal", "right", "lower")


@dataclass
class MNFStatistics:
    """Signal moments, and moments of neighbour differences (None when noise is given)."""

    signal: Moments
    differences: Moments | None

    def merge(self, other: "MNFStatistics") -> "MNFStatistics":
        diffs = None
        if self.differences is not None and other.differences is not None:
            diffs = self.differences.merge(other.differences)
        return MNFStatistics(self.signal.merge(other.signal), diffs)


def mnf_block_statistics(
    values, channel_axis=-1, *, noise="diagonal", mask=None, nodata=None, sample=None, seed=0
) -> MNFStatistics:
    """Step 1: signal moments and (for ``noise`` a direction) neighbour-difference moments."""
    signal = block_moments(values, channel_axis, mask=mask, nodata=nodata, sample=sample, seed=seed)
    diffs = None
    if isinstance(noise, str):
        diffs = block_moments(
            values, channel_axis, mask=mask, nodata=nodata, sample=sample, seed=seed, pair=noise
        )
    return MNFStatistics(signal, diffs)


def _inverse_sqrt(cov: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """``cov^(-1/2)`` and ``cov^(1/2)`` (symmetric), or a clear error when singular."""
    values, vectors = symmetric_eigh(cov)
    if ridge:
        values = values + ridge * max(float(np.mean(np.diag(cov))), np.finfo(float).tiny)
    top = float(values.max()) if values.size else 0.0
    if top <= 0 or values.min() <= top * 1e-12:
        raise ValueError(
            f"the noise covariance is singular (eigenvalues from {values.min():.3g} to {top:.3g}): "
            f"some channel combination has no noise (constant or duplicated channels, "
            f"quantised data with tiny noise). Pass noise_ridge=1e-6 (or larger) to add that "
            f"fraction of the mean noise variance to its diagonal, or pass a noise covariance"
        )
    inv_sqrt = (vectors / np.sqrt(values)) @ vectors.T
    sqrt = (vectors * np.sqrt(values)) @ vectors.T
    return inv_sqrt, sqrt


@blas_on_one_thread
def solve_mnf(
    statistics: MNFStatistics,
    n_components: int,
    *,
    noise_covariance: np.ndarray | None = None,
    noise_ridge: float = 0.0,
    input_names: Sequence[str] | None = None,
    noise_label: str = "diagonal",
) -> Mixer:
    """Step 3: the MNF mixer from merged statistics.

    The noise covariance is ``noise_covariance`` when given, else half the
    covariance of the neighbour differences. The mixer computes
    ``V_k^T N^(-1/2) (x - mean)`` (N the noise covariance, V the
    eigenvectors of the noise-whitened signal covariance), and stores the
    matching reconstruction ``N^(1/2) V_k`` as ``metadata["inverse"]`` so
    that ``m.pinv() @ m`` is the MNF denoiser.
    """
    signal = statistics.signal
    n_channels = signal.n_channels
    k = check_n_components(n_components, n_channels, "MNF", "the number of channels")
    if signal.count < 2:
        raise ValueError(f"MNF needs at least 2 valid pixels, got {signal.count}")
    if noise_covariance is None:
        diffs = statistics.differences
        if diffs is None or diffs.count < 2:
            got = 0 if diffs is None else diffs.count
            raise ValueError(
                f"too few neighbour pairs ({got}) to estimate the noise; the image must have "
                f"at least 2 rows and 2 columns of valid pixels, or pass noise= a covariance"
            )
        noise = diffs.covariance() / 2.0
    else:
        noise = np.asarray(noise_covariance, dtype=np.float64)
        if noise.shape != (n_channels, n_channels):
            raise ValueError(
                f"the noise covariance has shape {noise.shape}, expected ({n_channels}, {n_channels})"
            )
    inv_sqrt, sqrt = _inverse_sqrt(noise, noise_ridge)
    whitened = inv_sqrt @ signal.covariance() @ inv_sqrt
    eigenvalues, vectors = symmetric_eigh(whitened)
    transform = vectors[:, :k].T @ inv_sqrt
    signs = fix_signs(transform)
    transform *= signs[:, None]
    inverse = sqrt @ (vectors[:, :k] * signs)
    return Mixer(
        transform,
        -transform @ signal.mean,
        input_names=input_names,
        output_names=[f"MNF{i + 1}" for i in range(k)],
        metadata={
            "method": "mnf",
            "n_components": k,
            "noise": noise_label,
            "noise_ridge": float(noise_ridge),
            "mean": signal.mean,
            "snr": eigenvalues[:k] - 1.0,
            "eigenvalues": eigenvalues,
            "inverse": inverse,
            "n_pixels": signal.count,
            "n_skipped": signal.skipped,
            "n_noise_pairs": 0 if statistics.differences is None else statistics.differences.count,
        },
    )


def fit_mnf(
    data,
    n_components: int,
    *,
    channel_axis: int = -1,
    mask=None,
    nodata=None,
    noise="diagonal",
    sample=None,
    noise_ridge: float = 0.0,
) -> Mixer:
    """Minimum noise fraction transform of the pixels of ``data``, as a Mixer.

    Components are ordered by decreasing signal-to-noise ratio, each signed
    so its largest-magnitude loading is positive; outputs have unit noise
    variance. ``m.pinv() @ m`` is the MNF denoiser (keep the first
    ``n_components``, map back), run as one pass.

    Parameters
    ----------
    data : ndarray, np.memmap, str or path, dask.array.Array, or list of these
        Pixels with channels on ``channel_axis``; rows and columns (for the
        neighbour differences) are the last two other axes.
    n_components : int
        Components kept.
    channel_axis : int
        The channel axis of array data (TIFF: from the file unless given).
    mask : ndarray of bool, optional
        True = use the pixel (a neighbour pair needs both pixels).
    nodata : number, optional
        Pixels with any channel equal to this are skipped.
    noise : {"diagonal", "right", "lower"} or ndarray, or data
        How to estimate the noise covariance: half the covariance of the
        differences with the lower-right, right or lower neighbour (default
        "diagonal", as Spectral Python); a (C, C) noise covariance; or a noise
        image (an array of the data's shape, a TIFF path or list) whose
        covariance is used.
    sample : float or int, optional
        Fit on a fraction (float) or every n-th (int) pixel.
    noise_ridge : float
        Add this fraction of the mean noise variance to the noise
        covariance's diagonal: the cure for a singular noise covariance.

    Returns
    -------
    Mixer
        Outputs "MNF1", ...; ``metadata`` holds ``mean``, ``snr`` (eigenvalue
        minus one per kept component), ``eigenvalues`` (all) and ``inverse``.

    Examples
    --------
    >>> import numpy as np
    >>> import pixelmix as pm
    >>> rng = np.random.default_rng(0)
    >>> signal = rng.normal(size=(64, 64, 1)).cumsum(0).cumsum(1) @ rng.normal(size=(1, 8))
    >>> cube = signal + rng.normal(size=(64, 64, 8))
    >>> mnf = pm.fit_mnf(cube, 2)
    >>> mnf.output_names, bool(mnf.metadata["snr"][0] > 10)
    (('MNF1', 'MNF2'), True)
    >>> denoised = (mnf.pinv() @ mnf)(cube)
    """
    source = Source(data, channel_axis, aux=[("mask", mask)])
    parts = source.parts
    n_channels = parts[0].n_channels
    noise_cov = None
    noise_image = None
    if isinstance(noise, str) and noise in NOISE_DIRECTIONS:
        label = noise
    elif noise is None or is_path(noise) and not os.path.exists(noise):
        raise ValueError(
            f"noise={noise!r} is not one of {', '.join(map(repr, NOISE_DIRECTIONS))}, "
            f"a (C, C) covariance, a noise image or the path of one"
        )
    elif isinstance(noise, np.ndarray) and noise.shape == (n_channels, n_channels) and not (
        len(parts) == 1 and noise.shape == parts[0].shape
    ):
        noise_cov = noise
        label = "covariance"
    else:
        noise_image = noise
        label = "image"
    block_noise = noise if noise_cov is None and noise_image is None else None
    stats = gather_source(
        source,
        lambda b: mnf_block_statistics(
            b.values, b.channel_axis, noise=block_noise, mask=b.aux[0], nodata=nodata,
            sample=sample, seed=b.number,
        ),
    )
    if stats.signal.count == 0:
        raise ValueError(
            f"no valid pixels to fit: all are masked out or hold NaN/nodata "
            f"({stats.signal.skipped} skipped for NaN/nodata)"
        )
    if noise_image is not None:
        noise_source = Source(noise_image, channel_axis)
        if noise_source.parts[0].n_channels != n_channels:
            raise ValueError(
                f"the noise image has {noise_source.parts[0].n_channels} channels but the data has "
                f"{n_channels}; pass noise= an image of the data's shape or a (C, C) covariance"
            )
        noise_moments = gather_source(
            noise_source,
            lambda b: block_moments(b.values, b.channel_axis, nodata=nodata, sample=sample, seed=b.number),
        )
        noise_cov = noise_moments.covariance()
    return solve_mnf(
        stats,
        n_components,
        noise_covariance=noise_cov,
        noise_ridge=noise_ridge,
        input_names=input_names(parts),
        noise_label=label,
    )
