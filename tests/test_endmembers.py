"""Endmember extraction (ATGP, N-FINDR, VCA) and the rank estimate (HySime) on planted scenes.

A planted scene: K known spectra, Dirichlet abundances, one pure pixel of
each spectrum at a known place, plus Gaussian noise. Each method must find
the planted spectra (up to order, by spectral angle) and HySime their
number. Arrays, channels first, TIFF files, lists and Dask arrays must give
what the in-memory array gives.
"""

import dask
import dask.array as da
import numpy as np
import pytest
import tifffile
from scipy.ndimage import gaussian_filter
from scipy.optimize import linear_sum_assignment

from pixelmix import config
from pixelmix.learn.endmembers import METHODS, find_endmembers
from pixelmix.learn.rank import estimate_rank, hysime, regression_noise


def angles(found, planted):
    """Spectral angles (degrees) between found and planted spectra, best one-to-one matching."""
    f = found / np.linalg.norm(found, axis=1, keepdims=True)
    p = planted / np.linalg.norm(planted, axis=1, keepdims=True)
    cost = np.degrees(np.arccos(np.clip(f @ p.T, -1, 1)))
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols]


def planted_scene(rng, k=4, c=24, shape=(60, 50), noise=0.003, alpha=1.0):
    """``(cube, spectra, pure)``: cube (H, W, C), spectra (K, C), pure pixels' flat indices."""
    spectra = rng.random((k, c)) + 0.1
    abundances = rng.dirichlet(np.full(k, alpha), shape)
    pure = rng.choice(shape[0] * shape[1], size=k, replace=False)
    flat = abundances.reshape(-1, k)
    flat[pure] = np.eye(k)
    cube = abundances @ spectra + noise * rng.standard_normal(shape + (c,))
    return cube, spectra, pure


@pytest.mark.parametrize("method", METHODS)
def test_each_method_finds_the_planted_spectra(method):
    rng = np.random.default_rng(1)
    cube, spectra, pure = planted_scene(rng)
    found, where = find_endmembers(cube, 4, method=method, return_indices=True)
    assert found.shape == (4, 24) and found.dtype == np.float64
    assert angles(found, spectra).max() < 2.0
    # the picks are the pure pixels, and the spectra those pixels' values
    assert sorted(where[:, 1]) == sorted(pure) and (where[:, 0] == 0).all()
    np.testing.assert_array_equal(found, cube.reshape(-1, 24)[where[:, 1]])


@pytest.mark.parametrize("method", METHODS)
def test_noisier_scene_with_more_endmembers(method):
    rng = np.random.default_rng(2)
    cube, spectra, _ = planted_scene(rng, k=6, c=40, shape=(80, 80), noise=0.01, alpha=0.5)
    assert angles(find_endmembers(cube, 6, method=method, seed=3), spectra).max() < 4.0


@pytest.mark.parametrize("method", METHODS)
def test_a_small_sample_still_finds_the_pure_pixels(method, monkeypatch):
    """Few sampled pixels, small blocks: the extremes are taken over every pixel of every block."""
    monkeypatch.setattr(config, "FIT_BLOCK_BYTES", 20_000)
    rng = np.random.default_rng(4)
    cube, spectra, pure = planted_scene(rng, shape=(100, 90))
    found, where = find_endmembers(cube, 4, method=method, sample=300, return_indices=True)
    assert sorted(where[:, 1]) == sorted(pure)
    assert angles(found, spectra).max() < 2.0


