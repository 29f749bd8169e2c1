"""fit_lstsq against NumPy's lstsq and scikit-learn's Ridge."""

import numpy as np
import pytest

import pixelmix as pm
from pixelmix.learn import stats


@pytest.fixture
def pair(rng):
    source = rng.random((20, 25, 5))
    target = source @ rng.random((5, 3)) + [0.5, -1, 2] + rng.normal(size=(20, 25, 3)) * 0.05
    return source, target


def _numpy_lstsq(x, y):
    a = np.c_[x, np.ones(len(x))]
    sol = np.linalg.lstsq(a, y, rcond=None)[0]
    return sol[:-1].T, sol[-1]


@pytest.mark.parametrize("axis", [0, -1])
def test_matches_numpy_lstsq(pair, axis):
    source, target = pair
    m = pm.fit_lstsq(np.moveaxis(source, -1, axis).copy(), np.moveaxis(target, -1, axis).copy(), channel_axis=axis)
    w, b = _numpy_lstsq(source.reshape(-1, 5), target.reshape(-1, 3))
    np.testing.assert_allclose(m.weights, w, atol=1e-10)
    np.testing.assert_allclose(m.bias, b, atol=1e-10)
    assert (m.n_inputs, m.n_outputs) == (5, 3) and m.metadata["rank"] == 5
    assert min(m.metadata["r2"]) > 0.9


def test_ridge_matches_sklearn(pair):
    from sklearn.linear_model import Ridge

    source, target = pair
    ref = Ridge(alpha=2.5).fit(source.reshape(-1, 5), target.reshape(-1, 3))
    m = pm.fit_lstsq(source, target, ridge=2.5)
    np.testing.assert_allclose(m.weights, ref.coef_, atol=1e-10)
    np.testing.assert_allclose(m.bias, ref.intercept_, atol=1e-10)


def test_mask_and_nan_pairs_are_left_out(pair, rng):
    source, target = pair
    target = target.copy()
    target[2, 3, 1] = np.nan
    mask = rng.random(source.shape[:2]) > 0.2
    m = pm.fit_lstsq(source.astype(np.float32), target, mask=mask)
    keep = mask & ~np.isnan(target).any(-1)
    w, b = _numpy_lstsq(source.astype(np.float32)[keep].astype(np.float64), target[keep])
    np.testing.assert_allclose(m.weights, w, atol=1e-9)
    assert m.metadata["n_pixels"] == keep.sum()


def test_errors(pair):
    source, target = pair
    with pytest.raises(ValueError, match="target has shape"):
        pm.fit_lstsq(source, target[:5])
    with pytest.raises(ValueError, match="non-negative"):
        pm.fit_lstsq(source, target, ridge=-1)
    with pytest.raises(TypeError, match="not a path"):
        pm.fit_lstsq(source, "target.tif")
    with pytest.raises(ValueError, match="no valid pixel pairs"):
        pm.fit_lstsq(source, target, mask=np.zeros(source.shape[:2], bool))


def test_integer_targets_of_any_width(rng):
    source = rng.integers(0, 100, (20, 25, 4)).astype(np.uint16)
    target = source.astype(np.int64) @ np.array([[1, 0], [2, 1], [0, 3], [1, 1]]) + 7  # NumPy's default int64
    expected = pm.fit_lstsq(source, target.astype(np.float64))
    compiled = len(stats._block_gram.signatures)
    for t in (target, target.astype(np.int32), target.astype(np.uint16)):
        m = pm.fit_lstsq(source, t)
        np.testing.assert_allclose(m.weights, expected.weights, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(m.bias, [7, 7], rtol=1e-9)
    # Integer targets are read as float64: no moments kernel of their own to compile.
    assert len(stats._block_gram.signatures) == compiled
    assert pm.fit_lstsq(source.astype(np.float32), target > 300).n_outputs == 2  # bool, as 0 and 1
