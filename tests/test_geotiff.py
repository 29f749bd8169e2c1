"""GeoTIFF in, GeoTIFF out: inputs written by rasterio (GDAL), outputs read back by rasterio.

CRS, transform, nodata, band descriptions, wavelengths, interleave and
tiling are checked with GDAL's own reader; pixels against ``Mixer.apply``
of the input as rasterio reads it. The fit skips the file's nodata.
"""

import json
import math

import numpy as np
import pytest
import tifffile

import pixelmix as pm
from pixelmix.cli import main

rasterio = pytest.importorskip("rasterio")
from affine import Affine  # noqa: E402  (rasterio's)
from rasterio.crs import CRS  # noqa: E402

RNG = np.random.default_rng(11)
TRANSFORM = Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 4100000.0)
# GDAL leaves this user-defined transverse Mercator as GeoKeys with code 32767
CUSTOM = CRS.from_proj4("+proj=tmerc +lat_0=0 +lon_0=15 +k=0.9996 +x_0=500000 +y_0=0 +ellps=GRS80 +units=m +no_defs")


def _geotiff(path, *, count=3, dtype="uint16", nodata=0, interleave="pixel", tiled=False, compress=None,
             crs="EPSG:32633", names=None, height=48, width=64, point=False, band_tags=None, tags=None):
    """A GeoTIFF written by GDAL (through rasterio); returns its pixels (bands first)."""
    if np.dtype(dtype).kind == "f":
        data = RNG.uniform(-50, 1000, (count, height, width)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        data = RNG.integers(max(info.min, -500), min(info.max, 4000), (count, height, width)).astype(dtype)
    if nodata is not None:
        data[:, :7, :9] = nodata  # a corner without data
        data[1 % count, 20, 30] = nodata  # one band's hole: the pixel is missing in every output band
    options = dict(tiled=True, blockxsize=32, blockysize=16) if tiled else dict(tiled=False)
    if compress:
        options["compress"] = compress
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count, dtype=dtype, crs=crs,
                       transform=TRANSFORM, nodata=nodata, interleave=interleave, **options) as dst:
        if point:
            dst.update_tags(AREA_OR_POINT="Point")
        if tags:
            dst.update_tags(**tags)
        dst.write(data)
        dst.descriptions = tuple(names or (f"band {i + 1}" for i in range(count)))
        for i, band in enumerate(band_tags or []):
            dst.update_tags(i + 1, **band)
    return data


def _save(tmp_path, mixer, name="m.json"):
    path = tmp_path / name
    mixer.save(path)
    return str(path)


# interleave, tiled, compress, dtype, nodata, C, K, --dtype, --compression
CASES = [
    ("pixel", False, None, "uint16", 0, 3, 4, None, "none"),
    ("band", True, "deflate", "float32", -9999.0, 3, 2, None, "zlib"),
    ("band", False, "deflate", "int16", -9999, 3, 1, "int16", "none"),
    ("pixel", True, "deflate", "uint16", None, 3, 4, "uint16", "none"),
    ("band", False, None, "float32", math.nan, 1, 2, None, "none"),
]


@pytest.mark.parametrize("interleave, tiled, compress, dtype, nodata, c, k, out_dtype, compression", CASES)
def test_apply_keeps_the_geotiff(tmp_path, interleave, tiled, compress, dtype, nodata, c, k, out_dtype, compression):
    src = tmp_path / "scene.tif"
    _geotiff(src, count=c, dtype=dtype, nodata=nodata, interleave=interleave, tiled=tiled, compress=compress)
    weights = RNG.uniform(-1, 1, (k, c)) if out_dtype is None else RNG.uniform(0, 0.5, (k, c))
    mixer = pm.Mixer(weights, RNG.uniform(0, 5, k), output_names=[f"out{i}" for i in range(k)])
    argv = ["apply", str(src), "--mixer", _save(tmp_path, mixer), "-o", str(tmp_path / "out"), "-q",
            "--compression", compression]
    if out_dtype:
        argv += ["--dtype", out_dtype]
    assert main(argv) == 0
    out_path = tmp_path / "out" / "scene.tif"  # the input's name: a GeoTIFF, never OME
    with tifffile.TiffFile(out_path) as tif:
        assert not tif.is_ome and len(tif.pages) == 1
    with rasterio.open(src) as a, rasterio.open(out_path) as b:
        x, y = a.read(), b.read()
        assert b.crs == a.crs and b.crs.to_epsg() == 32633
        assert b.transform == a.transform
        assert b.count == k and b.descriptions == tuple(mixer.output_names)
        assert b.profile["interleave"] == (a.profile["interleave"] if k > 1 else "band")
        assert b.profile["tiled"] == a.profile["tiled"]
        if tiled:
            assert b.block_shapes == [a.block_shapes[0]] * k
        if compression == "zlib":
            assert b.compression.name == "deflate"
        # float nodata (NaN too) marks missing pixels NaN; an integer output holds the nodata itself
        used = None if nodata is None or math.isnan(nodata) else nodata
        want = mixer.apply(x, channel_axis=0, dtype=out_dtype, nodata=used)
        np.testing.assert_array_equal(y, want)
        if nodata is None:
            assert b.nodata is None
        elif np.dtype(y.dtype).kind == "f":
            assert math.isnan(b.nodata) and np.isnan(y[:, :7, :9]).all() and np.isnan(y[:, 20, 30]).all()
            assert np.isfinite(y[:, 7:, 9:][:, :13]).all()
        else:
            assert b.nodata == nodata and (y[:, :7, :9] == nodata).all()


