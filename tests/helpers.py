"""Shared test helpers: random images of every supported dtype."""

import numpy as np

DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64]


def random_image(rng, shape, dtype):
    """Values spread over a good part of the dtype's range (floats: [-10, 10))."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (rng.random(shape) * 20 - 10).astype(dtype)
    info = np.iinfo(dtype)
    lo = max(info.min, -30000)
    hi = min(info.max, 60000)
    return rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
