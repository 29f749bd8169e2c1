"""What every solve step (step 3 of a fit) shares: names, signs, component counts, eigh.

SciPy is imported by :func:`symmetric_eigh`, when a fit is solved, so that
importing pixelmix stays fast.
"""

from __future__ import annotations

import numpy as np

from .source import Part

__all__ = ["input_names", "fix_signs", "check_n_components", "symmetric_eigh"]


def input_names(parts: list[Part]) -> tuple[str, ...] | None:
    """Channel names shared by all parts (from TIFF metadata), else None.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.source import describe
    >>> from pixelmix.learn.solve import input_names
    >>> input_names(describe(np.zeros((4, 3)))) is None
    True
    """
    names = {p.channel_names for p in parts}
    if len(names) == 1:
        only = names.pop()
        if only is not None and len(only) == parts[0].n_channels:
            return only
    return None


def fix_signs(rows: np.ndarray) -> np.ndarray:
    """+1 or -1 per row so that each row's largest-magnitude entry becomes positive.

    The same rule as scikit-learn's ``svd_flip(u_based_decision=False)``.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.solve import fix_signs
    >>> fix_signs(np.array([[0.1, -0.9], [0.5, 0.2]])).tolist()
    [-1.0, 1.0]
    """
    idx = np.argmax(np.abs(rows), axis=1)
    signs = np.sign(rows[np.arange(rows.shape[0]), idx])
    signs[signs == 0] = 1.0
    return signs


def check_n_components(n_components, n_max: int, what: str, limit_reason: str) -> int:
    """Validate an integer number of components against ``n_max``.

    Examples
    --------
    >>> from pixelmix.learn.solve import check_n_components
    >>> check_n_components(2, 6, "PCA", "the number of channels")
    2
    """
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)):
        raise TypeError(f"n_components must be an integer, got {n_components!r}")
    if not 1 <= n_components <= n_max:
        raise ValueError(
            f"n_components={n_components} is out of range for {what}: it must be between 1 "
            f"and {n_max} ({limit_reason})"
        )
    return int(n_components)


def symmetric_eigh(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (decreasing) and eigenvectors (columns) of a symmetric matrix.

    SciPy's LAPACK, not NumPy's: on a busy machine NumPy's multithreaded
    OpenBLAS was seen taking 30-80 ms for a 32 x 32 eigh that SciPy does in 0.1 ms.
    """
    import scipy.linalg

    values, vectors = scipy.linalg.eigh((matrix + matrix.T) / 2)
    return values[::-1].copy(), vectors[:, ::-1].copy()
