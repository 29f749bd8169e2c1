"""fit_pca against scikit-learn's PCA and Spectral Python; streaming, masks, errors."""

import numpy as np
import pytest

import pixelmix as pm
from pixelmix.learn.gather import gather
from pixelmix.learn.pca import pca_block_statistics, solve_pca
from pixelmix.learn.stats import merge


@pytest.fixture
def cube(rng):
    mixing = rng.normal(size=(6, 6)) * [8, 4, 2, 1, 0.5, 0.25]
    return (rng.normal(size=(30, 40, 6)) @ mixing + 100).astype(np.float32)


@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize("whiten", [False, True])
def test_matches_sklearn(cube, axis, whiten):
    from sklearn.decomposition import PCA

    x = cube.reshape(-1, 6).astype(np.float64)
    ref = PCA(3, svd_solver="covariance_eigh", whiten=whiten).fit(x)
    data = np.moveaxis(cube, -1, axis).copy()
    m = pm.fit_pca(data, 3, channel_axis=axis, whiten=whiten)
    assert m.output_names == ("PC1", "PC2", "PC3")
    np.testing.assert_allclose(m.metadata["mean"], ref.mean_, rtol=1e-10)
    np.testing.assert_allclose(m.metadata["explained_variance"], ref.explained_variance_, rtol=1e-9)
    np.testing.assert_allclose(m.metadata["explained_variance_ratio"], ref.explained_variance_ratio_, rtol=1e-9)
    if not whiten:
        np.testing.assert_allclose(m.weights, ref.components_, atol=1e-9)
    y = m(data.astype(np.float64), channel_axis=axis)
    np.testing.assert_allclose(np.moveaxis(y, axis, -1).reshape(-1, 3), ref.transform(x), atol=1e-8)


def test_eigenvalues_match_spectral_python(cube):
    from spectral import principal_components

    pc = principal_components(cube.astype(np.float64))
    m = pm.fit_pca(cube, 6)
    np.testing.assert_allclose(m.metadata["explained_variance"], pc.eigenvalues.real, rtol=1e-9)


def test_fraction_of_variance_like_sklearn(cube):
    from sklearn.decomposition import PCA

    for fraction in (0.5, 0.9, 0.999):
        ref = PCA(fraction, svd_solver="full").fit(cube.reshape(-1, 6).astype(np.float64))
        assert pm.fit_pca(cube, fraction).n_outputs == ref.n_components_


def test_signs_and_reconstruction(cube):
    from sklearn.decomposition import PCA

    m = pm.fit_pca(cube, 2)
    big = np.abs(m.weights).argmax(axis=1)
    assert (m.weights[np.arange(2), big] > 0).all()
    x = cube.reshape(-1, 6).astype(np.float64)
    ref = PCA(2, svd_solver="covariance_eigh").fit(x)
    denoise = m.pinv() @ m
    np.testing.assert_allclose(
        denoise(cube.astype(np.float64)).reshape(-1, 6), ref.inverse_transform(ref.transform(x)), atol=1e-8
    )
    white = pm.fit_pca(cube, 2, whiten=True)
    np.testing.assert_allclose((white.pinv() @ white)(x), denoise(x), atol=1e-8)


def test_three_steps_and_blocks_give_the_same_mixer(cube):
    whole = pm.fit_pca(cube, 3)
    stats = gather(cube, -1, lambda b: pca_block_statistics(b.values, b.channel_axis), max_bytes=6 * 4 * 40 * 3)
    streamed = solve_pca(stats, 3)
    np.testing.assert_allclose(streamed.weights, whole.weights, atol=1e-10)
    np.testing.assert_allclose(streamed.bias, whole.bias, atol=1e-8)
    by_hand = solve_pca(merge(pca_block_statistics(cube[i:i + 4]) for i in range(0, 30, 4)), 3)
    np.testing.assert_allclose(by_hand.weights, whole.weights, atol=1e-10)
    # A list of arrays is one data set, and a memmap fits like the array.
    halves = pm.fit_pca([cube[:11], cube[11:]], 3)
    np.testing.assert_allclose(halves.weights, whole.weights, atol=1e-10)


def test_memmap_uint16(tmp_path, rng):
    x = rng.integers(1000, 1100, size=(20, 30, 4)).astype(np.uint16)
    mm = np.memmap(tmp_path / "x.dat", dtype=np.uint16, mode="w+", shape=x.shape)
    mm[:] = x
    ro = np.memmap(tmp_path / "x.dat", dtype=np.uint16, mode="r", shape=x.shape)
    a, b = pm.fit_pca(ro, 2), pm.fit_pca(x.astype(np.float64), 2)
    np.testing.assert_allclose(a.weights, b.weights, atol=1e-10)


def test_mask_nodata_and_nan(cube):
    from sklearn.decomposition import PCA

    x = cube.copy()
    x[0, :5, 2] = np.nan
    x[3, 3, :] = -1.0
    mask = np.ones(x.shape[:2], bool)
    mask[10:] = False
    m = pm.fit_pca(x, 2, mask=mask, nodata=-1.0)
    keep = mask & ~np.isnan(x).any(-1) & ~(x == -1).any(-1)
    ref = PCA(2, svd_solver="covariance_eigh").fit(x[keep].astype(np.float64))
    np.testing.assert_allclose(m.weights, ref.components_, atol=1e-9)
    assert m.metadata["n_pixels"] == keep.sum() and m.metadata["n_skipped"] == 6


