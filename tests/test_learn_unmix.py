"""unmixer against per-pixel least squares (NumPy) and the constrained KKT solution."""

import numpy as np
import pytest

import pixelmix as pm


def test_unconstrained_matches_numpy_lstsq(rng):
    e = rng.random((3, 8))
    x = rng.random((6, 7, 8))
    m = pm.unmixer(e, names=["a", "b", "c"])
    assert m.output_names == ("abundance:a", "abundance:b", "abundance:c")
    ref = np.linalg.lstsq(e.T, x.reshape(-1, 8).T, rcond=None)[0].T
    np.testing.assert_allclose(m(x).reshape(-1, 3), ref, atol=1e-10)
    # Channels first, as a multi-page stack.
    np.testing.assert_allclose(
        np.moveaxis(m(np.moveaxis(x, -1, 0).copy(), channel_axis=0), 0, -1), m(x), atol=1e-12
    )


def test_sum_to_one_matches_kkt(rng):
    e = rng.random((3, 8))
    x = rng.random((20, 8))
    m = pm.unmixer(e, sum_to_one=True)
    kkt = np.zeros((4, 4))
    kkt[:3, :3] = 2 * e @ e.T
    kkt[:3, 3] = kkt[3, :3] = 1
    ref = np.array([np.linalg.solve(kkt, np.r_[2 * e @ p, 1.0])[:3] for p in x])
    a = m(x)
    np.testing.assert_allclose(a, ref, atol=1e-10)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-12)
    # Pure endmembers unmix to one-hot abundances.
    np.testing.assert_allclose(m(e), np.eye(3), atol=1e-10)


def test_errors():
    with pytest.raises(ValueError, match="linearly dependent"):
        pm.unmixer([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])
    with pytest.raises(ValueError, match="at most 2 endmembers"):
        pm.unmixer(np.eye(3)[:, :2])
    with pytest.raises(ValueError, match="names has 1"):
        pm.unmixer(np.eye(3)[:2], names=["x"])
    with pytest.raises(ValueError, match="NaN"):
        pm.unmixer([[1.0, np.nan]])