def test_layouts_files_lists_and_dask_give_the_same_picks(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "FIT_BLOCK_BYTES", 50_000)
    rng = np.random.default_rng(5)
    cube, spectra, pure = planted_scene(rng, shape=(40, 45))
    want, where = find_endmembers(cube, 4, method="nfindr", return_indices=True)
    cyx = np.ascontiguousarray(np.moveaxis(cube, -1, 0))
    got, got_where = find_endmembers(cyx, 4, method="nfindr", channel_axis=0, return_indices=True)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_where, where)
    # a TIFF file (channels first, read in slabs): the pixel is read back in the last pass
    path = tmp_path / "cube.tif"
    tifffile.imwrite(path, cyx.astype(np.float32), photometric="minisblack", metadata={"axes": "CYX"})
    from_file, file_where = find_endmembers(str(path), 4, method="nfindr", return_indices=True, sample=100)
    np.testing.assert_array_equal(file_where, where)
    rows, cols = np.unravel_index(where[:, 1], (40, 45))
    np.testing.assert_array_equal(from_file, cube.astype(np.float32)[rows, cols])
    # two arrays: the pure pixels split between them
    top, bottom = cube[:20], cube[20:]
    both, both_where = find_endmembers([top, bottom], 4, method="nfindr", return_indices=True)
    flat = both_where[:, 0] * top.shape[0] * top.shape[1] + both_where[:, 1]
    assert sorted(flat) == sorted(where[:, 1])
    # Dask, in pieces that are not the in-memory blocks
    with dask.config.set(scheduler="threads", num_workers=4):
        lazy, lazy_where = find_endmembers(
            da.from_array(cube, chunks=(7, 45, 24)), 4, method="nfindr", return_indices=True, sample=200
        )
    np.testing.assert_array_equal(lazy_where, where)
    np.testing.assert_array_equal(lazy, want)


def test_spectra_of_picked_pixels_are_read_back_from_files_and_dask(tmp_path, monkeypatch):
    """The last pass: a picked pixel that only the sample held, read back where it lives."""
    from pixelmix.learn.endmembers import _coordinates, _pixel_spectra
    from pixelmix.learn.source import Source, describe

    monkeypatch.setattr(config, "FIT_BLOCK_BYTES", 4000)
    rng = np.random.default_rng(11)
    first = rng.random((3, 20, 30)).astype(np.float32)  # CYX
    second = rng.random((3, 7, 9)).astype(np.float32)
    path = tmp_path / "first.tif"
    tifffile.imwrite(path, first, photometric="minisblack", metadata={"axes": "CYX"})
    where = np.array([[0, 0], [0, 599], [0, 31], [1, 62], [1, 5]])
    want = {(0, i): first.reshape(3, -1)[:, i] for i in (0, 599, 31)}
    want.update({(1, i): second.reshape(3, -1)[:, i] for i in (62, 5)})
    for data in ([str(path), second], [str(path), da.from_array(second, chunks=(3, 2, 9))]):
        parts = describe(data, 0)
        source = Source(data, 0, aux=[("mask", None), *_coordinates(parts)], parts=parts)
        got = _pixel_spectra(source, where, None)
        assert got.keys() == want.keys()
        for key, spectrum in want.items():
            np.testing.assert_array_equal(got[key], spectrum)


def test_masked_nan_and_nodata_pixels_are_never_picked():
    rng = np.random.default_rng(6)
    cube, spectra, pure = planted_scene(rng)
    flat = cube.reshape(-1, 24)
    # outliers far outside the simplex, which every method would pick
    flat[7] = 50.0
    flat[7, 3] = np.nan
    flat[8] = 60.0
    flat[8, 0] = -9.0  # the nodata value
    flat[9] = 70.0
    mask = np.ones(cube.shape[:2], bool)
    mask.reshape(-1)[9] = False
    for method in METHODS:
        found, where = find_endmembers(cube, 4, method=method, mask=mask, nodata=-9.0, return_indices=True)
        assert not set(where[:, 1]) & {7, 8, 9}
        assert angles(found, spectra).max() < 2.0


def test_same_seed_same_result_and_the_seed_matters_only_for_the_draws():
    rng = np.random.default_rng(7)
    cube, _, _ = planted_scene(rng, k=5, c=30, noise=0.02, alpha=0.3)
    a = find_endmembers(cube, 5, method="vca", seed=1, sample=500)
    np.testing.assert_array_equal(a, find_endmembers(cube, 5, method="vca", seed=1, sample=500))


