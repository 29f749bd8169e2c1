"""Shared test helpers: random images of every supported dtype, the CLI's apply on one file."""

import numpy as np

from pixelmix.cli import main

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


def assert_affine_close(got, want, mixer, image, channel_axis=-1):
    """``got`` equals the oracle's ``want`` within the rounding of the sums.

    The kernels fuse each multiply-add (FMA), the NumPy oracle rounds the
    product and the sum apart; both add the channels in the same order. Each
    of the C additions can then differ by at most one rounding of a partial
    sum, bounded by eps * (|bias| + sum_c |w_c x_c|) per output.
    """
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    eps = np.finfo(want.dtype).eps
    x = np.abs(np.moveaxis(np.asarray(image, dtype=np.float64), channel_axis, -1))
    scale = np.abs(mixer.bias) + np.nan_to_num(x) @ np.abs(mixer.weights).T
    bound = 2 * (mixer.n_inputs + 1) * eps * np.moveaxis(scale, -1, channel_axis)
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    assert np.all(diff[~nan] <= bound[~nan]), f"max error {diff[~nan].max()} exceeds bound"


def apply_cli(tmp_path, src, steps, *extra, out="out"):
    """``pixelmix apply SRC --mixer M -o tmp_path/out [extra]`` (exit 0 asserted); returns the ``-o`` path.

    ``steps`` (a Mixer or Program) is saved to ``tmp_path / "m.json"`` first.
    """
    steps.save(tmp_path / "m.json")
    dest = tmp_path / out
    assert main(["apply", str(src), "--mixer", str(tmp_path / "m.json"), "-o", str(dest), "-q", *extra]) == 0
    return dest
