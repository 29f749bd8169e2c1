"""What every solve step (step 3 of a fit) shares: names, signs, component counts, eigh, one BLAS thread.

SciPy and threadpoolctl are imported when a fit is first solved, so that
importing pixelmix stays fast.
"""

from __future__ import annotations

import functools
import importlib

import numpy as np

from .source import Part

__all__ = ["input_names", "fix_signs", "check_n_components", "symmetric_eigh", "blas_on_one_thread"]


@functools.cache
def _blas_controller():
    """threadpoolctl's handle on the BLAS libraries loaded, SciPy's among them (loaded first)."""
    from threadpoolctl import ThreadpoolController

    importlib.import_module("scipy.linalg")  # loads SciPy's BLAS, so that the controller sees it
    return ThreadpoolController()


def blas_on_one_thread(solve):
    """Decorate ``solve`` to run with every BLAS library limited to one thread.

    A solve works on C x C matrices (C up to a few hundred channels). There a
    multithreaded OpenBLAS is no faster (a 128 x 128 eigh, solve or lstsq:
    1.2-1.4 ms on one thread, 1.4-2.2 ms on two), and its idle threads then
    spin for 0.1 s: a 2000 x 2000 matmul right after a fit took 182 ms
    instead of 131. The limit is threadpoolctl's, set and restored around
    each call (10 us), for the whole process while it lasts.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.solve import blas_on_one_thread
    >>> inverse = blas_on_one_thread(np.linalg.inv)
    >>> inverse(np.eye(2) * 2).tolist()
    [[0.5, 0.0], [0.0, 0.5]]
    """

    @functools.wraps(solve)
    def on_one_thread(*args, **kwargs):
        with _blas_controller().limit(limits=1, user_api="blas"):
            return solve(*args, **kwargs)

    return on_one_thread


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


@blas_on_one_thread
def symmetric_eigh(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (decreasing) and eigenvectors (columns) of a symmetric matrix.

    SciPy's LAPACK, not NumPy's: on a busy machine NumPy's multithreaded
    OpenBLAS was seen taking 30-80 ms for a 32 x 32 eigh that SciPy does in 0.1 ms.
    """
    import scipy.linalg

    values, vectors = scipy.linalg.eigh((matrix + matrix.T) / 2)
    return values[::-1].copy(), vectors[:, ::-1].copy()