def test_arguments_are_checked():
    cube = np.random.default_rng(8).random((10, 10, 5))
    with pytest.raises(ValueError, match="method='ppi' is not one of"):
        find_endmembers(cube, 3, method="ppi")
    with pytest.raises(ValueError, match="between 1 and 5"):
        find_endmembers(cube, 6)
    two = np.zeros((10, 10), bool)
    two[0, :2] = True
    with pytest.raises(ValueError, match="at least 3 valid pixels"):
        find_endmembers(cube, 3, mask=two)
    with pytest.raises(ValueError, match="number of pixels"):
        find_endmembers(cube, 3, sample=0)
    with pytest.raises(ValueError, match="nothing to find"):
        find_endmembers(np.zeros((10, 10, 5)), 2)


# -- the rank ------------------------------------------------------------------------


def smooth_scene(rng, k, c, noise, shape=(80, 80)):
    """Planted spectra with spatially smooth abundances (so neighbour differences see noise only)."""
    spectra = rng.random((k, c))
    fields = np.stack([gaussian_filter(rng.standard_normal(shape), 4) for _ in range(k)], axis=-1)
    abundances = np.exp(3 * fields / fields.std())
    abundances /= abundances.sum(axis=-1, keepdims=True)
    return abundances @ spectra + noise * rng.standard_normal(shape + (c,))


@pytest.mark.parametrize("k,c,noise", [(3, 30, 0.01), (5, 50, 0.01), (8, 100, 0.005), (6, 20, 0.02)])
def test_hysime_finds_the_planted_count(k, c, noise):
    rng = np.random.default_rng(k * c)
    cube = smooth_scene(rng, k, c, noise)
    assert estimate_rank(cube) == k
    assert estimate_rank(cube, noise="diagonal") == k
    assert estimate_rank(np.moveaxis(cube, -1, 0), channel_axis=0) == k
    # spatially random abundances: the regression estimate does not need smooth maps
    mixed = rng.dirichlet(np.ones(k), (80, 80)) @ rng.random((k, c)) + noise * rng.standard_normal((80, 80, c))
    assert estimate_rank(mixed) == k


def test_rank_from_files_dask_masks_and_samples(tmp_path):
    rng = np.random.default_rng(9)
    cube = smooth_scene(rng, 4, 25, 0.01).astype(np.float32)
    path = tmp_path / "cube.tif"
    tifffile.imwrite(path, np.moveaxis(cube, -1, 0), photometric="minisblack", metadata={"axes": "CYX"})
    assert estimate_rank(str(path)) == 4
    with dask.config.set(scheduler="threads", num_workers=4):
        assert estimate_rank(da.from_array(cube, chunks=(30, 80, 25))) == 4
    mask = np.zeros(cube.shape[:2], bool)
    mask[::2] = True
    assert estimate_rank(cube, mask=mask, sample=0.5) == 4


def test_regression_noise_is_the_per_band_regression_residual():
    """The closed form equals regressing each band on the others (no intercept, as HySime)."""
    rng = np.random.default_rng(10)
    y = rng.standard_normal((4000, 2)) @ rng.random((2, 6)) + 0.05 * rng.standard_normal((4000, 6))
    residuals = np.empty_like(y)
    for i in range(6):
        others = np.delete(y, i, axis=1)
        beta, *_ = np.linalg.lstsq(others, y[:, i], rcond=None)
        residuals[:, i] = y[:, i] - others @ beta
    want = residuals.T @ residuals / len(y)
    np.testing.assert_allclose(regression_noise(y.T @ y / len(y)), want, rtol=1e-6, atol=1e-12)
    with pytest.raises(ValueError, match="noise='pairs' is not one of"):
        estimate_rank(y, noise="pairs")


def test_hysime_counts_the_directions_where_signal_beats_twice_the_noise():
    signal = np.diag([5.0, 1.0, 0.05, 0.0])
    noise = 0.1 * np.eye(4)
    k, cost = hysime(signal + noise, signal, noise)
    # along the third direction the data's power (0.15) is below twice the noise's (0.2)
    assert k == 2
    floor = 6.05 / 4 * 1e-5  # hysime.m's noise floor: mean signal power * 1e-5
    np.testing.assert_allclose(cost[:3], -(np.array([5.0, 1.0, 0.05]) + 0.1) + 2 * (0.1 + floor))
