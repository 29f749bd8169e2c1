"""Rules every output follows, through the command line.

- more outputs than inputs (K > C) on every output path: TIFF uncompressed
  (memory-mapped) and compressed, Zarr; channels first and last;
- outputs and saved mixers follow the umask;
- a mixer made for named channels is refused on a file whose channel
  names differ (order or set), unless ``--ignore-channel-names``;
- a map that keeps the channels (denoise) keeps their wavelengths, so the
  output renders with ``--preset spectral_to_srgb``.
"""

import os
import stat

import numpy as np
import pytest
import tifffile

import pixelmix as pm
from pixelmix.cli import main
from pixelmix.demo import sample_dir
from pixelmix.io.read import open_stack

zarr = pytest.importorskip("zarr")

RNG = np.random.default_rng(31)


@pytest.mark.parametrize("output", ["none", "zlib", "zarr"])
@pytest.mark.parametrize("layout", ["CYX", "YXS"])
def test_more_outputs_than_inputs_on_every_output_path(tmp_path, layout, output):
    a = RNG.integers(0, 4000, (2, 64, 48), dtype=np.uint16)
    src = tmp_path / "two.tif"
    if layout == "CYX":
        tifffile.imwrite(src, a, photometric="minisblack")
    else:
        tifffile.imwrite(src, np.moveaxis(a, 0, -1), photometric="minisblack", planarconfig="contig")
    out = tmp_path / ("out.zarr" if output == "zarr" else "out")
    argv = ["apply", str(src), "--matrix", "1,0;0,1;1,1", "-o", str(out), "-q", "--slab-mb", "0.01"]
    if output == "zlib":
        argv += ["--compression", "zlib"]
    assert main(argv) == 0
    want = np.stack([a[0], a[1], a[0] + a[1]]).astype(np.float32)
    if output == "zarr":
        got = np.asarray(zarr.open_group(str(out / "two"), mode="r")["0"])  # OME-Zarr order: c, y, x
    else:
        got = tifffile.imread(out / "two.tif")
        got = got if layout == "CYX" else np.moveaxis(got, -1, 0)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_and_mixers_follow_the_umask(tmp_path, mask):
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, RNG.integers(0, 100, (2, 16, 16), dtype=np.uint16), photometric="minisblack")
    old = os.umask(mask)
    try:
        assert main(["apply", str(src), "--matrix", "1,1", "-o", str(tmp_path / "out"), "-q"]) == 0
        assert main(["apply", str(src), "--matrix", "1,1", "-o", str(tmp_path / "out.zarr"), "-q"]) == 0
        assert main(["fit", "pca", str(src), "-k", "1", "-o", str(tmp_path / "pca.json")]) == 0
    finally:
        os.umask(old)
    files = [tmp_path / "out" / "in.tif", tmp_path / "pca.json"]
    files += [p for p in (tmp_path / "out.zarr").rglob("*") if p.is_file()]
    dirs = [tmp_path / "out", tmp_path / "out.zarr"] + [p for p in (tmp_path / "out.zarr").rglob("*") if p.is_dir()]
    assert len(files) > 3
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path
    for path in dirs:
        assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~mask, path


def _named(path, names, a):
    tifffile.imwrite(path, a, photometric="minisblack", metadata={"axes": "CYX", "channel_names": list(names)})


def test_mixer_is_refused_on_channels_named_otherwise(tmp_path, capsys):
    a = RNG.integers(0, 4000, (3, 16, 24), dtype=np.uint16)
    _named(tmp_path / "train.tif", ["DAPI", "GFP", "RFP"], a)
    assert main(["fit", "pca", str(tmp_path / "train.tif"), "-k", "2", "-o", str(tmp_path / "pca.json")]) == 0
    pca = pm.load(tmp_path / "pca.json")
    assert pca.input_names == ("DAPI", "GFP", "RFP")
    (tmp_path / "in").mkdir()
    _named(tmp_path / "in" / "swapped.tif", ["GFP", "DAPI", "RFP"], a)
    _named(tmp_path / "in" / "other.tif", ["DAPI", "GFP", "Cy5"], a)
    _named(tmp_path / "in" / "same.tif", ["DAPI", "GFP", "RFP"], a)
    capsys.readouterr()
    argv = ["apply", str(tmp_path / "in"), "--mixer", str(tmp_path / "pca.json"), "-o", str(tmp_path / "out"), "-q"]
    assert main(argv) == 1
    failed = {line.split(": ", 1)[0].rsplit("/", 1)[-1]: line
              for line in capsys.readouterr().err.splitlines() if "FAILED" in line}
    assert sorted(failed) == ["other.tif", "swapped.tif"]
    for name, order in (("swapped.tif", "['GFP', 'DAPI', 'RFP']"), ("other.tif", "['DAPI', 'GFP', 'Cy5']")):
        line = failed[name]
        assert f"has channels {order} but the mixer was made for ['DAPI', 'GFP', 'RFP']" in line
        assert "--ignore-channel-names" in line
    assert "the same channels in another order" in failed["swapped.tif"]
    assert "other channels" in failed["other.tif"]
    assert (tmp_path / "out" / "same.tif").exists() and not (tmp_path / "out" / "swapped.tif").exists()
    # by position, when asked
    assert main([*argv, "--ignore-channel-names", "--resume"]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "swapped.tif"), pca.apply(a, channel_axis=0))


def test_presets_are_not_checked_against_channel_names(tmp_path):
    rgb = RNG.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb", metadata={"channel_names": ["r", "g", "b"]})
    with open_stack(tmp_path / "rgb.tif") as s:
        assert s.channel_names == ["r", "g", "b"]
    assert main(["apply", str(tmp_path / "rgb.tif"), "--preset", "rgb2gray", "-o", str(tmp_path / "out"), "-q"]) == 0


@pytest.mark.parametrize("flavour", ["json", "ome"])
def test_denoise_keeps_wavelengths_for_spectral_to_srgb(tmp_path, flavour):
    if flavour == "ome":  # the bundled scene: reflectance x 10000, wavelengths in its OME metadata
        cube = sample_dir() / "hyperspectral.ome.tif"
    else:
        cube = tmp_path / "cube.tif"
        waves = np.linspace(420.0, 680.0, 12)
        tifffile.imwrite(cube, RNG.integers(1000, 9000, (12, 24, 32), dtype=np.uint16), photometric="minisblack",
                         metadata={"axes": "CYX", "channel_names": [f"{w:g} nm" for w in waves],
                                   "wavelengths": waves.tolist()})
    with open_stack(cube) as s:
        waves, name = s.wavelengths, cube.name
    pca = pm.fit_pca(str(cube), 3)
    denoise = pca.pinv() @ pca
    assert denoise.output_names == denoise.input_names
    denoise.save(tmp_path / "denoise.json")
    assert main(["apply", str(cube), "--mixer", str(tmp_path / "denoise.json"), "-o", str(tmp_path / "den"),
                 "-q"]) == 0
    with open_stack(tmp_path / "den" / name) as s:
        np.testing.assert_allclose(s.wavelengths, waves, rtol=1e-12)
    assert main(["apply", str(tmp_path / "den" / name), "--preset", "spectral_to_srgb", "--preset-option",
                 "scale=10000", "-o", str(tmp_path / "rgb"), "-q"]) == 0
    with open_stack(tmp_path / "rgb" / name) as s:
        srgb = s.read()
    assert srgb.shape[s.channel_axis] == 3
    assert 0 <= srgb.min() and srgb.max() <= 1 and srgb.mean() < 0.95  # rendered, not white
