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
    "pixelmix.tiff",
    "pixelmix.batch",
    "pixelmix_skimage",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0
