"""Per-pixel programs: elementwise steps, folding, lookup tables, against the oracle."""

import numpy as np
import pytest

import pixelmix as pm
from pixelmix import ops

from .helpers import random_image

STEPS = [
    ops.relu(),
    ops.clip(-1.5, 2.0),
    ops.exp(),
    ops.log(1e-3),
    ops.srgb_encode(),
    ops.srgb_decode(),
    ops.leaky_relu(0.1),
    ops.sigmoid(),
    ops.tanh(),
]


def _tolerance(dtype):
    return dict(rtol=2e-6, atol=1e-6) if np.dtype(dtype) == np.float32 else dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("step", STEPS, ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_step_in_a_network_matches_oracle(rng, step, dtype):
    x = random_image(rng, (9, 11, 3), dtype) / 4
    m1 = pm.Mixer(rng.standard_normal((4, 3)), rng.standard_normal(4))
    m2 = pm.Mixer(rng.standard_normal((2, 4)))
    net = m2 @ step @ m1
    got = net(x)
    want = net(x, backend="numpy")
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, want, **_tolerance(dtype))


def test_steps_keep_nan(rng):
    x = np.array([[np.nan, 0.5, -0.5]], np.float32).T  # three one-channel pixels
    for step in STEPS:
        y = step(x)
        assert np.isnan(y[0, 0]), step
        assert np.isfinite(y[1:]).all(), step


def test_known_values():
    x = np.array([[-2.0], [0.0], [0.5], [3.0]])
    np.testing.assert_array_equal(ops.relu()(x)[:, 0], [0, 0, 0.5, 3])
    np.testing.assert_array_equal(ops.clip(0, 1)(x)[:, 0], [0, 0, 0.5, 1])
    np.testing.assert_allclose(ops.log(1e-6)(x)[:, 0], np.log([1e-6, 1e-6, 0.5, 3]))
    np.testing.assert_allclose(ops.leaky_relu(0.5)(x)[:, 0], [-1, 0, 0.5, 3])
    # sRGB: 0.5 linear is 0.7354 encoded; decode inverts encode
    np.testing.assert_allclose(ops.srgb_encode()(np.array([[0.5]]))[0, 0], 0.735356983, rtol=1e-8)
    v = np.linspace(0, 1, 101)[:, None]
    np.testing.assert_allclose((ops.srgb_decode() @ ops.srgb_encode())(v), v, atol=1e-12)


def test_consecutive_mixers_fold_into_one(rng):
    a = pm.Mixer(rng.standard_normal((4, 3)), rng.standard_normal(4))
    b = pm.Mixer(rng.standard_normal((5, 4)), rng.standard_normal(5))
    c = pm.Mixer(rng.standard_normal((2, 5)))
    net = pm.Program([a, b, ops.relu(), c, pm.Program([pm.Mixer(np.eye(2))])])
    assert len(net) == 3
    assert net.n_inputs == 3 and net.n_outputs == 2
    x = rng.standard_normal((6, 3))
    want = np.maximum(x @ (b.weights @ a.weights).T + (b.weights @ a.bias + b.bias), 0) @ c.weights.T
    np.testing.assert_allclose(net(x), want, rtol=1e-12, atol=1e-12)


def test_program_channel_mismatch_is_refused():
    with pytest.raises(ValueError, match="expecting 3 channels follows a step that produces 2"):
        pm.Program([pm.Mixer(np.ones((2, 4))), ops.relu(), pm.Mixer(np.ones((1, 3)))])
    with pytest.raises(TypeError, match="Program step"):
        pm.Program([np.eye(3)])
    with pytest.raises(ValueError, match="at least one step"):
        pm.Program([])


def test_elementwise_only_program_keeps_channel_count(rng):
    x = random_image(rng, (4, 5, 7), np.float32)
    y = (ops.clip(0, 1) @ ops.relu())(x)
    assert y.shape == x.shape
    np.testing.assert_array_equal(y, np.clip(x, 0, 1))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