def test_nodata_none_mixes_every_pixel_and_declares_none(tmp_path):
    src = tmp_path / "scene.tif"
    _geotiff(src, nodata=0)
    mixer = pm.Mixer([[1.0, 2.0, -1.0]])
    argv = ["apply", str(src), "--matrix", "1,2,-1", "-o", str(tmp_path / "out"), "-q", "--nodata", "none"]
    assert main(argv) == 0
    with rasterio.open(src) as a, rasterio.open(tmp_path / "out" / "scene.tif") as b:
        assert b.nodata is None
        np.testing.assert_array_equal(b.read(), mixer.apply(a.read(), channel_axis=0))
    # --resume compares the nodata used: the file's own this time, so the output is redone
    assert main([*argv[:-2], "--resume"]) == 0
    with rasterio.open(tmp_path / "out" / "scene.tif") as b:
        assert math.isnan(b.nodata)
    assert main([*argv[:-2], "--resume"]) == 0  # now complete: skipped
    with rasterio.open(tmp_path / "out" / "scene.tif") as b:
        assert math.isnan(b.nodata) and np.isnan(b.read(1)[0, 0])


def test_user_defined_crs_point_raster_and_metadata_are_carried(tmp_path, capsys):
    src = tmp_path / "custom.tif"
    waves = [480.0, 560.0, 660.0]
    _geotiff(src, crs=CUSTOM, point=True, names=["blue", "green", "red"], tags={"SENSOR": "test camera"},
             band_tags=[{"wavelength": w, "wavelength_units": "nm"} for w in waves], dtype="float32", nodata=None)
    # a map that keeps the channels (denoise) keeps their wavelengths
    basis = np.linalg.qr(RNG.standard_normal((3, 2)))[0].T
    pca = pm.Mixer(basis, input_names=["blue", "green", "red"], output_names=["PC1", "PC2"])
    denoise = pca.pinv() @ pca
    assert main(["apply", str(src), "--mixer", _save(tmp_path, denoise), "-o", str(tmp_path / "out"), "-q"]) == 0
    out_path = tmp_path / "out" / "custom.tif"
    with rasterio.open(src) as a, rasterio.open(out_path) as b:
        assert b.crs == a.crs and b.transform == a.transform and b.tags()["AREA_OR_POINT"] == "Point"
        assert b.descriptions == ("blue", "green", "red") and b.tags()["SENSOR"] == "test camera"
        assert [float(b.tags(i + 1)["wavelength"]) for i in range(3)] == waves
        np.testing.assert_allclose(b.read(), denoise.apply(a.read(), channel_axis=0), rtol=1e-6)
    # a map to new channels says nothing of wavelengths
    assert main(["apply", str(src), "--mixer", _save(tmp_path, pca, "pca.json"), "-o", str(tmp_path / "pcs"),
                 "-q"]) == 0
    with rasterio.open(tmp_path / "pcs" / "custom.tif") as b:
        assert b.descriptions == ("PC1", "PC2") and "wavelength" not in b.tags(1)
        assert b.tags()["SENSOR"] == "test camera"
    capsys.readouterr()
    assert main(["info", str(src), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    with rasterio.open(src) as a:
        assert record["geotiff"]["geotransform"] == list(a.transform.to_gdal())  # half a pixel from the tie point
    assert record["geotiff"]["crs"].startswith("user-defined")
    assert record["wavelengths"] == waves


@pytest.mark.parametrize("crs, interleave, tiled", [("EPSG:32633", "band", True), ("EPSG:4326", "pixel", False)])
def test_info_shows_crs_transform_nodata_interleave(tmp_path, capsys, crs, interleave, tiled):
    src = tmp_path / "scene.tif"
    _geotiff(src, crs=crs, nodata=7, interleave=interleave, tiled=tiled)
    capsys.readouterr()
    assert main(["info", str(src), "--json"]) == 0
    geo = json.loads(capsys.readouterr().out)["geotiff"]
    with rasterio.open(src) as a:
        assert geo["crs"] == a.crs.to_string()
        assert geo["geotransform"] == list(a.transform.to_gdal())
        assert geo["nodata"] == a.nodata == 7
        assert geo["interleave"] == a.profile["interleave"]
        assert geo["tile"] == (list(a.block_shapes[0]) if tiled else None)
    assert main(["info", str(src)]) == 0
    text = capsys.readouterr().out
    assert f"CRS: {crs}" in text and "geotransform: (500000, 30, 0, 4100000, 0, -30)" in text
    assert "nodata: 7" in text and f"interleave: {interleave}" in text


def test_fit_skips_the_files_nodata(tmp_path, capsys):
    src = tmp_path / "scene.tif"
    _geotiff(src, dtype="int16", nodata=-9999)
    assert main(["fit", "pca", str(src), "-k", "2", "-o", str(tmp_path / "pca.json")]) == 0
    fitted = pm.load(tmp_path / "pca.json")
    want = pm.fit_pca(str(src), 2, nodata=-9999)
    np.testing.assert_array_equal(fitted.weights, want.weights)
    assert not np.allclose(want.weights, pm.fit_pca(str(src), 2).weights)
    # --nodata none: every pixel, as the fit without nodata
    assert main(["fit", "pca", str(src), "-k", "2", "-o", str(tmp_path / "all.json"), "--nodata", "none"]) == 0
    np.testing.assert_array_equal(pm.load(tmp_path / "all.json").weights, pm.fit_pca(str(src), 2).weights)
    # files that declare different values: the user chooses
    other = tmp_path / "other.tif"
    _geotiff(other, dtype="int16", nodata=0)
    capsys.readouterr()
    assert main(["fit", "pca", str(src), str(other), "-k", "2", "-o", str(tmp_path / "both.json")]) == 2
    err = capsys.readouterr().err
    assert "different nodata" in err and "scene.tif: -9999" in err and "other.tif: 0" in err and "--nodata" in err
