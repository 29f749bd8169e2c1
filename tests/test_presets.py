"""Presets against scikit-image's colour functions and colour-science's ColorChecker sRGB."""

import numpy as np
import pytest

from pixelmix import Mixer, Program, presets

SPACES = ["rgb2gray", "yuv", "yiq", "ypbpr", "ycbcr", "ydbdr", "rgbcie", "xyz"]
STAINS = ["hed", "hdx", "fgx", "bex", "rbd", "gdx", "hax", "bro", "bpx", "ahx", "hpx"]


def _skimage_space(name, rgb):
    from skimage import color

    out = getattr(color, name if name == "rgb2gray" else f"rgb2{name}")(rgb)
    return out[..., None] if out.ndim == rgb.ndim - 1 else out


@pytest.mark.parametrize("name", SPACES)
def test_colour_spaces_match_skimage(rng, name):
    rgb = rng.random((6, 7, 3))
    np.testing.assert_allclose(presets.get(name)(rgb), _skimage_space(name, rgb), atol=1e-12)


@pytest.mark.parametrize("name", STAINS)
def test_stains_match_skimage(rng, name):
    from skimage import color

    rgb = rng.random((6, 7, 3))
    rgb[0, 0] = 0.0  # below the 1e-6 floor
    ref = color.separate_stains(rgb, getattr(color, f"{name}_from_rgb"))
    np.testing.assert_allclose(presets.get(name)(rgb), ref, atol=1e-12)


@pytest.mark.parametrize("name", ["hed", "ycbcr", "xyz", "rgb2gray"])
def test_scale_feeds_uint8_directly(rng, name):
    from skimage import color

    rgb = rng.integers(0, 256, size=(5, 6, 3)).astype(np.uint8)
    rgb[0, 0] = 0
    ours = presets.get(name, scale=255)(rgb)
    if name == "hed":
        ref = color.separate_stains(rgb, color.hed_from_rgb)
    else:
        ref = _skimage_space(name, rgb)
    # float32 output for uint8 input: compare at float32 precision of the values' range.
    np.testing.assert_allclose(ours, ref, rtol=2e-6, atol=2e-6 * max(1.0, np.abs(ref).max()))


def test_channels_first(rng):
    from skimage import color

    rgb = rng.random((3, 5, 4))
    out = presets.get("hed")(rgb, channel_axis=0)
    ref = color.separate_stains(rgb, color.hed_from_rgb, channel_axis=0)
    np.testing.assert_allclose(out, ref, atol=1e-12)


