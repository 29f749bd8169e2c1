"""Constrained unmixers as steps: every layout, Dask, files, programs, saving; against SciPy's NNLS."""

import numpy as np
import pytest
from scipy.optimize import nnls

import pixelmix as pm
from pixelmix.unmixer import Unmixer

from .helpers import random_image


def _scene(rng, k=4, c=12, n=600, noise=0.02):
    e = rng.random((k, c)) + 0.1
    a = rng.dirichlet(np.ones(k), size=n)
    a[: n // 4] *= rng.uniform(0.5, 1.5, size=(n // 4, 1))  # some do not sum to one
    a[n // 4 : n // 2, 0] = -0.2  # some outside the simplex: the constraints bind
    y = a @ e + noise * rng.standard_normal((n, c))
    return e, y


@pytest.mark.parametrize("sum_to_one", [False, True])
def test_nnls_and_fcls_equal_exact_solvers(rng, sum_to_one):
    e, y = _scene(rng)
    u = pm.unmixer(e, nonneg=True, sum_to_one=sum_to_one)
    assert isinstance(u, Unmixer)
    got = u(y)
    want = u(y, backend="numpy")  # the reference: every face enumerated
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert (got >= 0).all()
    if sum_to_one:
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-9)
    else:
        scipy = np.array([nnls(e.T, pixel)[0] for pixel in y])
        np.testing.assert_allclose(got, scipy, atol=1e-6)
    hit = (got == 0).any(axis=1)
    assert 0 < hit.mean() < 1  # some pixels hit a constraint, some do not


def test_float32_and_residual(rng):
    e, y = _scene(rng)
    u = pm.unmixer(e, nonneg=True, sum_to_one=True, residual=True, names=["a", "b", "c", "d"])
    assert u.output_names == ("abundance:a", "abundance:b", "abundance:c", "abundance:d", "residual")
    got = u(y.astype(np.float32))
    assert got.dtype == np.float32 and got.shape == (len(y), 5)
    want = u(y)
    np.testing.assert_allclose(got, want, atol=2e-4)
    assert (got[:, :4] >= 0).all()
    np.testing.assert_allclose(got[:, :4].sum(axis=1), 1.0, atol=1e-5)
    rms = np.sqrt(np.mean((want[:, :4] @ e - y) ** 2, axis=1))
    np.testing.assert_allclose(want[:, 4], rms, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_every_layout_tile_and_nan(rng, axis):
    e = rng.random((3, 6)) + 0.1
    shape = [5, 7, 9]
    shape[axis] = 6
    x = random_image(rng, tuple(shape), np.uint16).astype(np.float64)
    x[(0,) * 3] = np.nan
    u = pm.unmixer(e, nonneg=True)
    got = u(x, channel_axis=axis)
    np.testing.assert_allclose(got, u(x, channel_axis=axis, backend="numpy"), rtol=1e-9, atol=1e-6)
    assert np.isnan(np.moveaxis(got, axis, -1)[0, 0]).all()
    for tile in (1, 7, 10**6):
        np.testing.assert_array_equal(u(x, channel_axis=axis, tile_size=tile), got)


def test_program_then_save_load_and_dask(rng, tmp_path):
    da = pytest.importorskip("dask.array")
    e, y = _scene(rng, c=8, n=400)
    background = pm.Mixer(np.eye(8), -0.05 * np.ones(8))
    u = pm.unmixer(e, nonneg=True, sum_to_one=True)
    program = pm.Program([background, u])
    image = y.reshape(20, 20, 8)
    got = program(image)
    np.testing.assert_allclose(got, u(background(image, dtype=np.float64)), atol=1e-9)
    program.save(tmp_path / "p.json")
    u.save(tmp_path / "u.json")
    assert pm.load(tmp_path / "p.json") == program and pm.load(tmp_path / "u.json") == u
    np.testing.assert_array_equal(pm.load(tmp_path / "p.json")(image), got)
    lazy = program(da.from_array(image, chunks=(7, 11, 3)))
    np.testing.assert_array_equal(lazy.compute(), got)
    with pytest.raises(TypeError, match="pm.Program"):
        u @ background


def test_unmixer_checks_its_endmembers():
    with pytest.raises(ValueError, match="linearly dependent"):
        pm.unmixer([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]], nonneg=True)
    with pytest.raises(ValueError, match="transposed"):
        pm.unmixer(np.ones((4, 2)), nonneg=True)
    u = pm.unmixer(np.eye(3), nonneg=True)
    with pytest.raises(ValueError, match="image has 2 channels"):
        u(np.zeros((4, 2)))


def test_unmixer_through_the_command_line(rng, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    from pixelmix.cli import main

    e, y = _scene(rng, c=6, n=256)
    stack = np.moveaxis(y.reshape(16, 16, 6), -1, 0).astype(np.float32)
    tifffile.imwrite(tmp_path / "in.tif", stack)
    pm.unmixer(e, nonneg=True, sum_to_one=True, residual=True).save(tmp_path / "u.json")
    assert main([
        "apply", str(tmp_path / "in.tif"), "--mixer", str(tmp_path / "u.json"), "-o", str(tmp_path / "out"),
        "--channel-axis", "0", "-q",
    ]) == 0
    out = tifffile.imread(tmp_path / "out" / "in.tif")
    want = pm.load(tmp_path / "u.json")(stack, channel_axis=0)
    np.testing.assert_array_equal(out, want)


def test_unmixing_fits_on_the_command_line(rng, tmp_path, capsys):
    """fit rank / endmembers (to a file, or straight to an unmixer) / spillover, then apply."""
    import json

    tifffile = pytest.importorskip("tifffile")
    from pixelmix.cli import main

    e = rng.random((3, 10)) + 0.2
    a = rng.dirichlet(np.ones(3), size=(40, 40))
    a[0, :3] = np.eye(3)  # pure pixels
    cube = (a @ e + 0.001 * rng.standard_normal((40, 40, 10))).astype(np.float32)
    tifffile.imwrite(tmp_path / "cube.tif", np.moveaxis(cube, -1, 0), photometric="minisblack")
    path = str(tmp_path / "cube.tif")
    assert main(["fit", "rank", path, "--channel-axis", "0"]) == 0
    assert "estimated rank (HySime): 3" in capsys.readouterr().out
    assert main(["fit", "endmembers", path, "-k", "3", "--method", "nfindr", "-o", str(tmp_path / "em.json")]) == 0
    found = np.array(json.loads((tmp_path / "em.json").read_text())["endmembers"])
    assert found.shape == (3, 10)
    for spectrum in e:
        assert min(np.linalg.norm(f - spectrum) for f in found) < 0.05
    assert main(["fit", "endmembers", path, "-k", "3", "--unmixer", "fcls", "-o", str(tmp_path / "u.json")]) == 0
    u = pm.load(tmp_path / "u.json")
    assert isinstance(u, Unmixer) and u.nonneg and u.sum_to_one
    assert main(["fit", "endmembers", path, "-o", str(tmp_path / "x.json")]) == 2  # no -k

    # spillover: two dyes seen in three channels, and an unstained control
    dyes = np.array([[1.0, 0.3, 0.05], [0.1, 1.0, 0.4]])
    controls = {}
    for i, name in enumerate(("DAPI", "FITC")):
        amount = rng.gamma(2.0, 200.0, size=(32, 32)) * (rng.random((32, 32)) < 0.3)  # stained cells
        image = amount[..., None] * dyes[i] + 50 + rng.normal(0, 1, (32, 32, 3))
        controls[name] = tmp_path / f"{name}.tif"
        tifffile.imwrite(controls[name], np.moveaxis(image, -1, 0).astype(np.float32), photometric="minisblack")
    glow = rng.gamma(2.0, 50.0, size=(32, 32)) * (rng.random((32, 32)) < 0.3)  # autofluorescent cells
    blank = (glow[None] * np.array([0.5, 0.6, 0.8])[:, None, None] + 50 + rng.normal(0, 1, (3, 32, 32)))
    blank = blank.astype(np.float32)
    tifffile.imwrite(tmp_path / "blank.tif", blank, photometric="minisblack")
    args = ["fit", "spillover", "-o", str(tmp_path / "spill.json"), "--channel-axis", "0",
            "--background", str(tmp_path / "blank.tif")]
    for name, control in controls.items():
        args += ["--reference", f"{name}={control}"]
    assert main(args) == 0
    spill = pm.load(tmp_path / "spill.json")
    assert spill.output_names[:2] == ("abundance:DAPI", "abundance:FITC") and spill.nonneg
    assert spill.n_outputs == 3  # and the autofluorescence
    signatures = spill.endmembers[:2] / spill.endmembers[:2].max(axis=1, keepdims=True)
    np.testing.assert_allclose(signatures, dyes, atol=0.02)
    assert main(["fit", "spillover", path, "-o", str(tmp_path / "s.json")]) == 2  # controls go in --reference


def test_batch_summary_counts_pixels_held_at_a_constraint(rng, tmp_path, capsys):
    tifffile = pytest.importorskip("tifffile")
    from pixelmix.cli import main

    e, y = _scene(rng, c=6, n=400)
    tifffile.imwrite(tmp_path / "in.tif", np.moveaxis(y.reshape(20, 20, 6), -1, 0).astype(np.float32),
                     photometric="minisblack")
    u = pm.unmixer(e[:4], nonneg=True, residual=True)
    u.save(tmp_path / "u.json")
    want = u(y.astype(np.float32))
    held = int((want[:, :4] == 0).any(axis=1).sum())
    assert 0 < held < 400
    for out in ("out", "out.zarr"):
        assert main(["apply", str(tmp_path / "in.tif"), "--mixer", str(tmp_path / "u.json"),
                     "-o", str(tmp_path / out), "--channel-axis", "0"]) == 0
        text = capsys.readouterr()
        assert f"constrained unmixing: {held} of 400 pixels" in text.out + text.err


def test_unmixer_options_are_fixed_at_construction():
    u = pm.unmixer(np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]), nonneg=True)
    assert (u.nonneg, u.sum_to_one, u.residual) == (True, False, False)
    for name in ("nonneg", "sum_to_one", "residual"):
        with pytest.raises(AttributeError):
            setattr(u, name, True)