@pytest.mark.parametrize("axis", [0, -1])
def test_lookup_table_path_equals_direct_path(rng, monkeypatch, dtype, axis):
    """Integer input with leading elementwise steps runs through a lookup table."""
    from pixelmix import config

    shape = (3, 256, 300) if axis == 0 else (256, 300, 3)  # more values than a 16-bit table
    x = random_image(rng, shape, dtype)
    net = pm.Mixer(rng.standard_normal((2, 3))) @ ops.log(1.0) @ ops.clip(0, 1000)
    with_table = net(x, channel_axis=axis)
    monkeypatch.setattr(config, "LUT_MAX_VALUES", 0)
    direct = net(x, channel_axis=axis)
    np.testing.assert_array_equal(with_table, direct)
    np.testing.assert_allclose(direct, net(x, channel_axis=axis, backend="numpy"), rtol=2e-6, atol=1e-5)


def test_lookup_table_is_used(rng):
    from pixelmix.backends.cpu import run_kernel
    from pixelmix.dispatch import prepare
    from pixelmix.lowering import lookup_table

    x = random_image(rng, (32, 32, 3), np.uint8)
    net = pm.Mixer(np.ones((1, 3))) @ ops.log(1.0)
    request = prepare(net.steps, x, channel_axis=-1, dtype=None, nodata=None, out=None, tile_size=None)
    lut, offset, start = lookup_table(request, run_kernel, "cpu")
    assert start == 1 and lut.shape == (3, 256) and offset == 0
    # no table for an image with fewer values than the table
    small = prepare(net.steps, x[:4, :4], channel_axis=-1, dtype=None, nodata=None, out=None, tile_size=None)
    assert lookup_table(small, run_kernel, "cpu")[2] == 0
    np.testing.assert_allclose(lut[0], np.log(np.maximum(np.arange(256), 1)).astype(np.float32), rtol=1e-6)


def test_lookup_table_is_computed_once_per_program_and_dtype(rng):
    from pixelmix.backends.cpu import run_kernel
    from pixelmix.dispatch import prepare
    from pixelmix.lowering import lookup_table

    runs = []

    def counted(*args):
        runs.append(args[0].dtype)
        run_kernel(*args)

    net = pm.Mixer(np.ones((1, 3))) @ ops.log(1.0)
    tables = []
    for dtype in (np.uint8, np.uint8, np.uint16, np.uint8):
        x = random_image(rng, (300, 300, 3), dtype)
        request = prepare(net.steps, x, channel_axis=-1, dtype=None, nodata=None, out=None, tile_size=None)
        tables.append(lookup_table(request, counted, "cpu")[0])
    # an 8-bit table is computed once and kept; a 16-bit one (megabytes) is computed each time
    assert runs == [np.dtype(np.uint8), np.dtype(np.uint16)]
    assert tables[0] is tables[1] is tables[3] and tables[2].shape == (3, 65536)
    request = prepare(net.steps, random_image(rng, (300, 300, 3), np.uint16), channel_axis=-1, dtype=None,
                      nodata=None, out=None, tile_size=None)
    assert np.array_equal(lookup_table(request, counted, "cpu")[0], tables[2]) and len(runs) == 3
    # a new mixer with the same weights gets a table of its own, with the same values
    again = pm.Mixer(np.ones((1, 3))) @ ops.log(1.0)
    request = prepare(again.steps, x, channel_axis=-1, dtype=None, nodata=None, out=None, tile_size=None)
    assert np.array_equal(lookup_table(request, counted, "cpu")[0], tables[0]) and len(runs) == 4


