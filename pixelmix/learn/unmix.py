"""Linear spectral unmixing as a Mixer: abundances of known endmember spectra.

Each pixel ``x`` (C channels) is modelled as ``E^T a``: a mix of K endmember
spectra (the rows of ``E``) with abundances ``a``. The least-squares
abundances are a fixed linear map of the pixel, ``a = (E E^T)^-1 E x``, so
unmixing runs at mixing speed; with ``sum_to_one=True`` the closed-form
sum-to-one constrained solution is affine (Settle and Drake 1993):
``a_c = a + g (1 - 1^T a)`` with ``g = (E E^T)^-1 1 / (1^T (E E^T)^-1 1)``.
Non-negativity is not linear and is not imposed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..mixer import Mixer

__all__ = ["unmixer"]


def unmixer(endmembers, *, sum_to_one: bool = False, names: Sequence[str] | None = None) -> Mixer:
    """A mixer from C channels to the abundances of K endmembers.

    Parameters
    ----------
    endmembers : array_like, shape (K, C)
        One endmember spectrum per row, K <= C, linearly independent.
    sum_to_one : bool
        Constrain the abundances of each pixel to sum to one (closed form,
        fully affine); otherwise unconstrained least squares.
    names : sequence of str, optional
        Endmember names; outputs are called "abundance:<name>" (default
        names "em1", "em2", ...).

    Returns
    -------
    Mixer
        ``metadata`` holds the endmembers, ``sum_to_one`` and the condition
        number of the endmember matrix.

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
    """
    e = np.array(endmembers, dtype=np.float64)
    if e.ndim == 1:
        e = e[None, :]
    if e.ndim != 2 or 0 in e.shape:
        raise ValueError(f"endmembers must be a (K, C) array, one spectrum per row; got shape {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError("endmembers contain NaN or Inf")
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
    gram = e @ e.T
    weights = np.linalg.solve(gram, e)  # (K, C): a = W x
    bias = np.zeros(k)
    if sum_to_one:
        g = np.linalg.solve(gram, np.ones(k))
        g /= g.sum()
        weights = weights - np.outer(g, weights.sum(axis=0))
        bias = g
    if names is None:
        names = [f"em{i + 1}" for i in range(k)]
    names = [str(n) for n in names]
    if len(names) != k:
        raise ValueError(f"names has {len(names)} entries but there are {k} endmembers")
    return Mixer(
        weights,
        bias,
        output_names=[f"abundance:{n}" for n in names],
        metadata={
            "method": "unmix",
            "sum_to_one": bool(sum_to_one),
            "endmembers": e,
            "endmember_names": names,
            "condition_number": float(singular[0] / singular[-1]),
        },
    )
