"""Streaming moments: against NumPy, with large offsets, masks, NaN, nodata, sampling, merging."""

import numpy as np
import pytest
import tifffile

from pixelmix.learn.source import describe, iter_blocks
from pixelmix.learn.stats import GroupMoments, Moments, _x3, block_moments, merge


def _pixels(x, axis):
    return np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis]).astype(np.float64)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_moments_match_numpy(rng, axis, dtype):
    x = (rng.random((5, 4, 6)) * 1000).astype(dtype)
    m = block_moments(x, axis)
    p = _pixels(x, axis)
    assert m.count == p.shape[0] and m.skipped == 0
    np.testing.assert_allclose(m.mean, p.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(m.covariance(), np.cov(p.T), rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("axis", [0, -1])
def test_extra_channels_are_the_moments_of_the_joined_array(rng, axis):
    x = np.moveaxis((rng.random((40, 30, 6)) * 1000).astype(np.uint16), -1, axis)
    y = rng.standard_normal((40, 30, 2)).astype(np.float32)
    y[3, 4, 0] = np.nan  # a pixel with NaN in its extra channels only: skipped
    y = np.moveaxis(y, -1, axis)
    mask = rng.random((40, 30)) > 0.2
    mask[3, 4] = True
    joined = np.concatenate([x.astype(np.float64), y.astype(np.float64)], axis=axis)
    expected = block_moments(joined, axis, mask=mask)
    both = block_moments(x, axis, extra=y, mask=mask)
    assert (both.count, both.skipped) == (expected.count, expected.skipped) == (int(mask.sum()) - 1, 1)
    np.testing.assert_array_equal(both.mean, expected.mean)
    np.testing.assert_array_equal(both.scatter, expected.scatter)
    with pytest.raises(ValueError, match="extra has shape"):
        block_moments(x, axis, extra=np.moveaxis(np.zeros((5, 30, 2)), -1, axis))
    with pytest.raises(ValueError, match="pair=None"):
        block_moments(x, axis, extra=y, pair="right")


def test_large_offset_keeps_tiny_covariance(rng):
    # uint16 around 60000 with variance ~0.25: E[xx'] - E[x]E[x]' in float64 loses it.
    base = rng.integers(0, 2, size=(300, 200, 1))
    x = (60000 + base + rng.integers(0, 2, size=(300, 200, 3))).astype(np.uint16)
    exact = np.cov((x.reshape(-1, 3).astype(np.int64) - 60000).T.astype(np.float64))
    m = block_moments(x, -1)
    np.testing.assert_allclose(m.covariance(), exact, rtol=1e-11, atol=1e-13)
    # The same through many tiles and merged blocks.
    parts = [block_moments(x[i:i + 7], -1) for i in range(0, 300, 7)]
    np.testing.assert_allclose(merge(parts).covariance(), exact, rtol=1e-11, atol=1e-13)
    naive = (x.reshape(-1, 3).astype(np.float64).T @ x.reshape(-1, 3).astype(np.float64)) / x[..., 0].size
    naive -= np.outer(x.reshape(-1, 3).mean(0), x.reshape(-1, 3).mean(0))
    assert np.abs(naive - exact).max() > 1e-6  # the test would catch the naive formula


def test_float_offset_of_1e8(rng):
    x = 1e8 + rng.normal(size=(400, 50, 2)) * 1e-3
    centred = (x - 1e8).reshape(-1, 2)
    m = merge(block_moments(x[i:i + 33], -1) for i in range(0, 400, 33))
    # Relative to the variance (~1e-6): the covariance is near zero off the diagonal.
    np.testing.assert_allclose(m.covariance(), np.cov(centred.T), rtol=1e-6, atol=1e-12)


def test_merge_is_exact_and_order_free(rng):
    x = rng.normal(size=(60, 5)) * [1, 10, 100, 1000, 1e4] + 5000
    whole = block_moments(x, -1)
    pieces = [block_moments(x[a:b], -1) for a, b in [(0, 1), (1, 20), (20, 21), (21, 60)]]
    for order in ([0, 1, 2, 3], [3, 1, 0, 2]):
        merged = merge(pieces[i] for i in order)
        assert merged.count == whole.count
        np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-14)
        np.testing.assert_allclose(merged.scatter, whole.scatter, rtol=1e-10)
    assert merge([Moments.empty(5), whole]).count == whole.count
    back = Moments.from_dict(whole.to_dict())
    np.testing.assert_array_equal(back.scatter, whole.scatter)
    with pytest.raises(ValueError, match="nothing to merge"):
        merge([])


@pytest.mark.parametrize("axis", [0, -1])
def test_mask_nan_and_nodata_are_skipped(rng, axis):
    x = rng.random((6, 7, 3)).astype(np.float32)
    x[1, 2, 0] = np.nan
    x[4, 4, 2] = np.nan
    x[3, 3, :] = 7.0  # nodata in every channel
    x[5, 0, 1] = 7.0  # nodata in one channel
    mask = np.ones((6, 7), bool)
    mask[0] = False
    mask[1, 2] = False  # a NaN pixel that is masked out: not counted as skipped
    xa = np.moveaxis(x, -1, axis).copy()
    m = block_moments(xa, axis, mask=mask, nodata=7.0)
    keep = mask & ~np.isnan(x).any(-1) & ~(x == 7.0).any(-1)
    assert m.count == keep.sum()
    assert m.skipped == 3
    p = x[keep].astype(np.float64)
    np.testing.assert_allclose(m.mean, p.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m.covariance(), np.cov(p.T), rtol=1e-10)


def test_integer_nodata(rng):
    x = rng.integers(0, 100, size=(10, 10, 2)).astype(np.uint16)
    x[2, 3, 1] = 65535
    m = block_moments(x, -1, nodata=65535)
    assert m.count == 99 and m.skipped == 1


def test_sample_stride_and_fraction(rng):
    x = rng.random((40, 50, 3))
    m = block_moments(x, -1, sample=7)
    p = x.reshape(-1, 3)[::7]
    assert m.count == p.shape[0]
    np.testing.assert_allclose(m.mean, p.mean(0), rtol=1e-12)
    a = block_moments(x, -1, sample=0.25, seed=3)
    b = block_moments(x, -1, sample=0.25, seed=3)
    c = block_moments(x, -1, sample=0.25, seed=4)
    assert a.count == b.count and np.array_equal(a.scatter, b.scatter)
    assert abs(a.count - 500) < 80 and not np.array_equal(a.mean, c.mean)
    for bad in (0, -2, 1.5, 0.0, "half", True):
        with pytest.raises((ValueError, TypeError)):
            block_moments(x, -1, sample=bad)


@pytest.mark.parametrize("pair,slices", [
    ("right", (np.s_[:, :-1], np.s_[:, 1:])),
    ("lower", (np.s_[:-1, :], np.s_[1:, :])),
    ("diagonal", (np.s_[:-1, :-1], np.s_[1:, 1:])),
])
@pytest.mark.parametrize("axis", [0, -1])
def test_neighbour_differences(rng, pair, slices, axis):
    x = rng.random((9, 11, 4))
    d = (x[slices[0]] - x[slices[1]]).reshape(-1, 4)
    m = block_moments(np.moveaxis(x, -1, axis).copy(), axis, pair=pair)
    assert m.count == d.shape[0]
    np.testing.assert_allclose(m.covariance(), np.cov(d.T), rtol=1e-10)
    # A pair with a NaN or masked pixel on either side is left out.
    mask = np.ones((9, 11), bool)
    mask[4, 5] = False
    m2 = block_moments(np.moveaxis(x, -1, axis).copy(), axis, pair=pair, mask=mask)
    ok = (mask[slices[0]] & mask[slices[1]]).reshape(-1)
    assert m2.count == ok.sum()
    np.testing.assert_allclose(m2.mean, d[ok].mean(0), rtol=1e-10)


def test_group_moments(rng):
    x = rng.random((8, 9, 3))
    labels = rng.integers(0, 4, size=(8, 9))
    g = block_moments(x, -1, labels=labels)
    assert isinstance(g, GroupMoments) and sorted(g.groups) == [1, 2, 3]
    for k in (1, 2, 3):
        np.testing.assert_allclose(g.groups[k].mean, x[labels == k].mean(0), rtol=1e-12)
    halves = GroupMoments().merge(block_moments(x[:4], -1, labels=labels[:4])).merge(
        block_moments(x[4:], -1, labels=labels[4:]))
    np.testing.assert_allclose(halves.groups[2].scatter, g.groups[2].scatter, rtol=1e-10)
    with pytest.raises(TypeError, match="integer"):
        block_moments(x, -1, labels=labels.astype(float))


@pytest.mark.parametrize("values", [[-7, 0, 3], [0, 5, 2**40], [2**63 + 5, 0, 9]], ids=["negative", "large", "uint64"])
def test_group_moments_any_label_values(rng, values):
    # Small non-negative labels are counted, any others sorted: either way every class, and only those.
    x = rng.random((6, 7, 2))
    dtype = np.uint64 if values[0] > 2**62 else np.int64
    labels = np.array(values, dtype=dtype)[rng.integers(0, 3, size=(6, 7))]
    labels[0, :3] = np.array(values, dtype=dtype)
    g = block_moments(x, -1, labels=labels)
    assert sorted(g.groups) == sorted(v for v in values if v != 0)
    for k, moments in g.groups.items():
        assert moments.count == (labels == k).sum()
    small = block_moments(x, -1, labels=(labels == labels[0, 2]).astype(np.uint8) * 3)
    assert sorted(small.groups) == [3] and small.groups[3].count == g.groups[int(labels[0, 2])].count


def test_gram_tiles_start_on_cache_lines():
    # Numba's allocator aligns to 32 bytes; the tile is aligned to 64 so that no AVX-512 load straddles two lines.
    from pixelmix.learn import stats

    stats._kernels()
    for rows, width in ((132, 256), (8, 256), (228, 256)):
        tile = stats._aligned_tile(rows, width)
        assert tile.shape == (rows, width) and tile.flags.c_contiguous and not tile.any()
        assert tile.ctypes.data % 64 == 0


def test_bad_companion_images(rng):
    x = rng.random((4, 5, 3))
    with pytest.raises(ValueError, match=r"mask has shape \(5, 4\).*\(4, 5\)"):
        block_moments(x, -1, mask=np.ones((5, 4), bool))
    with pytest.raises(TypeError, match="boolean"):
        block_moments(x, -1, mask=np.ones((4, 5)))
    with pytest.raises(ValueError, match="needs 2 spatial axes"):
        block_moments(x[0], -1, pair="diagonal")


@pytest.mark.parametrize("shape,axis", [((30, 20, 4), -1), ((4, 30, 20), 0), ((3, 4, 10, 20), 1), ((50, 3), 1)])
def test_slabs_cover_every_pixel_once(shape, axis):
    (part,) = describe(np.zeros(shape, np.uint16), axis)
    seen = np.zeros(shape, dtype=np.int64)
    for index, values in part.slabs(max_bytes=300):
        assert values.shape == seen[index].shape and values.nbytes <= max(300, 2 * shape[axis])
        seen[index] += 1
    assert (seen == 1).all()


def test_iter_blocks_memmap_and_lists(tmp_path, rng):
    x = rng.random((50, 8, 3)).astype(np.float32)
    path = tmp_path / "x.dat"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=x.shape)
    mm[:] = x
    mm.flush()
    ro = np.memmap(path, dtype=np.float32, mode="r", shape=x.shape)
    mask = rng.random((50, 8)) > 0.3
    blocks = list(iter_blocks(ro, -1, aux=[("mask", mask)], max_bytes=8 * 3 * 4 * 6))
    assert len(blocks) == 9 and sum(b.values.shape[0] for b in blocks) == 50
    assert all(type(b.values) is np.ndarray for b in blocks)
    np.testing.assert_array_equal(np.concatenate([b.aux[0] for b in blocks]), mask)
    parts = describe([x, x[:10]], -1)
    assert [p.spatial_shape for p in parts] == [(50, 8), (10, 8)]
    with pytest.raises(ValueError, match="list of 2 images"):
        list(iter_blocks([x, x[:10]], -1, aux=[("mask", mask)]))
    with pytest.raises(ValueError, match="same number of channels"):
        describe([x, x[..., :2]], -1)
    with pytest.raises(TypeError, match="cannot fit on a"):
        describe(object(), -1)


