"""OME-Zarr outputs validate against the OME-Zarr 0.4 model (ome-zarr-models) and carry the calibration."""

import json

import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr_models.v04.bioformats2raw import BioFormats2Raw
from ome_zarr_models.v04.image import Image

import pixelmix as pm
from pixelmix.cli import main

from .helpers import apply_cli

MIXER = pm.Mixer([[1.0, 1.0, 0.0], [0.5, -1.0, 2.0]], output_names=["sum", "diff"])


def _hyperstack(path, rng):
    data = rng.integers(0, 4000, (3, 2, 3, 24, 40)).astype(np.uint16)
    tifffile.imwrite(path, data, imagej=True, resolution=(4.0, 4.0),
                     metadata={"axes": "TZCYX", "spacing": 0.7, "unit": "micron", "finterval": 1.5})
    return data


def test_calibrated_stack_validates_with_units_scale_and_windows(tmp_path, rng, capsys):
    src = tmp_path / "hs.tif"
    data = _hyperstack(src, rng)
    store = apply_cli(tmp_path, src, MIXER, out="out.zarr")
    group = zarr.open_group(str(store / "hs"), mode="r")
    image = Image.from_zarr(group)  # raises unless it is valid OME-Zarr 0.4
    multiscale = image.attributes.multiscales[0]
    assert [(a.name, a.type, a.unit) for a in multiscale.axes] == [
        ("t", "time", "second"), ("c", "channel", None), ("z", "space", "micrometer"),
        ("y", "space", "micrometer"), ("x", "space", "micrometer")]
    assert multiscale.datasets[0].coordinateTransformations[0].scale == [1.5, 1.0, 0.7, 0.25, 0.25]
    want = MIXER.apply(data, channel_axis=2)
    channels = image.attributes.omero.channels
    assert [c.label for c in channels] == ["sum", "diff"]
    for i, channel in enumerate(channels):
        assert len(channel.color) == 6
        lo, hi = float(want[:, :, i].min()), float(want[:, :, i].max())
        assert (channel.window.start, channel.window.end, channel.window.min, channel.window.max) == (lo, hi, lo, hi)
    np.testing.assert_array_equal(np.asarray(group["0"]), np.moveaxis(want, 2, 1))  # stored t, c, z, y, x

    assert main(["info", str(store)]) == 0
    text = capsys.readouterr().out
    assert "shape (3, 2, 2, 24, 40)  axes tczyx  dtype float32" in text
    assert "channel names: sum, diff" in text
    assert "scale: t 1.5 second, z 0.7 micrometer, y 0.25 micrometer, x 0.25 micrometer" in text


def test_integer_output_windows_span_the_dtype(tmp_path, rng):
    src = tmp_path / "hs.tif"
    _hyperstack(src, rng)
    store = apply_cli(tmp_path, src, pm.Mixer([[0.5, 0.5, 0.0]], output_names=["mean"]), "--dtype", "uint16",
                      out="out.zarr")
    window = Image.from_zarr(zarr.open_group(str(store / "hs"), mode="r")).attributes.omero.channels[0].window
    assert (window.min, window.max) == (0.0, 65535.0) and 0 <= window.start <= window.end <= 4000


def test_pyramid_and_series_become_multiscales_in_a_series_group(tmp_path, rng, capsys):
    full = rng.integers(0, 4000, (3, 64, 96)).astype(np.uint16)
    levels = [full, full[:, ::2, ::2].copy(), full[:, ::4, ::4].copy()]
    other = rng.integers(0, 4000, (3, 40, 24)).astype(np.uint16)
    src = tmp_path / "slide.ome.tif"
    with tifffile.TiffWriter(src, ome=True) as tif:
        tif.write(levels[0], subifds=2, tile=(16, 16),
                  metadata={"axes": "CYX", "Name": "tissue", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
        for level in levels[1:]:
            tif.write(level, subfiletype=1, tile=(16, 16))
        tif.write(other, metadata={"axes": "CYX", "Name": "label"})
    store = apply_cli(tmp_path, src, MIXER, out="out.zarr")
    root = zarr.open_group(str(store / "slide"), mode="r")
    BioFormats2Raw.from_zarr(root)  # validates both images too
    tissue = Image.from_zarr(root["0"]).attributes.multiscales[0]
    assert tissue.name == "tissue"
    assert [d.coordinateTransformations[0].scale for d in tissue.datasets] == [
        [1.0, 0.5, 0.5], [1.0, 1.0, 1.0], [1.0, 2.0, 2.0]]
    for i, level in enumerate(levels):
        np.testing.assert_array_equal(np.asarray(root["0"][str(i)]), MIXER.apply(level, channel_axis=0))
    np.testing.assert_array_equal(np.asarray(root["1"]["0"]), MIXER.apply(other, channel_axis=0))

    assert main(["info", str(store), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"].split("out.zarr")[1] for r in records] == ["/slide/0", "/slide/1"]
    assert records[0]["levels"] == [[2, 64, 96], [2, 32, 48], [2, 16, 24]]
    assert records[0]["channel_names"] == ["sum", "diff"] and records[0]["scale"] == [1.0, 0.5, 0.5]


def test_geotiff_pixel_size_is_the_scale(tmp_path, rng):
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    src = tmp_path / "scene.tif"
    bands = rng.integers(0, 10000, (3, 32, 48)).astype(np.uint16)
    with rasterio.open(src, "w", driver="GTiff", width=48, height=32, count=3, dtype="uint16",
                       crs="EPSG:32633", transform=from_origin(500000, 4100000, 30, 30)) as f:
        f.write(bands)
    store = apply_cli(tmp_path, src, MIXER, out="out.zarr")
    multiscale = Image.from_zarr(zarr.open_group(str(store / "scene"), mode="r")).attributes.multiscales[0]
    assert [(a.name, a.unit) for a in multiscale.axes] == [("c", None), ("y", "meter"), ("x", "meter")]
    assert multiscale.datasets[0].coordinateTransformations[0].scale == [1.0, 30.0, 30.0]
