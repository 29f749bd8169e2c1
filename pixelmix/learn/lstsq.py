"""Least-squares affine maps between paired images, from streamed joint moments.

Source and target channels of each pixel are stacked into one vector and
their joint moments streamed; the regression is then solved from the
centred scatter blocks: ``W = S_ts (S_ss + ridge I)^-1``, ``b = mean_t - W mean_s``.
That is ordinary least squares with an intercept (``ridge=0``), or ridge
regression with an unpenalised intercept, exactly as scikit-learn's
``Ridge(alpha=ridge)``.

Steps (for Dask or multi-file drivers):

1. ``lstsq_block_statistics(source_values, target_values, channel_axis, mask=)``
   returns the joint :class:`~pixelmix.learn.stats.Moments` (source channels
   first) of one block; the target block has the source block's shape
   with its own channel count;
2. ``Moments.merge`` combines them;
3. ``solve_lstsq(moments, n_source, ridge=, input_names=, output_names=)``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..mixer import Mixer
from .gather import gather_source
from .solve import blas_on_one_thread, input_names
from .source import Source, describe, is_path
from .stats import Moments, block_moments

__all__ = ["fit_lstsq", "lstsq_block_statistics", "solve_lstsq"]


def lstsq_block_statistics(source_values, target_values, channel_axis=-1, *, mask=None) -> Moments:
    """Step 1: joint moments of ``[source; target]`` channels over one block.

    ``target_values`` has the channels on ``channel_axis`` like the source.
    """
    source_values = np.asarray(source_values)
    target_values = np.asarray(target_values)
    axis = channel_axis % source_values.ndim
    src = np.moveaxis(source_values, axis, -1)
    tgt = np.moveaxis(target_values, axis, -1)
    if src.shape[:-1] != tgt.shape[:-1]:
        raise ValueError(
            f"target pixels have shape {tgt.shape[:-1]} but the source's have {src.shape[:-1]}; "
            f"source and target must be paired pixel for pixel"
        )
    # The target's channels follow the source's in the moments, read where they are (no joint copy).
    return block_moments(source_values, axis, mask=mask, extra=target_values)


@blas_on_one_thread
def solve_lstsq(
    moments: Moments,
    n_source: int,
    *,
    ridge: float = 0.0,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
) -> Mixer:
    """Step 3: the least-squares mixer from merged joint moments."""
    ridge = float(ridge)
    if not ridge >= 0:
        raise ValueError(f"ridge must be a non-negative number, got {ridge}")
    n_target = moments.n_channels - n_source
    if moments.count < 2:
        raise ValueError(
            f"least squares needs at least 2 valid pixel pairs, got {moments.count}; "
            f"check mask= and NaN in source or target"
        )
    s = moments.scatter
    sxx = s[:n_source, :n_source] + ridge * np.eye(n_source)
    sxy = s[:n_source, n_source:]
    syy = s[n_source:, n_source:]
    solution, _, rank, _ = np.linalg.lstsq(sxx, sxy, rcond=None)
    weights = solution.T
    mean_x, mean_y = moments.mean[:n_source], moments.mean[n_source:]
    residual = syy - weights @ sxy - sxy.T @ weights.T + weights @ s[:n_source, :n_source] @ weights.T
    total = np.diag(syy)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(total > 0, 1.0 - np.diag(residual) / total, 0.0)
    return Mixer(
        weights,
        mean_y - weights @ mean_x,
        input_names=input_names,
        output_names=output_names or [f"target{i + 1}" for i in range(n_target)],
        metadata={
            "method": "lstsq",
            "ridge": ridge,
            "rank": int(rank),
            "r2": r2,
            "residual_variance": np.diag(residual) / max(moments.count - n_source - 1, 1),
            "source_mean": mean_x,
            "target_mean": mean_y,
            "n_pixels": moments.count,
            "n_skipped": moments.skipped,
        },
    )


def fit_lstsq(source, target, *, channel_axis: int = -1, mask=None, ridge: float = 0.0) -> Mixer:
    """The affine map that best predicts ``target`` channels from ``source`` channels.

    For example learn a hyperspectral -> RGB rendering from a paired image,
    or a correction between two cameras. Least squares with an intercept;
    ``ridge`` adds a penalty on the weights (not on the intercept), as
    scikit-learn's ``Ridge(alpha=ridge)``. Pixels with NaN in either image,
    or outside ``mask``, are left out.

    Parameters
    ----------
    source : ndarray, np.memmap, str or path, dask.array.Array, or list of these
        C_s channels on ``channel_axis``.
    target : ndarray or np.memmap, or list of them
        The same pixels with C_t channels on the same axis (a list matching a
        list source).
    channel_axis : int
        The channel axis of both.
    mask : ndarray of bool, optional
        True = use the pixel.
    ridge : float
        Ridge penalty (0: ordinary least squares).

    Returns
    -------
    Mixer
        C_s -> C_t; ``metadata`` holds ``r2`` per target channel, ``rank``,
        ``residual_variance``.

    Examples
    --------
    >>> import numpy as np
    >>> import pixelmix as pm
    >>> rng = np.random.default_rng(0)
    >>> cube = rng.random((16, 16, 5))
    >>> rgb = cube @ rng.random((5, 3)) + 0.5
    >>> m = pm.fit_lstsq(cube, rgb)
    >>> bool(np.allclose(m(cube), rgb)), m.n_inputs, m.n_outputs
    (True, 5, 3)
    """
    parts = describe(source, channel_axis)

    def as_last(t, part):
        if is_path(t):
            raise TypeError(
                "target must be an array or memmap (e.g. tifffile.memmap(path)), not a path: it "
                "is read in the same slabs as the source"
            )
        t = np.asarray(t)
        if t.ndim != len(part.shape):
            raise ValueError(
                f"target has {t.ndim} dimensions but the source has {len(part.shape)}; "
                f"they must be paired pixel for pixel, channels on the same axis"
            )
        return np.moveaxis(t, part.channel_axis, -1)

    if isinstance(target, (list, tuple)):
        if len(target) != len(parts):
            raise ValueError(f"target is a list of {len(target)} but source has {len(parts)} parts")
        targets = [as_last(t, p) for t, p in zip(target, parts)]
    else:
        if len(parts) != 1:
            raise ValueError(f"source has {len(parts)} parts, so target must be a list of {len(parts)}")
        targets = as_last(target, parts[0])
    first = targets[0] if isinstance(targets, list) else targets
    n_target = first.shape[-1]
    n_source = parts[0].n_channels

    def block_fn(b):
        tgt = np.moveaxis(b.aux[1], -1, b.channel_axis)
        return lstsq_block_statistics(b.values, tgt, b.channel_axis, mask=b.aux[0])

    pixels = Source(source, channel_axis, aux=[("mask", mask), ("target", targets)], parts=parts)
    moments = gather_source(pixels, block_fn)
    if moments.count == 0:
        raise ValueError("no valid pixel pairs: all are masked out or hold NaN in source or target")
    names = [f"target{i + 1}" for i in range(n_target)]
    return solve_lstsq(moments, n_source, ridge=ridge, input_names=input_names(parts), output_names=names)
