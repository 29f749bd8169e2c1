"""ImageJ hyperstack in, ImageJ hyperstack out: written and read back by tifffile's ImageJ writer and reader."""

import json

import numpy as np
import ome_types
import pytest
import tifffile

import pixelmix as pm
from pixelmix.jobs.batch import run_local

from .helpers import apply_cli

LABELS = ["DAPI", "GFP", "RFP"]


def _hyperstack(path):
    """A TZCYX uint16 hyperstack: 4 pixels per micron, 0.7 µm steps in z, a frame every 1.5 s."""
    data = np.random.default_rng(11).integers(0, 4000, (3, 2, 3, 24, 40)).astype(np.uint16)
    tifffile.imwrite(
        path, data, imagej=True, resolution=(4.0, 4.0),
        metadata={"axes": "TZCYX", "spacing": 0.7, "unit": "um", "finterval": 1.5, "mode": "composite",
                  "Labels": LABELS * 6, "min": 0.0, "max": 4000.0},
    )
    return data


@pytest.mark.parametrize("compression", ["none", "zlib"])
def test_hyperstack_in_hyperstack_out(tmp_path, compression):
    src = tmp_path / "hs.tif"
    data = _hyperstack(src)
    mixer = pm.Mixer([[1.0, 1.0, 0.0], [0.0, -1.0, 2.0]], output_names=["nuclei", "membrane"])
    dst = apply_cli(tmp_path, src, mixer, "--compression", compression) / src.name
    with tifffile.TiffFile(dst) as tif:
        assert tif.is_imagej and not tif.is_ome
        series = tif.series[0]
        assert series.axes == "TZCYX" and series.shape == (3, 2, 2, 24, 40)
        meta = tif.imagej_metadata
        assert (meta["channels"], meta["slices"], meta["frames"]) == (2, 2, 3)
        assert (meta["spacing"], meta["unit"], meta["finterval"], meta["mode"]) == (0.7, "um", 1.5, "composite")
        assert meta["Labels"] == ["nuclei", "membrane"] * 6
        assert "min" not in meta and "max" not in meta  # the input's display range no longer holds
        assert json.loads(meta["Properties"]["pixelmix"])["source"] == "hs.tif"
        page = tif.pages.first
        assert page.resolution == (4.0, 4.0)
        assert not page.is_tiled  # ImageJ reads strips, not tiles
        assert page.compression == (1 if compression == "none" else 8)
        got = series.asarray()
    np.testing.assert_array_equal(got, mixer.apply(data, channel_axis=2))


def test_resume_skips_a_finished_hyperstack(tmp_path):
    src = tmp_path / "in" / "hs.tif"
    src.parent.mkdir()
    _hyperstack(src)
    mixer = pm.Mixer([[1.0, 1.0, 1.0]], output_names=["sum"])
    assert run_local([src], tmp_path / "out", mixer, quiet=True).count("done") == 1
    again = run_local([src], tmp_path / "out", mixer, quiet=True, resume=True)
    assert again.count("skipped") == 1  # the provenance in the ImageJ properties says it is this mixer's


def test_an_output_imagej_cannot_hold_is_ome_with_the_calibration(tmp_path):
    src = tmp_path / "hs.tif"
    data = _hyperstack(src)
    mixer = pm.Mixer([[1.0, 1.0, 0.0], [0.0, -1.0, 2.0]], output_names=["a", "b"])
    dst = apply_cli(tmp_path, src, mixer, "--dtype", "float64") / src.name  # ImageJ has no 64-bit floats
    with tifffile.TiffFile(dst) as tif:
        assert not tif.is_imagej
        pixels = ome_types.from_xml(tif.ome_metadata, validate=True).images[0].pixels
        got = tif.series[0].asarray()
    assert (pixels.physical_size_x, pixels.physical_size_z, pixels.time_increment) == (0.25, 0.7, 1.5)
    assert pixels.physical_size_x_unit.value == "µm"
    assert [c.name for c in pixels.channels] == ["a", "b"]
    np.testing.assert_array_equal(got, mixer.apply(data, channel_axis=2, dtype=np.float64))
