"""The parameters of an UNMIX step, in plain NumPy: built once per program, read by the kernels.

The layout is described in :mod:`pixelmix.kernels.unmix`, whose Numba
kernels read it; this module imports no Numba, so the user objects
(:mod:`pixelmix.unmixer`) check endmembers and lower their steps without
loading it.
"""

from __future__ import annotations

import numpy as np

# Slots before the endmember matrix.
HEADER = 5


def check_endmembers(endmembers) -> tuple[np.ndarray, np.ndarray]:
    """``(E, singular values)`` of a valid (K, C) endmember matrix, or a clear error.

    Examples
    --------
    >>> from pixelmix.kernels.unmix_layout import check_endmembers
    >>> check_endmembers([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])[0].shape
    (2, 3)
    """
    e = np.array(endmembers, dtype=np.float64)
    if e.ndim != 2 or 0 in e.shape:
        raise ValueError(f"endmembers must be a (K, C) array, one spectrum per row; got shape {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError("endmembers contain NaN or Inf; pass finite spectra")
    k, c = e.shape
    if k > c:
        raise ValueError(
            f"{k} endmembers cannot be unmixed from {c} channels: at most {c} endmembers "
            f"(rows) are identifiable; did you pass the array transposed (it must be (K, C))?"
        )
    singular = np.linalg.svd(e, compute_uv=False)
    rank = int(np.sum(singular > singular[0] * max(e.shape) * np.finfo(float).eps))
    if rank < k:
        raise ValueError(
            f"the {k} endmembers are linearly dependent (rank {rank}): some spectrum is a "
            f"combination of the others, so abundances are not unique; remove or merge endmembers"
        )
    return e, singular


def n_params(n_endmembers: int, n_channels: int) -> int:
    """Length of the step's parameters for K endmembers and C channels."""
    k, c = n_endmembers, n_channels
    return HEADER + k * c + 2 * k * k + k + 1


def pack(endmembers, nonneg: bool, sum_to_one: bool, residual: bool) -> np.ndarray:
    """The flat float64 parameters of an UNMIX step.

    Parameters
    ----------
    endmembers : array_like, shape (K, C)
        One spectrum per row, linearly independent (so K <= C).
    nonneg : bool
        Constrain the abundances to be non-negative.
    sum_to_one : bool
        Constrain the abundances of each pixel to sum to one.
    residual : bool
        Append the per-pixel root-mean-square residual as output K.

    Returns
    -------
    ndarray of float64
        The layout in :mod:`pixelmix.kernels.unmix`'s docstring; the table row of the step is
        ``(UNMIX, C, K + residual, offset)``.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.kernels import unmix_layout as unmix
    >>> p = unmix.pack(np.eye(2, 3), nonneg=True, sum_to_one=True, residual=False)
    >>> p[:5].tolist(), len(p) == unmix.n_params(2, 3)
    ([2.0, 3.0, 1.0, 1.0, 0.0], True)
    """
    e, _ = check_endmembers(endmembers)
    k, c = e.shape
    gram = e @ e.T
    gram = (gram + gram.T) / 2
    inverse = np.linalg.inv(gram)
    inverse = (inverse + inverse.T) / 2
    ones = inverse.sum(axis=1)  # G^-1 1
    header = [float(k), float(c), float(bool(nonneg)), float(bool(sum_to_one)), float(bool(residual))]
    return np.concatenate(
        [header, e.ravel(), gram.ravel(), inverse.ravel(), ones, [1.0 / ones.sum()]]
    ).astype(np.float64)


def n_outputs(params: np.ndarray, offset: int = 0) -> int:
    """Output channels of the step at ``offset``: K, plus one with the residual."""
    return int(params[offset]) + int(params[offset + 4] != 0)
