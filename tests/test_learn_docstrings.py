"""The Examples of the modules a fit flows through are true (source -> gather -> chunked; solve)."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "name", ["pixelmix.learn.source", "pixelmix.learn.gather", "pixelmix.learn.chunked", "pixelmix.learn.solve"]
)
def test_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
