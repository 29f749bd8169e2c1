"""Fits streamed from TIFF files equal the in-memory fits."""

import numpy as np
import pytest
import tifffile

import pixelmix as pm


@pytest.fixture
def stacks(tmp_path, rng):
    """Two channels-first OME-TIFF files (CYX, uint16) with named channels, and their pixels."""
    mixing = rng.normal(size=(5, 5)) * [40, 20, 10, 5, 2]
    paths, arrays = [], []
    for i, rows in enumerate((40, 24)):
        pixels = np.clip(rng.normal(size=(rows, 30, 5)) @ mixing + 30000, 0, 65535).astype(np.uint16)
        cyx = np.ascontiguousarray(np.moveaxis(pixels, -1, 0))
        path = tmp_path / f"part{i}.ome.tif"
        tifffile.imwrite(path, cyx, ome=True, metadata={"axes": "CYX", "Channel": {"Name": list("abcde")}})
        paths.append(str(path))
        arrays.append(cyx)
    return paths, arrays


def test_multi_file_pca_equals_in_memory(stacks):
    paths, arrays = stacks
    streamed = pm.fit_pca(paths, 3)  # channel axis 0 read from the OME axes
    in_memory = pm.fit_pca(np.concatenate(arrays, axis=1), 3, channel_axis=0)
    np.testing.assert_allclose(streamed.weights, in_memory.weights, atol=1e-10)
    np.testing.assert_allclose(streamed.bias, in_memory.bias, rtol=1e-10)
    assert streamed.input_names == tuple("abcde")
    assert streamed.metadata["n_pixels"] == 64 * 30
    np.testing.assert_allclose(pm.fit_pca(paths, 3, channel_axis=0).weights, streamed.weights, atol=0)
    # Many small slabs per file: the same mixer.
    from pixelmix.learn.gather import gather
    from pixelmix.learn.pca import pca_block_statistics, solve_pca
    from pixelmix.learn.sources import iter_blocks

    assert len(list(iter_blocks(paths, max_bytes=3000))) >= 6
    stats = gather(paths, -1, lambda b: pca_block_statistics(b.values, b.channel_axis), max_bytes=3000)
    np.testing.assert_allclose(solve_pca(stats, 3).weights, in_memory.weights, atol=1e-10)


def test_tiff_mnf_lda_and_masks(stacks, rng):
    paths, arrays = stacks
    mnf_file = pm.fit_mnf(paths[0], 2)
    mnf_mem = pm.fit_mnf(arrays[0], 2, channel_axis=0)
    np.testing.assert_allclose(mnf_file.weights, mnf_mem.weights, atol=1e-10)
    masks = [rng.random(a.shape[1:]) > 0.5 for a in arrays]
    masked = pm.fit_pca(paths, 2, mask=masks)
    keep = np.concatenate([np.moveaxis(a, 0, -1)[m] for a, m in zip(arrays, masks)])
    np.testing.assert_allclose(masked.weights, pm.fit_pca(keep, 2).weights, atol=1e-10)
    labels = [rng.integers(0, 3, size=a.shape[1:]) for a in arrays]
    lda_file = pm.fit_lda(paths, labels)
    lda_mem = pm.fit_lda(np.concatenate(arrays, axis=1), np.concatenate(labels), channel_axis=0)
    np.testing.assert_allclose(lda_file.weights, lda_mem.weights, atol=1e-10)


def test_tiff_errors(stacks, tmp_path):
    paths, _ = stacks
    with pytest.raises(ValueError, match="mask has shape"):
        pm.fit_pca(paths[0], 2, mask=np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="list of 2 images"):
        pm.fit_pca(paths, 2, mask=np.ones((40, 30), bool))
    with pytest.raises(FileNotFoundError):
        pm.fit_pca(str(tmp_path / "missing.tif"), 2)


@pytest.mark.parametrize("layout", [{}, {"tile": (16, 16), "compression": "zlib"}])
def test_both_drivers_cut_a_file_along_one_plan(tmp_path, rng, layout):
    # The in-memory stream reads through the io reader's own slab loop, the
    # Dask fit along Part.plan: the same slabs, so the same blocks and numbers.
    from pixelmix.learn.source import describe

    x = rng.integers(0, 999, size=(3, 50, 40), dtype=np.uint16)
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, x, photometric="minisblack", metadata={"axes": "CYX"}, **layout)
    (part,) = describe(str(path))
    for max_bytes in (3000, 3 * 16 * 40 * 2, 10**6):
        slabs = list(part.slabs(max_bytes))
        assert [index for index, _ in slabs] == list(part.plan(max_bytes))
        for index, values in slabs:
            np.testing.assert_array_equal(values, x[index])
            np.testing.assert_array_equal(part[index], x[index])


def test_block_size_is_read_at_call_time(monkeypatch, stacks):
    from pixelmix import config
    from pixelmix.learn.source import iter_blocks

    paths, arrays = stacks
    assert len(list(iter_blocks(arrays[0], 0))) == 1
    monkeypatch.setattr(config, "FIT_BLOCK_BYTES", 5 * 30 * 2 * 4)
    assert len(list(iter_blocks(arrays[0], 0))) == 10
    assert len(list(iter_blocks(paths[0]))) == 10
