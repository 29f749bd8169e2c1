"""fit_mnf against Spectral Python's mnf / noise_from_diffs."""

import numpy as np
import pytest

import pixelmix as pm


@pytest.fixture
def cube(rng):
    signal = rng.normal(size=(36, 44, 2)).cumsum(0).cumsum(1) @ rng.normal(size=(2, 6))
    return signal + rng.normal(size=(36, 44, 6)) * rng.uniform(0.5, 2.0, 6)


def _spy(x, direction="lowerright", noise_cov=None):
    from spectral import GaussianStats, calc_stats, mnf, noise_from_diffs

    noise = noise_from_diffs(x, direction) if noise_cov is None else GaussianStats(np.zeros(len(noise_cov)), noise_cov)
    return mnf(calc_stats(x), noise)


def _same_up_to_sign(a, b):
    signs = np.sign((a * b).reshape(-1, a.shape[-1]).sum(0))
    return a * signs, b


@pytest.mark.parametrize("noise,direction", [("diagonal", "lowerright"), ("right", "right"), ("lower", "lower")])
def test_matches_spectral_python(cube, noise, direction):
    ref = _spy(cube, direction)
    m = pm.fit_mnf(cube, 3, noise=noise)
    assert m.output_names == ("MNF1", "MNF2", "MNF3")
    np.testing.assert_allclose(m.metadata["snr"], ref.napc.eigenvalues[:3].real - 1, rtol=1e-9)
    a, b = _same_up_to_sign(ref.reduce(cube, num=3), m(cube))
    np.testing.assert_allclose(b, a, atol=1e-8)
    # m.pinv() @ m is SPy's denoiser.
    np.testing.assert_allclose((m.pinv() @ m)(cube), ref.denoise(cube, num=3), atol=1e-8)


def test_channels_first(cube):
    a = pm.fit_mnf(cube, 2)
    b = pm.fit_mnf(np.moveaxis(cube, -1, 0).copy(), 2, channel_axis=0)
    np.testing.assert_allclose(a.weights, b.weights, atol=1e-10)


def test_noise_covariance_and_image(cube, rng):
    noise_cov = np.diag(rng.uniform(0.5, 2.0, 6))
    ref = _spy(cube, noise_cov=noise_cov)
    m = pm.fit_mnf(cube, 3, noise=noise_cov)
    assert m.metadata["noise"] == "covariance"
    np.testing.assert_allclose(m.metadata["snr"], ref.napc.eigenvalues[:3].real - 1, rtol=1e-9)
    noise_image = rng.normal(size=cube.shape) * [1, 2, 1, 2, 1, 2]
    from_image = pm.fit_mnf(cube, 3, noise=noise_image)
    ref2 = _spy(cube, noise_cov=np.cov(noise_image.reshape(-1, 6).T))
    np.testing.assert_allclose(from_image.metadata["snr"], ref2.napc.eigenvalues[:3].real - 1, rtol=1e-9)


def test_mask_and_sign_rule(cube):
    mask = np.zeros(cube.shape[:2], bool)
    mask[:20] = True
    m = pm.fit_mnf(cube, 2, mask=mask)
    ref = pm.fit_mnf(cube[:20], 2)
    np.testing.assert_allclose(m.weights, ref.weights, atol=1e-10)
    big = np.abs(m.weights).argmax(axis=1)
    assert (m.weights[np.arange(2), big] > 0).all()


def test_singular_noise_needs_a_ridge(cube):
    x = np.concatenate([cube, cube[..., :1]], axis=-1)  # a duplicated channel: its differences match
    with pytest.raises(ValueError, match="noise_ridge"):
        pm.fit_mnf(x, 2)
    m = pm.fit_mnf(x, 2, noise_ridge=1e-6)
    assert np.isfinite(m.weights).all()
    with pytest.raises(ValueError, match="singular"):
        pm.fit_mnf(cube, 2, noise=np.zeros((6, 6)))


def test_errors(cube):
    with pytest.raises(ValueError, match="between 1 and 6"):
        pm.fit_mnf(cube, 9)
    with pytest.raises(ValueError, match="is not one of"):
        pm.fit_mnf(cube, 2, noise="upwards")
    with pytest.raises(ValueError, match="needs 2 spatial axes"):
        pm.fit_mnf(cube.reshape(-1, 6), 2)
    with pytest.raises(ValueError, match=r"noise image has 3 channels"):
        pm.fit_mnf(cube, 2, noise=np.ones((5, 5, 3)))
    with pytest.raises(ValueError, match="no valid pixels"):
        pm.fit_mnf(cube, 2, mask=np.zeros(cube.shape[:2], bool))


def test_pinv_uses_a_stored_inverse_and_checks_its_shape():
    m = pm.Mixer([[1.0, 1.0]], metadata={"inverse": [[1.0], [0.0]], "mean": [0.0, 0.0]})
    np.testing.assert_array_equal(m.pinv().weights, [[1.0], [0.0]])
    bad = pm.Mixer([[1.0, 1.0]], metadata={"inverse": [[1.0, 0.0]]})
    with pytest.raises(ValueError, match=r'metadata\["inverse"\] has shape \(1, 2\), expected \(2, 1\)'):
        bad.pinv()
