"""Dask arrays in, lazy Dask arrays out; kernels called from many threads at once."""

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import dask
import dask.array as da
import numba
import numpy as np
import pytest

import pixelmix as pm
from pixelmix import ops

from .helpers import random_image


def _expected_chunks(x, axis, k):
    return x.chunks[:axis] + ((k,),) + x.chunks[axis + 1 :]


def test_importing_and_mixing_numpy_never_imports_dask():
    code = (
        "import sys, numpy as np, pixelmix as pm\n"
        "from pixelmix.backends.dask import is_dask_array\n"
        "x = np.ones((4, 4, 3), np.float32)\n"
        "assert not is_dask_array(x)\n"
        "pm.Mixer(np.ones((1, 3))).apply(x, backend='numpy')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "shape,chunks,axis,dtype",
    [
        ((40, 30, 7), (16, 10, 3), -1, np.uint16),  # channels last, split over 3 chunks
        ((7, 40, 30), (2, 16, 16), 0, np.float32),  # channels first, split over 4 chunks
        ((3, 7, 20, 10), (2, 4, 7, 10), 1, np.float64),  # ZCYX
    ],
)
def test_mixer_on_dask_array_is_lazy_and_equals_in_memory(rng, shape, chunks, axis, dtype):
    x = random_image(rng, shape, dtype)
    dx = da.from_array(x, chunks=chunks)
    m = pm.Mixer(rng.standard_normal((4, shape[axis])), rng.standard_normal(4))
    y = m.apply(dx, channel_axis=axis)
    want = m.apply(x, channel_axis=axis)
    assert isinstance(y, da.Array)
    assert y.shape == want.shape and y.dtype == want.dtype
    assert y.chunks == _expected_chunks(dx, axis % len(shape), 4)
    got = y.compute(scheduler="sync")
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_program_changing_channel_count_nan_and_nodata(rng):
    # K != C and an elementwise step between two maps: the chunk metadata
    # must follow the output channel count, and partial sums would be wrong.
    x = random_image(rng, (6, 24, 20), np.float32)
    x[2, 3, 4] = np.nan
    x[:, 5, 6] = x[0, 5, 6]
    x[4, 7, 8] = 3.0
    net = pm.Mixer(rng.standard_normal((2, 5))) @ ops.relu() @ pm.Mixer(rng.standard_normal((5, 6)))
    dx = da.from_array(x, chunks=(4, 10, 7))
    y = net.apply(dx, channel_axis=0, nodata=3.0)
    assert y.chunks == ((2,), (10, 10, 4), (7, 7, 6))
    want = net.apply(x, channel_axis=0, nodata=3.0)
    assert np.isnan(want[:, 3, 4]).all() and np.isnan(want[:, 7, 8]).all()
    np.testing.assert_array_equal(y.compute(), want)


def test_mix_function_elementwise_step_and_numpy_backend(rng):
    x = random_image(rng, (12, 10, 3), np.uint16)
    dx = da.from_array(x, chunks=(5, 4, 2))
    w = rng.standard_normal((2, 3))
    np.testing.assert_array_equal(pm.mix(dx, w).compute(), pm.mix(x, w))
    np.testing.assert_array_equal(
        pm.mix(dx, w, backend="numpy").compute(), pm.mix(x, w, backend="numpy")
    )
    xf = random_image(rng, (12, 10, 3), np.float32)
    step = ops.clip(-1, 1)
    y = step(da.from_array(xf, chunks=(5, 5, 1)))
    assert y.chunks == ((5, 5, 2), (5, 5), (3,))
    np.testing.assert_array_equal(y.compute(), step(xf))


def test_big_merged_channel_blocks_are_cut_to_dask_chunk_size(rng):
    x = random_image(rng, (64, 64, 8), np.float32)
    dx = da.from_array(x, chunks=(64, 64, 1))
    m = pm.Mixer(rng.standard_normal((2, 8)))
    with dask.config.set({"array.chunk-size": "32KiB"}):
        y = m.apply(dx)
    assert y.numblocks[:2] != (1, 1)
    assert max(y.chunks[0]) * max(y.chunks[1]) * 8 * 4 <= 32 * 2**10
    np.testing.assert_array_equal(y.compute(), m.apply(x))


def test_unknown_chunk_sizes(rng):
    x = random_image(rng, (20, 4, 3), np.float32)
    dx = da.from_array(x, chunks=(5, 4, 3))
    keep = x[:, 0, 0] > 0
    picked = dx[dx[:, 0, 0] > 0]  # rows chosen by value: sizes unknown until computed
    m = pm.Mixer(rng.standard_normal((2, 3)))
    y = m.apply(picked)
    assert np.isnan(y.shape[0]) and y.chunks[1:] == ((4,), (2,))
    np.testing.assert_array_equal(y.compute(), m.apply(x[keep]))
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        pm.Mixer(rng.standard_normal((2, 4))).apply(picked.T, channel_axis=-1)


