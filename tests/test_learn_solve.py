"""The solve steps run BLAS on one thread, and leave its thread count as they found it."""

import numpy as np
import pytest
import scipy.linalg
from threadpoolctl import threadpool_info

import pixelmix as pm


def _blas_threads() -> dict[str, int]:
    return {lib["filepath"]: lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


@pytest.fixture
def seen(monkeypatch):
    """The BLAS thread counts at each eigh and lstsq call the solves make."""
    calls = []
    real_eigh, real_lstsq = scipy.linalg.eigh, np.linalg.lstsq

    def eigh(*args, **kwargs):
        calls.append(_blas_threads())
        return real_eigh(*args, **kwargs)

    def lstsq(*args, **kwargs):
        calls.append(_blas_threads())
        return real_lstsq(*args, **kwargs)

    monkeypatch.setattr(scipy.linalg, "eigh", eigh)
    monkeypatch.setattr(np.linalg, "lstsq", lstsq)
    return calls


@pytest.mark.parametrize("fit", ["pca", "mnf", "lda", "lstsq", "rank"])
def test_solves_run_blas_on_one_thread(seen, fit, rng):
    cube = rng.random((12, 10, 5))
    labels = np.arange(120).reshape(12, 10) % 3 + 1
    before = _blas_threads()
    assert before, "no BLAS library found: the test would check nothing"
    {
        "pca": lambda: pm.fit_pca(cube, 2),
        "mnf": lambda: pm.fit_mnf(cube, 2),
        "lda": lambda: pm.fit_lda(cube, labels),
        "lstsq": lambda: pm.fit_lstsq(cube, cube[..., :2] @ np.ones((2, 1))),
        "rank": lambda: pm.estimate_rank(cube),
    }[fit]()
    assert seen, "the solve made no eigh or lstsq call"
    assert all(set(call.values()) == {1} for call in seen)
    assert _blas_threads() == before