def test_sample(cube):
    m = pm.fit_pca(cube, 2, sample=3)
    ref = pm.fit_pca(cube.reshape(-1, 6)[::3], 2)
    np.testing.assert_allclose(m.weights, ref.weights, atol=1e-10)
    assert pm.fit_pca(cube, 2, sample=0.5).metadata["n_pixels"] < cube.shape[0] * cube.shape[1]


def test_save_load_keeps_metadata(tmp_path, cube):
    m = pm.fit_pca(cube, 2)
    m.save(tmp_path / "pca.json")
    back = pm.load(tmp_path / "pca.json")
    assert back == m and back.metadata["method"] == "pca"
    np.testing.assert_array_equal(back.pinv().weights, m.pinv().weights)


def test_errors(cube):
    with pytest.raises(ValueError, match="between 1 and 6"):
        pm.fit_pca(cube, 7)
    with pytest.raises(ValueError, match="between 1 and 6"):
        pm.fit_pca(cube, 0)
    with pytest.raises(ValueError, match=r"fraction of variance in \(0, 1\)"):
        pm.fit_pca(cube, 1.5)
    with pytest.raises(ValueError, match="no valid pixels"):
        pm.fit_pca(cube, 2, mask=np.zeros(cube.shape[:2], bool))
    with pytest.raises(ValueError, match="mask has shape"):
        pm.fit_pca(cube, 2, mask=np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="at least 2 valid pixels"):
        pm.fit_pca(cube[:1, :1], 1)
    with pytest.raises(np.exceptions.AxisError):
        pm.fit_pca(cube, 2, channel_axis=3)


def _converted(raw, dtype):
    """``raw`` (normal, spread ~10) as ``dtype``, using the range that only ``dtype`` holds."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return raw.astype(dtype)
    if dtype == np.uint32:  # above 2**31: neither int32 nor float32 holds these exactly
        return np.round(raw * 1e5 + 3e9).astype(dtype)
    return np.clip(np.round(raw * 8), -128, 127).astype(dtype)


@pytest.mark.parametrize("dtype", ["float16", ">f4", "uint32", "int8"])
@pytest.mark.parametrize("axis", [0, -1])
def test_converted_dtypes_match_sklearn(rng, dtype, axis):
    # Each block is converted exactly to its working type (float32, native
    # float32, float64, int16) before the statistics kernel.
    from sklearn.decomposition import PCA

    raw = rng.normal(size=(40, 30, 4)) @ (rng.normal(size=(4, 4)) * [3, 2, 1, 0.5])
    x = _converted(raw, dtype)
    assert x.dtype == np.dtype(dtype)
    pixels = x.reshape(-1, 4).astype(np.float64)
    # "full" centres before its SVD; covariance_eigh's X'X - n mean mean' loses
    # ~1e-7 of the variance to the uint32 values' offset of 3e9.
    ref = PCA(3, svd_solver="full").fit(pixels)
    m = pm.fit_pca(np.moveaxis(x, -1, axis), 3, channel_axis=axis)
    np.testing.assert_allclose(m.metadata["mean"], pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(m.metadata["explained_variance"], ref.explained_variance_, rtol=1e-9)
    np.testing.assert_allclose(m.weights, ref.components_, atol=1e-9)
    # Blocks of any size, and the same values stored as their working type: the same mixer.
    streamed = solve_pca(gather(x, -1, lambda b: pca_block_statistics(b.values, b.channel_axis),
                                max_bytes=4 * 30 * x.itemsize * 3), 3)
    np.testing.assert_allclose(streamed.weights, m.weights, atol=1e-10)
    assert pm.fit_pca(x.astype(pm.plan.working_dtype(x.dtype)), 3) == pm.fit_pca(x, 3)


@pytest.mark.parametrize("dtype", ["int8", "float16", ">f4"])
def test_converted_dtypes_from_tiff(tmp_path, rng, dtype):
    import tifffile

    from pixelmix.learn.source import describe

    x = np.ascontiguousarray(np.moveaxis(_converted(rng.normal(size=(24, 20, 3)) * 3, dtype), -1, 0))
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, x, photometric="minisblack", byteorder=">")  # a big-endian file
    with tifffile.TiffFile(path) as tif:
        assert tif.byteorder == ">"
    assert describe(str(path))[0].dtype == np.dtype(dtype).newbyteorder("=")
    assert pm.fit_pca(str(path), 2) == pm.fit_pca(x, 2, channel_axis=0)


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_, np.int64])
def test_unfittable_dtypes_are_refused_in_one_line(cube, dtype):
    import re

    from pixelmix.plan import dtype_problem

    bad = cube.astype(dtype)
    with pytest.raises(TypeError, match=re.escape(dtype_problem(bad.dtype))):
        pm.fit_pca(bad, 2)