@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize("n_channels", [1, 4, 7, 37])
def test_gram_tiles_match_numpy_across_tile_and_group_edges(rng, axis, n_channels):
    """Moments from Gram matrices of 256-pixel tiles (a row of ones gives the count and sums)."""
    x = (rng.normal(size=(33, 61, n_channels)) * np.arange(1, n_channels + 1) + 500).astype(np.float32)
    x[5, 7, n_channels // 2] = np.nan
    x[30, 60, 0] = np.nan  # the very last pixel
    xa = np.moveaxis(x, -1, axis).copy()
    m = block_moments(xa, axis)
    keep = ~np.isnan(x).any(-1)
    p = x[keep].astype(np.float64)
    assert m.count == keep.sum() and m.skipped == 2
    np.testing.assert_allclose(m.mean, p.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m.covariance(), np.cov(p.T).reshape(n_channels, n_channels), rtol=1e-10, atol=1e-9)
    assert np.array_equal(m.scatter, m.scatter.T)


def test_gram_moments_do_not_depend_on_the_thread_count(rng):
    import numba

    x = rng.normal(size=(300, 40, 9)) + 7.0
    before = numba.get_num_threads()
    try:
        results = []
        for n in range(1, numba.config.NUMBA_NUM_THREADS + 1):
            numba.set_num_threads(n)
            results.append(block_moments(x, -1, sample=0.5, seed=2))
    finally:
        numba.set_num_threads(before)
    for r in results[1:]:
        assert r.count == results[0].count
        np.testing.assert_array_equal(r.scatter, results[0].scatter)
        np.testing.assert_array_equal(r.mean, results[0].mean)


def test_integer_channels_first_with_nodata_mask_and_stride(rng):
    x = rng.integers(0, 4000, size=(5, 40, 70)).astype(np.uint16)  # channels first
    x[2, 3, 3] = 9999  # pixel 213: sampled
    mask = rng.random((40, 70)) > 0.2
    mask[3, 3] = True
    m = block_moments(x, 0, nodata=9999, mask=mask, sample=3)
    pixels = np.moveaxis(x, 0, -1).reshape(-1, 5)
    chosen = (np.arange(pixels.shape[0]) % 3 == 0) & mask.reshape(-1)
    keep = chosen & ~(pixels == 9999).any(-1)
    assert m.count == keep.sum() and m.skipped == (chosen & ~keep).sum() == 1
    p = pixels[keep].astype(np.float64)
    np.testing.assert_allclose(m.mean, p.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m.covariance(), np.cov(p.T), rtol=1e-10)


def test_channels_first_slabs_of_a_file_are_read_in_place(tmp_path, rng):
    """Slabs of a memory-mapped CYX TIFF (each channel's rows contiguous, the planes apart) are not copied.

    Their moments are those of contiguous copies, bit for bit, with every
    option that changes which pixels are read.
    """
    x = rng.integers(0, 4000, (6, 60, 40), dtype=np.uint16)
    x[2, 7, 5] = 7
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, x, photometric="minisblack")
    options = [{}, {"pair": "diagonal"}, {"sample": 0.5}, {"nodata": 7}]
    n_blocks = 0
    for block in iter_blocks(str(path), channel_axis=0, max_bytes=6 * 2 * 40 * 16):
        n_blocks += 1
        values = block.values
        x3 = _x3(values, 0, in_place=True)
        assert np.shares_memory(x3, values) and not x3.flags.c_contiguous
        mask = rng.random(values.shape[1:]) < 0.4
        for kw in options + [{"mask": mask}]:
            got, expected = block_moments(values, 0, **kw), block_moments(np.ascontiguousarray(values), 0, **kw)
            assert (got.count, got.skipped) == (expected.count, expected.skipped)
            np.testing.assert_array_equal(got.mean, expected.mean)
            np.testing.assert_array_equal(got.scatter, expected.scatter)
    assert n_blocks > 1
