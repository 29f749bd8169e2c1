"""The CPU kernels' vectorisable exp, log and pow against NumPy's, over the whole float64 range."""

import numpy as np
import pytest
from numba import njit

from pixelmix.kernels import vmath


# One compiled loop for the three (which: 0 exp, 1 log, 2 pow with exponent y), with
# the error model of the kernel that calls them.
@njit(error_model="numpy", cache=True)
def _run(which, x, y):
    out = np.empty_like(x)
    for i in range(x.size):
        if which == 0:
            out[i] = vmath.exp(x[i])
        elif which == 1:
            out[i] = vmath.log(x[i])
        else:
            out[i] = vmath.pow(x[i], y)
    return out


def _ulps(got, want):
    finite = np.isfinite(want) & (want != 0)
    return np.max(np.abs(got[finite] - want[finite]) / np.spacing(np.abs(want[finite])))


SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 5e-324, 2.2250738585072014e-308, 1e-310])


def test_exp_within_one_ulp_and_specials_as_numpy(rng):
    edges = [709.78, 709.79, 710.0, -745.13, -745.14, -746.0, -708.4, -708.3, 1e-300, -1e-300]
    x = np.concatenate([rng.uniform(-750, 712, 200_000), rng.uniform(-1, 1, 100_000), SPECIAL, edges])
    got = _run(0, x, 0.0)
    with np.errstate(all="ignore"):
        want = np.exp(x)
    assert _ulps(got, want) <= 1
    # inf, 0 (also for results below the smallest subnormal) and NaN exactly where NumPy has them
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~np.isfinite(want) | (want == 0)], want[~np.isfinite(want) | (want == 0)])
    assert got[np.flatnonzero(x == -745.13)[0]] == 5e-324  # a subnormal result, rounded once


def test_log_within_two_ulps_and_specials_as_numpy(rng):
    x = np.concatenate([np.exp(rng.uniform(-744, 709, 200_000)), rng.uniform(0.5, 2, 100_000),
                        rng.uniform(0, 1e-308, 1000), SPECIAL])
    got = _run(1, x, 0.0)
    with np.errstate(all="ignore"):
        want = np.log(x)
    assert _ulps(got, want) <= 2
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    special = ~np.isfinite(want) | (x == 1.0)
    np.testing.assert_array_equal(got[special], want[special])  # -inf at 0, inf at inf, 0 at 1


@pytest.mark.parametrize(("low", "power"), [(0.0031308, 1 / 2.4), (0.09, 2.4)])
def test_pow_on_the_srgb_curves(rng, low, power):
    x = np.concatenate([rng.uniform(low, 1.0, 200_000), [low, 1.0, 1e10, np.inf, np.nan]])
    got = _run(2, x, power)
    want = np.power(x, power)
    np.testing.assert_allclose(got, want, rtol=4e-15)
    assert np.isnan(got[-1]) and got[-2] == np.inf
