"""Mixer construction, composition, pseudo-inverse, save/load, the functional form."""

import json
import subprocess
import sys

import numpy as np
import pytest

import pixelmix as pm
from pixelmix import ops


def test_contract_names():
    m = pm.Mixer(np.arange(6.0).reshape(2, 3), [1, 2], input_names=list("rgb"), output_names=["a", "b"])
    assert (m.n_inputs, m.n_outputs) == (3, 2)
    x = np.ones((2, 2, 3), np.uint8)
    np.testing.assert_array_equal(m(x), m.apply(x))
    np.testing.assert_array_equal(pm.mix(x, m.weights, m.bias), m(x))
    assert m.weights.dtype == np.float64
    with pytest.raises(ValueError):
        m.weights[0, 0] = 5  # read-only: a mixer cannot change under a running job
    for array in (m.weights, m.bias):  # nor be made writeable again (its lowering is kept)
        with pytest.raises(ValueError):
            array.flags.writeable = True
    clip = ops.Elementwise("clip", [0.0, 1.0])
    assert clip.params == (0.0, 1.0) and clip == ops.clip(0.0, 1.0)


def test_a_mixer_is_not_kept_alive_by_its_kept_program():
    import gc
    import weakref

    m = pm.Mixer(np.ones((2, 3)))
    np.testing.assert_array_equal(m(np.ones((4, 4, 3), np.float32)), np.full((4, 4, 2), 3, np.float32))
    ref = weakref.ref(m)
    del m
    gc.collect()
    assert ref() is None


def test_composition_folds_and_keeps_names(rng):
    m1 = pm.Mixer(rng.standard_normal((4, 3)), rng.standard_normal(4), input_names=list("rgb"))
    m2 = pm.Mixer(rng.standard_normal((2, 4)), rng.standard_normal(2), output_names=["p", "q"])
    both = m2 @ m1
    assert isinstance(both, pm.Mixer)
    assert both.input_names == tuple("rgb") and both.output_names == ("p", "q")
    x = rng.standard_normal((5, 6, 3))
    np.testing.assert_allclose(both(x), m2(m1(x)), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="left mixer expects 3 channels but the right one produces 2"):
        m1 @ m2


def test_pinv_reconstructs_full_rank_and_projects_low_rank(rng):
    w = rng.standard_normal((3, 3))
    m = pm.Mixer(w, rng.standard_normal(3))
    x = rng.standard_normal((10, 3))
    np.testing.assert_allclose(m.pinv()(m(x)), x, rtol=1e-10, atol=1e-10)
    # rank 2 out of 4, centred on a mean: reconstruct = mean + projection
    basis = np.linalg.qr(rng.standard_normal((4, 2)))[0]  # (4, 2) orthonormal
    mean = rng.standard_normal(4)
    pca = pm.Mixer(basis.T, -basis.T @ mean, metadata={"mean": mean})
    denoise = pca.pinv() @ pca
    x = rng.standard_normal((7, 4))
    want = mean + (x - mean) @ basis @ basis.T
    np.testing.assert_allclose(denoise(x), want, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="center must have 4 values"):
        pca.pinv(center=[0.0])


def test_save_load_round_trip_is_exact(tmp_path, rng):
    m = pm.Mixer(
        rng.standard_normal((3, 5)),
        rng.standard_normal(3),
        input_names=[f"b{i}" for i in range(5)],
        output_names=["x", "y", "z"],
        metadata={"method": "test", "mean": np.arange(5.0) / 3, "nested": {"k": [1, 2]}, "n": np.int64(4)},
    )
    path = tmp_path / "m.json"
    m.save(path)
    m2 = pm.load(path)
    assert m2 == m
    np.testing.assert_array_equal(m2.weights, m.weights)
    assert m2.metadata["mean"] == list(np.arange(5.0) / 3)
    doc = json.loads(path.read_text())
    assert doc["format"] == "pixelmix" and doc["version"] == 1 and doc["kind"] == "mixer"


def test_program_save_load(tmp_path, rng):
    net = pm.Mixer(rng.standard_normal((2, 4))) @ ops.leaky_relu(0.2) @ pm.Mixer(rng.standard_normal((4, 3))) @ ops.log(1e-4)
    path = tmp_path / "net.json"
    net.save(path)
    back = pm.load(path)
    assert isinstance(back, pm.Program) and back == net
    x = rng.random((4, 4, 3))
    np.testing.assert_array_equal(back(x), net(x))


def test_load_refuses_foreign_files(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="not a pixelmix mixer file"):
        pm.load(bad)
    bad.write_text("not json")
    with pytest.raises(ValueError, match="not JSON"):
        pm.load(bad)
    bad.write_text(json.dumps({"format": "pixelmix", "version": 99, "kind": "mixer"}))
    with pytest.raises(ValueError, match="upgrade pixelmix"):
        pm.load(bad)


def test_metadata_must_be_json(rng):
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        pm.Mixer(np.eye(2), metadata={"f": object()})
    with pytest.raises(ValueError, match="not finite"):
        pm.Mixer(np.eye(2), metadata={"evr": [np.nan, 1.0]})
    with pytest.raises(ValueError, match="not finite"):
        pm.Mixer(np.eye(2), metadata={"x": np.float32(np.inf)})


def test_import_compiles_nothing_and_is_fast():
    code = (
        "import sys, time; t = time.perf_counter(); import pixelmix; dt = time.perf_counter() - t; "
        "heavy = [m for m in ('numba', 'scipy', 'tifffile', 'skimage', 'torch', 'dask', 'matplotlib') if m in sys.modules]; "
        "print(dt, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(maxsplit=1)
    assert out[1].strip() == "[]", f"import pixelmix imported {out[1]}"
    assert float(out[0]) < 1.0
