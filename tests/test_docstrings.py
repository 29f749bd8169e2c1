"""The Examples sections of the public docstrings are true."""

import doctest
import importlib

import pytest

MODULES = [
    "pixelmix",
    "pixelmix.mixer",
    "pixelmix.ops",
    "pixelmix.presets",
    "pixelmix.networks",
    "pixelmix.learn.pca",
    "pixelmix.learn.mnf",
    "pixelmix.learn.lda",
    "pixelmix.learn.lstsq",
    "pixelmix.learn.unmix",
    "pixelmix.learn.stats",
    "pixelmix.unmixer",
    "pixelmix.kernels.unmix",
    "pixelmix.kernels.unmix_layout",
    "pixelmix.kernels.elementwise",
    "pixelmix.kernels.vmath",
    "pixelmix.learn.endmembers",
    "pixelmix.learn.rank",
    "pixelmix.learn.spillover",
    "pixelmix.config",
    "pixelmix.plan",
    "pixelmix.fileformat",
    "pixelmix.kernels",
    "pixelmix.backends.numpy",
    "pixelmix.backends.cpu",
    "pixelmix.backends.cuda",
    "pixelmix.backends.dask",
    "pixelmix.io.read",
    "pixelmix.io.write",
    "pixelmix.io.metadata",
    "pixelmix.io.publish",
    "pixelmix.io.zarr",
    "pixelmix.io.names",
    "pixelmix.io.space",
    "pixelmix.io.geotiff",
    "pixelmix.io.ome",
    "pixelmix.io.imagej",
    "pixelmix.io.pyramid",
    "pixelmix.io.ome_zarr",
    "pixelmix.jobs.file",
    "pixelmix.jobs.rules",
    "pixelmix.jobs.provenance",
    "pixelmix.jobs.to_tiff",
    "pixelmix.jobs.to_zarr",
    "pixelmix.jobs.batch",
    "pixelmix.jobs.cluster",
    "pixelmix.jobs.constraints",
    "pixelmix.tiff",
    "pixelmix.batch",
    "pixelmix.cluster",
    # The plugin's functions are documented where they are defined: a
    # package's doctest skips what it re-exports.
    "pixelmix_skimage.color",
    "pixelmix_skimage.tiled",
    "pixelmix_skimage.backend",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no examples"