def test_zero_size_dask_array():
    m = pm.Mixer(np.ones((2, 3)))
    y = m.apply(da.zeros((0, 5, 3), dtype=np.float32, chunks=2))
    assert y.shape == (0, 5, 2) and y.compute().shape == (0, 5, 2)


def test_errors_are_raised_at_call_time_with_the_engines_messages(rng):
    m = pm.Mixer(rng.standard_normal((2, 4)))
    dx = da.zeros((4, 6, 3), dtype=np.float32, chunks=2)
    with pytest.raises(ValueError, match="3 channels on axis -1 but the mixer expects 4; pass channel_axis=0"):
        m.apply(dx)
    with pytest.raises(np.exceptions.AxisError, match="out of range"):
        m.apply(dx, channel_axis=3)
    with pytest.raises(TypeError, match="bool cannot be mixed"):
        m.apply(da.zeros((2, 4), dtype=bool), channel_axis=-1)
    with pytest.raises(TypeError, match="complex64"):
        m.apply(dx, channel_axis=0, dtype=np.complex64)
    with pytest.raises(ValueError, match="nodata=0.5 cannot occur"):
        m.apply(da.zeros((4, 2), dtype=np.uint16), channel_axis=0, nodata=0.5)
    with pytest.raises(ValueError, match="tile_size"):
        m.apply(dx, channel_axis=0, tile_size=0)
    with pytest.raises(ValueError, match="backend"):
        m.apply(dx, channel_axis=0, backend="gpu-please")
    with pytest.raises(TypeError, match=r"dask.array.store\(result, out\)"):
        m.apply(dx, channel_axis=0, out=np.empty((2, 6, 3), np.float32))


def test_graph_names_are_deterministic(rng):
    x = da.from_array(random_image(rng, (8, 8, 3), np.float32), chunks=4)
    w = rng.standard_normal((2, 3))
    assert pm.mix(x, w).name == pm.mix(x, w).name
    assert pm.mix(x, w).name != pm.mix(x, w + 1).name
    assert pm.mix(x, w).name != pm.mix(x, w, dtype=np.float64).name


# --- many threads at once -------------------------------------------------------


def test_threaded_scheduler_with_8_threads_equals_in_memory(rng):
    x = random_image(rng, (96, 80, 5), np.uint16)
    m = pm.Mixer(rng.standard_normal((3, 5)), rng.standard_normal(3))
    want = m.apply(x)
    y = m.apply(da.from_array(x, chunks=(12, 20, 5)))  # 32 blocks
    before = numba.get_num_threads()
    for _ in range(3):
        np.testing.assert_array_equal(y.compute(scheduler="threads", num_workers=8), want)
    # Blocks limit Numba's threads for themselves only.
    y.compute(scheduler="sync")
    assert numba.get_num_threads() == before


def test_thread_pool_calling_the_engine_concurrently(rng):
    x = random_image(rng, (64, 48, 6), np.float32)
    m = pm.Mixer(rng.standard_normal((4, 6)))
    pieces = [x[i : i + 8] for i in range(0, 64, 8)]
    want = [m.apply(p, tile_size=64) for p in pieces]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: m.apply(pieces[i % 8], tile_size=64), range(64)))
    for i, g in enumerate(got):
        np.testing.assert_array_equal(g, want[i % 8])


_WORKQUEUE_SCRIPT = textwrap.dedent(
    """
    from concurrent.futures import ThreadPoolExecutor
    import dask.array as da, numba, numpy as np, pixelmix as pm
    rng = np.random.default_rng(1)
    x = rng.random((64, 48, 5)).astype(np.float32)
    m = pm.Mixer(rng.standard_normal((3, 5)))
    want = m.apply(x, tile_size=64)
    assert numba.threading_layer() == "workqueue", numba.threading_layer()
    y = m.apply(da.from_array(x, chunks=(8, 16, 5)), tile_size=64)
    for _ in range(3):
        assert np.array_equal(y.compute(scheduler="threads", num_workers=8), want)
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda i: m.apply(x, tile_size=64), range(32)))
    assert all(np.array_equal(o, want) for o in outs)
    print("ok")
    """
)


@pytest.mark.slow
def test_workqueue_layer_survives_many_threads():
    # workqueue aborts the process (SIGABRT) when two threads launch parallel
    # regions at once; the engine serialises launches under it.
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    out = subprocess.run(
        [sys.executable, "-c", _WORKQUEUE_SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("name", ["pixelmix.backends.dask", "pixelmix.jobs.cluster", "pixelmix.learn.chunked"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