def test_a_program_is_lowered_once_per_sequence_of_steps(rng):
    from pixelmix.lowering import compile_steps

    a, b = pm.Mixer([[1.0, 2.0]]), pm.Mixer([[1.0, 2.0]])
    assert compile_steps((a,), 2) is compile_steps([a], 2)
    assert compile_steps((b,), 2) is not compile_steps((a,), 2)
    assert compile_steps((a, ops.relu()), 2) is not compile_steps((a,), 2)
    # results of different mixers never mix up, however often each is called
    x = random_image(rng, (8, 8, 2), np.float32)
    c = pm.Mixer([[3.0, -1.0]])
    for _ in range(3):
        np.testing.assert_array_equal(a(x), x[..., :1] + 2 * x[..., 1:])
        np.testing.assert_array_equal(c(x), 3 * x[..., :1] - x[..., 1:])


def test_lookup_table_absorbs_leading_diagonal_maps(rng, monkeypatch):
    """A per-channel scale (e.g. 1/255) before elementwise steps goes into the table too."""
    from pixelmix import config
    from pixelmix.backends.cpu import run_kernel
    from pixelmix.dispatch import prepare
    from pixelmix.lowering import lookup_table

    x = random_image(rng, (32, 32, 3), np.uint8)
    scale = pm.Mixer(np.diag([1 / 255, 2 / 255, 1 / 255]), [0.0, -0.5, 0.0])
    net = pm.Mixer(rng.standard_normal((2, 3))) @ ops.srgb_decode() @ scale
    request = prepare(net.steps, x, channel_axis=-1, dtype=None, nodata=None, out=None, tile_size=None)
    assert lookup_table(request, run_kernel, "cpu")[2] == 2
    with_table = net(x)
    monkeypatch.setattr(config, "LUT_MAX_VALUES", 0)
    np.testing.assert_array_equal(with_table, net(x))
    np.testing.assert_allclose(with_table, net(x, backend="numpy"), rtol=1e-5, atol=1e-6)
    # a lone mixer, diagonal or not, is mixed on the fly: no table
    request = prepare((scale,), x, channel_axis=-1, dtype=None, nodata=None, out=None, tile_size=None)
    monkeypatch.setattr(config, "LUT_MAX_VALUES", 2**20)
    assert lookup_table(request, run_kernel, "cpu")[2] == 0


def test_integer_output_of_a_program(rng):
    x = random_image(rng, (10, 10, 3), np.uint8)
    net = ops.clip(0, 255) @ pm.Mixer(rng.standard_normal((2, 3)) * 2)
    got = net(x, dtype=np.uint8)
    # uint8 output accumulates in float32: rounding the float32 result is exact
    np.testing.assert_array_equal(got, np.rint(net(x, dtype=np.float32)).astype(np.uint8))
    want = net(x, dtype=np.uint8, backend="numpy")
    assert np.abs(got.astype(int) - want).max() <= 1  # FMA may move a sum across .5


def test_bad_step_parameters():
    with pytest.raises(ValueError, match="lo <= hi"):
        ops.clip(2, 1)
    with pytest.raises(ValueError, match="positive"):
        ops.log(0)
    with pytest.raises(ValueError, match="finite"):
        ops.clip(0, np.inf)


def test_diagonal_mixer_after_an_overflowing_step_stays_out_of_the_table():
    """exp(200) is inf; the diagonal map's 0 * inf makes the other channel NaN, as in the oracle."""
    net = ops.relu() @ pm.Mixer(np.eye(2)) @ ops.exp()
    x = np.array([[200, 1]], dtype=np.uint8)
    want = net(x, backend="numpy")
    np.testing.assert_array_equal(net(x), want)
    np.testing.assert_array_equal(net(x.astype(np.int32)), want)


def test_loaded_steps_are_validated(tmp_path):
    import json

    for bad in ({"op": "clip", "params": []}, {"op": "log", "params": [-1]}, {"op": "nope"}):
        path = tmp_path / "net.json"
        doc = {"format": "pixelmix", "version": 1, "kind": "program",
               "steps": [bad, pm.Mixer(np.eye(2)).to_dict()]}
        path.write_text(json.dumps(doc))
        with pytest.raises(ValueError):
            pm.load(path)