def _colorchecker():
    import warnings

    import colour

    shape = colour.SpectralShape(380, 780, 5)
    sds = colour.SDS_COLOURCHECKERS["ColorChecker N Ohta"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reflectance = np.array([sd.copy().align(shape).values for sd in sds.values()])
        cmfs = colour.MSDS_CMFS["CIE 1931 2 Degree Standard Observer"]
        d65 = colour.SDS_ILLUMINANTS["D65"]
        xyz = np.array([colour.sd_to_XYZ(sd, cmfs, d65) / 100 for sd in sds.values()])
        srgb = np.clip(np.array([colour.XYZ_to_sRGB(v) for v in xyz]), 0, 1)
    return np.arange(380, 781, 5.0), reflectance, xyz, srgb


def test_colorchecker_srgb_matches_colour_science():
    wavelengths, reflectance, xyz, srgb = _colorchecker()
    ours_xyz = presets.spectral_to_xyz(wavelengths)(reflectance)
    # colour-science integrates at 1 nm (ASTM E308 tables); we integrate at the
    # bands' own 5 nm sampling: agreement to well under one 8-bit level.
    np.testing.assert_allclose(ours_xyz, xyz, atol=3e-4)
    program = presets.spectral_to_srgb(wavelengths)
    assert isinstance(program, Program)
    np.testing.assert_allclose(program(reflectance), srgb, atol=1e-3)
    # As a (Y, X, C) cube with channels first, like a multi-page stack.
    cube = np.moveaxis(reflectance.reshape(4, 6, -1), -1, 0).copy()
    out = program(cube, channel_axis=0)
    np.testing.assert_allclose(np.moveaxis(out, 0, -1).reshape(-1, 3), program(reflectance), atol=1e-12)


def test_perfect_reflector_is_white():
    wavelengths = np.arange(400, 701, 10.0)
    xyz = presets.spectral_to_xyz(wavelengths)(np.ones(31))
    assert xyz[1] == pytest.approx(1.0, abs=1e-12)
    # Over the full visible range the D65 white renders as sRGB white (1, 1, 1).
    full = np.arange(380, 781, 5.0)
    np.testing.assert_allclose(presets.spectral_to_srgb(full)(np.ones(full.size)), 1.0, atol=1e-3)
    # The equal-energy illuminant E has equal X, Y, Z for a perfect reflector.
    np.testing.assert_allclose(
        presets.spectral_to_xyz(np.arange(360, 831, 1.0), illuminant="E")(np.ones(471)), 1.0, atol=2e-3
    )


def test_shipped_tables_name_their_source():
    from importlib import resources

    folder = resources.files("pixelmix") / "data" / "cie"
    for name in ("cie1931_2deg_cmf.csv", "cie_d65_spd.csv"):
        first = (folder / name).read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("#") and "Source:" in first
    cmf_wl, cmf, d65_wl, d65 = presets.cie_tables()
    assert cmf.shape == (471, 3) and d65_wl[0] == 300 and d65[d65_wl == 560] == pytest.approx(100.0)


def test_band_binning():
    m = presets.band_binning(7, 3, wavelengths=np.arange(400, 470, 10.0))
    assert m.output_names == ("410", "440", "460")
    np.testing.assert_allclose(m(np.arange(7.0)), [1.0, 4.0, 6.0])
    np.testing.assert_allclose(presets.band_binning(4, 2, mode="sum")(np.ones(4)), [2.0, 2.0])
    with pytest.raises(ValueError, match="factor=5 is larger"):
        presets.band_binning(4, 5)
    with pytest.raises(ValueError, match="positive integer"):
        presets.band_binning(4, 0)


def test_names_and_get():
    assert set(SPACES + STAINS + ["band_binning", "spectral_to_xyz", "spectral_to_srgb"]) == set(presets.names())
    assert isinstance(presets.get("yuv"), Mixer)
    assert presets.get("spectral_to_srgb", wavelengths=[450, 550, 650]).n_inputs == 3
    with pytest.raises(ValueError, match="unknown preset 'lab'; choose from"):
        presets.get("lab")
    with pytest.raises(TypeError, match="preset 'band_binning'"):
        presets.get("band_binning", n_bands=4)
    with pytest.raises(ValueError, match="strictly increasing"):
        presets.spectral_to_xyz([500, 400])
    with pytest.raises(ValueError, match="no visible light"):
        presets.spectral_to_xyz([1000, 1100])
    with pytest.raises(ValueError, match="scale must be a positive"):
        presets.get("hed", scale=0)


def test_presets_save_and_load(tmp_path):
    import pixelmix as pm

    program = presets.get("hed", scale=255)
    program.save(tmp_path / "hed.json")
    assert pm.load(tmp_path / "hed.json") == program


def test_spectral_to_srgb_takes_the_value_of_a_perfect_reflector(rng, tmp_path):
    """Reflectance stored as integers x 10000 renders as the reflectance itself, not white."""
    import tifffile

    from pixelmix.cli import main

    wl = np.arange(400, 701, 10)
    reflectance = rng.uniform(0.05, 0.6, size=(8, 9, wl.size))
    stored = np.round(reflectance * 10000).astype(np.uint16)
    want = presets.spectral_to_srgb(wl)(stored / 10000.0)
    got = presets.spectral_to_srgb(wl, scale=10000)(stored)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got.max() < 0.99  # not saturated to white
    tifffile.imwrite(tmp_path / "cube.tif", np.moveaxis(stored, -1, 0))
    assert main([
        "apply", str(tmp_path / "cube.tif"), "--preset", "spectral_to_srgb", "--preset-option", "scale=10000",
        "--preset-option", f"wavelengths={wl.tolist()}", "--channel-axis", "0", "-o", str(tmp_path / "out"), "-q",
    ]) == 0
    out = tifffile.imread(tmp_path / "out" / "cube.tif")
    np.testing.assert_allclose(np.moveaxis(out, 0, -1), got, atol=1e-6)
