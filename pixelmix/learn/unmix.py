"""Linear spectral unmixing: abundances of known endmember spectra.

Each pixel ``x`` (C channels) is modelled as ``E^T a``: a mix of K endmember
spectra (the rows of ``E``) with abundances ``a``. The least-squares
abundances are a fixed linear map of the pixel, ``a = (E E^T)^-1 E x``, so
unconstrained unmixing is a Mixer and runs at mixing speed; with
``sum_to_one=True`` the closed-form sum-to-one constrained solution is
affine too (Settle and Drake 1993): ``a_c = a + g (1 - 1^T a)`` with
``g = (E E^T)^-1 1 / (1^T (E E^T)^-1 1)``. Non-negativity (NNLS, and FCLS
with sum-to-one) is not linear: it is an :class:`pixelmix.unmixer.Unmixer`
step, solved exactly per pixel in the kernels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..mixer import Mixer
from ..kernels.unmix_layout import check_endmembers
from ..unmixer import Unmixer

__all__ = ["unmixer"]


def unmixer(
    endmembers,
    *,
    nonneg: bool = False,
    sum_to_one: bool = False,
    residual: bool = False,
    names: Sequence[str] | None = None,
) -> Mixer | Unmixer:
    """A step from C channels to the abundances of K endmembers.

    Parameters
    ----------
    endmembers : array_like, shape (K, C)
        One endmember spectrum per row, K <= C, linearly independent.
    nonneg : bool
        Abundances are non-negative: NNLS per pixel (with ``sum_to_one``: FCLS).
    sum_to_one : bool
        Constrain the abundances of each pixel to sum to one.
    residual : bool
        Append one output channel, "residual": the per-pixel root-mean-square
        residual over the input channels.
    names : sequence of str, optional
        Endmember names; outputs are called "abundance:<name>" (default
        names "em1", "em2", ...).

    Returns
    -------
    Mixer or Unmixer
        A Mixer when the map is affine (``nonneg=False`` and
        ``residual=False``), else an :class:`~pixelmix.unmixer.Unmixer`. Both
        apply, save, load and run on every backend the same way;
        ``metadata`` holds the endmembers, the constraints and the
        condition number of the endmember matrix.

    Examples
    --------
    >>> import numpy as np
    >>> import pixelmix as pm
    >>> E = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    >>> m = pm.unmixer(E, names=["water", "soil"])
    >>> m.output_names
    ('abundance:water', 'abundance:soil')
    >>> m(np.array([0.25, 0.75, 1.0]))
    array([0.25, 0.75])
    >>> fcls = pm.unmixer(E, nonneg=True, sum_to_one=True, residual=True)
    >>> fcls(np.array([[2.0, -1.0, 1.0]])).round(6)
    array([[1.      , 0.      , 0.816497]])
    """
    e = np.asarray(endmembers, dtype=np.float64)
    e, singular = check_endmembers(e[None, :] if e.ndim == 1 else e)  # one spectrum: one endmember
    k = e.shape[0]
    names = [f"em{i + 1}" for i in range(k)] if names is None else [str(n) for n in names]
    if len(names) != k:
        raise ValueError(f"names has {len(names)} entries but there are {k} endmembers")
    metadata = {
        "method": "unmix",
        "nonneg": bool(nonneg),
        "sum_to_one": bool(sum_to_one),
        "endmembers": e,
        "endmember_names": names,
        "condition_number": float(singular[0] / singular[-1]),
    }
    if nonneg or residual:
        del metadata["endmembers"]  # the step holds them
        return Unmixer(e, nonneg=nonneg, sum_to_one=sum_to_one, residual=residual, names=names, metadata=metadata)
    gram = e @ e.T
    weights = np.linalg.solve(gram, e)  # (K, C): a = W x
    bias = np.zeros(k)
    if sum_to_one:
        g = np.linalg.solve(gram, np.ones(k))
        g /= g.sum()
        weights = weights - np.outer(g, weights.sum(axis=0))
        bias = g
    del metadata["nonneg"]
    return Mixer(weights, bias, output_names=[f"abundance:{n}" for n in names], metadata=metadata)
