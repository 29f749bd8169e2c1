"""The NumPy reference: the meaning of a per-pixel program, written plainly.

Every backend is tested against :func:`run_reference`. It is slow and
allocates freely; it only has to be obviously right. It is also what
``backend="numpy"`` runs.
"""

from __future__ import annotations

import numpy as np

from ..ops import Elementwise


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
    of the partial sums, not bit for bit.) A pixel with NaN in any input channel, or any channel equal to
    ``nodata``, is NaN in every output channel. Integer output rounds half to
    even and saturates; bad pixels get ``nodata`` clipped to range, or 0.
    """
    x = np.moveaxis(np.asarray(image), channel_axis, 0)
    bad = np.zeros(x.shape[1:], dtype=bool)
    if nodata is not None:
        bad |= np.any(x == nodata, axis=0)
    v = x.astype(acc_dtype)
    bad |= np.any(np.isnan(v), axis=0)
    for step in steps:
        if isinstance(step, Elementwise):
            with np.errstate(all="ignore"):
                v = step.reference(v)
        else:
            w = step.weights.astype(acc_dtype)
            acc = np.empty((step.n_outputs,) + v.shape[1:], dtype=acc_dtype)
            acc[...] = step.bias.astype(acc_dtype).reshape((-1,) + (1,) * (v.ndim - 1))
            with np.errstate(all="ignore"):
                for c in range(step.n_inputs):
                    for k in range(step.n_outputs):
                        acc[k] += w[k, c] * v[c]
            v = acc
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
