"""Fits on Dask arrays (threaded scheduler): the in-memory fits' results, from chunks."""

import re

import dask
import dask.array as da
import numpy as np
import pytest
import tifffile

import pixelmix as pm
from pixelmix.plan import dtype_problem


def _cube(rng, shape=(40, 30, 5)):
    rows, cols, c = shape
    yy, xx = np.mgrid[0:rows, 0:cols]
    signal = np.stack([np.sin(yy / 6.0 + k) * np.cos(xx / 4.0 - k) * (8 - k) for k in range(c)], -1)
    return (signal + rng.normal(size=shape) * 0.2 + 50).astype(np.float32)


def test_lists_of_dask_numpy_and_tiff_with_masks_equal_in_memory(rng, tmp_path):
    # Each part is one block of the in-memory fit; with at most `split_every`
    # blocks the tree is one merge in the same order, so the fits are equal.
    a, b, c = _cube(rng), _cube(rng, (20, 30, 5)), _cube(rng, (10, 30, 5))
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, c, photometric="minisblack", metadata={"axes": "YXC"})
    masks = [rng.random(a.shape[:2]) > 0.2, None, rng.random(c.shape[:2]) > 0.5]
    lazy = [da.from_array(a, chunks=(7, 11, 2)), b, path]
    with dask.config.set(scheduler="threads", num_workers=8):
        got = pm.fit_pca(lazy, 3, mask=[masks[0], da.ones(b.shape[:2], dtype=bool, chunks=9), masks[2]])
        want = pm.fit_pca([a, b, path], 3, mask=[masks[0], np.ones(b.shape[:2], bool), masks[2]])
        assert got == want
        assert pm.fit_mnf(lazy, 2, nodata=50.0) == pm.fit_mnf([a, b, path], 2, nodata=50.0)


def test_lda_and_lstsq_with_dask_companions(rng):
    x = _cube(rng)
    dx = da.from_array(x, chunks=(16, 16, 5))
    labels = (x[..., 0] > 50).astype(np.int16) + 2 * (x[..., 2] > 52)
    with dask.config.set(scheduler="threads", num_workers=8):
        assert pm.fit_lda(dx, da.from_array(labels, chunks=5)) == pm.fit_lda(x, labels)
        target = x[..., 1:4] @ rng.random((3, 2)) - 3.0
        assert pm.fit_lstsq(dx, target, ridge=0.1) == pm.fit_lstsq(x, target, ridge=0.1)


def test_channels_first_sample_and_many_blocks(rng):
    from pixelmix.learn.chunked import gather_chunks
    from pixelmix.learn.gather import gather
    from pixelmix.learn.pca import pca_block_statistics

    x = np.moveaxis(_cube(rng, (64, 48, 6)), -1, 0).copy()  # CYX

    def block_fn(b):
        return pca_block_statistics(b.values, b.channel_axis, sample=3, seed=b.number)

    want = gather(x, 0, block_fn, max_bytes=4096)
    got = gather_chunks(da.from_array(x, chunks=(2, 64, 5)), 0, block_fn, max_bytes=4096, split_every=2)
    # 24 blocks (the in-memory slabs), a binary tree: the same pixels, merged
    # in another grouping, so equal to float64 rounding.
    assert got.count == want.count > 0 and got.count < x[0].size // 2
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-14)
    np.testing.assert_allclose(got.scatter, want.scatter, rtol=0, atol=1e-14 * np.abs(want.scatter).max())


def test_tiff_array_reads_lazily_in_the_fits_slabs(tmp_path, rng):
    from pixelmix.learn.chunked import tiff_array

    x = rng.integers(0, 999, size=(3, 50, 40), dtype=np.uint16)
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, x, photometric="minisblack", metadata={"axes": "CYX"}, tile=(16, 16),
                     compression="zlib")
    lazy = tiff_array(path, chunk_bytes=3 * 16 * 40 * 2)
    assert lazy.chunks[0] == (3,) and all(n % 16 == 0 for n in lazy.chunks[1][:-1])
    np.testing.assert_array_equal(lazy.compute(scheduler="threads"), x)
    m = pm.Mixer(rng.standard_normal((2, 3)))
    np.testing.assert_array_equal(m.apply(lazy, channel_axis=0).compute(), m.apply(x, channel_axis=0))


def test_fit_errors_name_the_problem(rng):
    dx = da.zeros((10, 8, 3), dtype=np.float32, chunks=4)
    with pytest.raises(ValueError, match="mask has shape"):
        pm.fit_pca(dx, 2, mask=np.ones((10, 9), bool))
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        pm.fit_pca(dx[dx[:, 0, 0] > 0], 2)


@pytest.mark.parametrize("dtype", ["float16", ">f4", "int8"])
def test_converted_dtypes_equal_in_memory(rng, dtype):
    x = _cube(rng)
    x = (x - 50).astype(dtype) if dtype != "int8" else np.round((x - 50) * 10).astype(dtype)
    with dask.config.set(scheduler="threads", num_workers=4):
        assert pm.fit_pca(da.from_array(x, chunks=(9, 30, 5)), 3) == pm.fit_pca(x, 3)
    with pytest.raises(TypeError, match=re.escape(dtype_problem(np.dtype(np.complex64)))):
        pm.fit_pca(da.from_array(x.astype(np.complex64), chunks=20), 2)
