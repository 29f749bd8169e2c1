"""The NumPy reference: the meaning of a per-pixel program, written plainly.

Every backend is tested against :func:`run_reference`. It is slow and
allocates freely; it only has to be obviously right. It is also what
``backend="numpy"`` runs. Each step computes itself through its own
``reference(v)`` method (see :mod:`pixelmix.lowering`).
"""

from __future__ import annotations

import numpy as np


def run_reference(
    steps,
    image: np.ndarray,
    *,
    channel_axis: int,
    out_dtype: np.dtype,
    acc_dtype: np.dtype,
    nodata: float | None,
) -> np.ndarray:
    """Apply ``steps`` to ``image`` (channels on ``channel_axis``).

    Values are converted to ``acc_dtype`` and every step is computed in it;
    an affine step sums ``bias[k] + w[k, 0] x[0] + w[k, 1] x[1] + ...`` left
    to right. (The kernels add in the same order but fuse each multiply-add
    into one rounding, FMA, so they agree with this to within the rounding
    of the partial sums, not bit for bit.) A pixel with NaN in any input
    channel, or any channel equal to ``nodata``, is NaN in every output
    channel. Integer output rounds half to even and saturates; bad pixels
    get ``nodata`` clipped to range, or 0.

    Examples
    --------
    >>> import numpy as np
    >>> import pixelmix as pm
    >>> from pixelmix.backends.numpy import run_reference
    >>> x = np.array([[1.0, 2.0], [np.nan, 0.0]])
    >>> run_reference((pm.Mixer([[1.0, 1.0]]),), x, channel_axis=-1, out_dtype=np.float64,
    ...               acc_dtype=np.float64, nodata=None)
    array([[ 3.],
           [nan]])
    """
    x = np.moveaxis(np.asarray(image), channel_axis, 0)
    bad = np.zeros(x.shape[1:], dtype=bool)
    if nodata is not None:
        bad |= np.any(x == nodata, axis=0)
    v = x.astype(acc_dtype)
    bad |= np.any(np.isnan(v), axis=0)
    for step in steps:
        with np.errstate(all="ignore"):
            v = step.reference(v)
    v[:, bad] = np.nan
    out_dtype = np.dtype(out_dtype)
    if out_dtype.kind in "iu":
        info = np.iinfo(out_dtype)
        fill = 0 if nodata is None else np.clip(np.rint(nodata), info.min, info.max)
        with np.errstate(invalid="ignore"):
            r = np.clip(np.rint(v), info.min, info.max)
        r[np.isnan(r)] = fill
        v = r
    return np.moveaxis(v.astype(out_dtype), 0, channel_axis)
