"""pixelmix.io: reading every TIFF layout in slabs, and writing outputs back."""

import json
import math
import os

import numpy as np
import pytest
import tifffile

from pixelmix.io import write
from pixelmix.io.read import open_stack
from pixelmix.io.write import create_stack, in_file_order, page_tiles, write_stack
from pixelmix.plan import plan_slabs

RNG = np.random.default_rng(7)


def _u16(shape):
    return RNG.integers(0, 4000, size=shape, dtype=np.uint16)


def _gdal(n):
    items = "".join(
        f'<Item name="wavelength" sample="{i}">{0.5 + 0.1 * i:.1f}</Item>'
        f'<Item name="DESCRIPTION" sample="{i}" role="description">band {i}</Item>'
        for i in range(n)
    )
    return f'<GDALMetadata><Item name="wavelength_units">Micrometers</Item>{items}</GDALMetadata>'


def _write_layout(path, layout):
    """Write ``layout``; return (array as tifffile reads it, axes, channel_axis, memmapped)."""
    if layout == "multipage":  # a plain page stack: channels first
        a = _u16((5, 40, 36))
        tifffile.imwrite(path, a, photometric="minisblack")
        return a, "QYX", 0, True
    if layout == "pages-one-by-one":  # separate writes, no shape metadata
        a = _u16((4, 24, 20))
        with tifffile.TiffWriter(path) as w:
            for page in a:
                w.write(page, metadata=None, contiguous=False, photometric="minisblack")
        return a, "IYX", 0, False
    if layout == "ome-zcyx-zlib-tiled":
        a = _u16((3, 4, 48, 40))
        tifffile.imwrite(path, a, ome=True, tile=(16, 16), compression="zlib", photometric="minisblack",
                         metadata={"axes": "ZCYX", "Channel": {"Name": ["a", "b", "c", "d"]}})
        return a, "ZCYX", 1, False
    if layout == "ome-zstd-tiled":
        a = _u16((3, 32, 32))
        tifffile.imwrite(path, a, ome=True, tile=(16, 16), compression="zstd", photometric="minisblack",
                         metadata={"axes": "CYX"})
        return a, "CYX", 0, False
    if layout == "imagej-hyperstack":
        a = RNG.random((2, 3, 20, 24)).astype(np.float32)
        tifffile.imwrite(path, a, imagej=True, resolution=(4.0, 4.0),
                         metadata={"axes": "ZCYX", "Labels": ["r", "g", "b"] * 2, "spacing": 2.5, "unit": "um"})
        return a, "ZCYX", 1, True
    if layout == "bigtiff":
        a = _u16((3, 20, 24))
        tifffile.imwrite(path, a, bigtiff=True, photometric="minisblack")
        return a, "QYX", 0, True
    if layout == "striped-lzw-rgb":
        a = RNG.integers(0, 255, size=(30, 20, 3), dtype=np.uint8)
        tifffile.imwrite(path, a, photometric="rgb", rowsperstrip=7, compression="lzw")
        return a, "YXS", 2, False
    if layout == "big-endian":
        a = RNG.random((3, 17, 19)).astype(np.float32)
        tifffile.imwrite(path, a, byteorder=">", photometric="minisblack")
        return a, "QYX", 0, True
    if layout == "gdal-wavelengths":
        a = _u16((12, 20, 18, 4))[..., 0].transpose(1, 2, 0).copy()  # YXS, 12 bands
        tifffile.imwrite(path, a, photometric="minisblack", planarconfig="contig",
                         extratags=[(42112, "s", 0, _gdal(12), True)])
        return a, "YXS", 2, True
    if layout == "2d":
        a = _u16((40, 48))
        tifffile.imwrite(path, a, photometric="minisblack")
        return a[None], "CYX", 0, True
    raise AssertionError(layout)


LAYOUTS = ["multipage", "pages-one-by-one", "ome-zcyx-zlib-tiled", "ome-zstd-tiled", "imagej-hyperstack",
           "bigtiff", "striped-lzw-rgb", "big-endian", "gdal-wavelengths", "2d"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_slabs_cover_every_layout(tmp_path, layout):
    path = tmp_path / f"{layout}.tif"
    expected, axes, channel_axis, mapped = _write_layout(path, layout)
    with open_stack(path) as stack:
        assert stack.axes == axes
        assert stack.channel_axis == channel_axis
        assert stack.shape == expected.shape
        assert stack.dtype == expected.dtype.newbyteorder("=")
        assert stack.is_memmap == mapped
        rebuilt = np.zeros(stack.shape, stack.dtype)
        seen = np.zeros(stack.shape, np.int8)
        count = 0
        for index, slab in stack.iter_slabs(max_bytes=1500):
            assert slab.shape[channel_axis] == stack.n_channels
            assert slab.shape == rebuilt[index].shape
            rebuilt[index] = slab
            seen[index] += 1
            count += 1
        assert count > 1
        assert (seen == 1).all()
        np.testing.assert_array_equal(rebuilt, expected)


def test_memmapped_slabs_are_views_of_the_file(tmp_path):
    path = tmp_path / "m.tif"
    _write_layout(path, "multipage")
    with open_stack(path) as stack:
        for _, slab in stack.iter_slabs(max_bytes=2000):
            assert not slab.flags.owndata and not slab.flags.writeable


def test_memmapped_slabs_are_announced_to_the_kernel_ahead(tmp_path, monkeypatch):
    """Every slab but the first is hinted (WILLNEED) before it is read: the file ranges where tifffile says its
    pixels lie, channel plane by channel plane."""
    if not hasattr(os, "posix_fadvise"):
        pytest.skip("no posix_fadvise on this system: the hints go through mmap.madvise")
    path = tmp_path / "m.tif"
    a = _u16((5, 40, 36))
    tifffile.imwrite(path, a, photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        start = tif.pages[0].dataoffsets[0]  # contiguous: page after page
    hinted = np.zeros(a.nbytes, np.int8)
    calls = []

    def record(fd, offset, length, advice):
        assert advice == os.POSIX_FADV_WILLNEED
        calls.append((offset, length))

    monkeypatch.setattr(os, "posix_fadvise", record)
    read = np.zeros(a.nbytes, np.int8)
    with open_stack(path) as stack:
        assert len(list(stack.iter_slabs(max_bytes=2000, prefetch=0))) > 2 and not calls
        slabs = list(stack.iter_slabs(max_bytes=2000))
    assert len(slabs) > 2 and calls
    for offset, length in calls:
        assert start <= offset and offset + length <= start + a.nbytes
        hinted[offset - start:offset - start + length] += 1
    for index, _ in slabs[1:]:
        read[np.arange(a.size).reshape(a.shape)[index].ravel() * 2] = 1
    first = np.arange(a.size).reshape(a.shape)[slabs[0][0]].ravel() * 2
    assert (hinted <= 1).all()  # each slab once
    assert (hinted[read == 1] == 1).all() and not hinted[first].any()
    assert hinted.sum() == a.nbytes - slabs[0][1].nbytes


def test_channel_names_and_wavelengths(tmp_path):
    p = tmp_path / "ome.tif"
    tifffile.imwrite(p, _u16((3, 16, 16)), ome=True, metadata={
        "axes": "CYX", "Channel": {"Name": ["x", "y", "z"], "EmissionWavelength": [0.45, 0.55, 0.65],
                                   "EmissionWavelengthUnit": ["µm"] * 3}})
    with open_stack(p) as s:
        assert s.channel_names == ["x", "y", "z"]
        assert s.wavelengths == pytest.approx([450, 550, 650])
    p = tmp_path / "ij.tif"
    _write_layout(p, "imagej-hyperstack")
    with open_stack(p) as s:
        assert s.channel_names == ["r", "g", "b"]
        assert s.calibration["PhysicalSizeX"] == pytest.approx(0.25)
        assert s.calibration["PhysicalSizeZ"] == pytest.approx(2.5)
    p = tmp_path / "gdal.tif"
    _write_layout(p, "gdal-wavelengths")
    with open_stack(p) as s:
        assert s.channel_names == [f"band {i}" for i in range(12)]
        assert s.wavelengths == pytest.approx([500 + 100 * i for i in range(12)])
    p = tmp_path / "plain.tif"
    _write_layout(p, "multipage")
    with open_stack(p) as s:
        assert s.channel_names is None and s.wavelengths is None


def test_channel_axis_override(tmp_path):
    p = tmp_path / "s.tif"
    a, *_ = _write_layout(p, "multipage")
    with open_stack(p, channel_axis=-1) as s:
        assert s.channel_axis == 2 and s.n_channels == a.shape[2]
        _, slab = next(s.iter_slabs(max_bytes=100))
        assert slab.shape[2] == a.shape[2]
    with pytest.raises(ValueError, match="channel_axis=3 is out of range"):
        open_stack(p, channel_axis=3)


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        open_stack(tmp_path / "missing.tif")
    (tmp_path / "text.tif").write_text("not a tiff at all")
    with pytest.raises(ValueError, match="not a readable TIFF"):
        open_stack(tmp_path / "text.tif")
    for layout in ("multipage", "ome-zcyx-zlib-tiled"):
        p = tmp_path / f"{layout}.tif"
        _write_layout(p, layout)
        raw = p.read_bytes()
        cut = tmp_path / f"cut-{layout}.tif"
        cut.write_bytes(raw[: len(raw) - 300])
        with pytest.raises(ValueError, match="truncated|damaged|not a readable"):
            open_stack(cut)


@pytest.mark.parametrize("shape,axis", [((3, 4, 50, 40), 1), ((5, 64, 48), 0), ((30, 20, 7), 2), ((6, 9), 1)])
@pytest.mark.parametrize("max_bytes", [1, 700, 10**9])
def test_plan_slabs_partition(shape, axis, max_bytes):
    seen = np.zeros(shape, np.int8)
    plan = plan_slabs(shape, axis, 2, max_bytes)
    for index in plan:
        assert index[axis] == slice(0, shape[axis])
        seen[index] += 1
    assert (seen == 1).all()
    if max_bytes == 10**9:
        assert len(plan) == 1


def test_plan_slabs_round_to_chunks():
    plan = plan_slabs((4, 100, 64), 0, 2, max_bytes=4 * 40 * 64 * 2, chunks=(1, 16, 64))
    starts = [index[1].start for index in plan]
    assert all(s % 16 == 0 for s in starts) and len(plan) > 1


def test_write_stack_round_trip_keeps_metadata(tmp_path):
    image = RNG.random((2, 3, 40, 50)).astype(np.float32)
    path = tmp_path / "out.ome.tif"
    provenance = {"program": {"kind": "mixer"}, "source": "in.tif"}
    write_stack(path, page_tiles(image, (16, 32)), shape=image.shape, dtype=image.dtype, axes="ZCYX",
                tile=(16, 32), compression="zlib", channel_names=["p", "q", "r"], provenance=provenance,
                calibration={"PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0,
                             "resolution": (2.0, 2.0), "resolutionunit": 3})
    with open_stack(path) as s:
        assert s.axes == "ZCYX" and s.channel_names == ["p", "q", "r"]
        assert s.calibration["PhysicalSizeZ"] == 2.0 and s.calibration["resolution"] == (2.0, 2.0)
        np.testing.assert_array_equal(s.read(), image)
    with tifffile.TiffFile(path) as t:
        assert t.pages.first.is_tiled and t.pages.first.compression == 8
        desc = t.ome_metadata.split("<Description>")[1].split("</Description>")[0]
        assert json.loads(desc.replace("&quot;", '"'))["pixelmix"] == provenance


def test_create_stack_channels_last_and_bigtiff(tmp_path, monkeypatch):
    monkeypatch.setattr(write, "BIGTIFF_ABOVE", 100)
    path = tmp_path / "yxs.tif"
    out = create_stack(path, shape=(10, 12, 2), dtype=np.uint16, axes="YXS", channel_names=["a", "b"],
                       provenance={"x": 1})
    out[...] = 7
    out.flush()
    del out
    with tifffile.TiffFile(path) as t:
        assert t.is_bigtiff and t.shaped_metadata[0]["pixelmix"] == {"x": 1}
    with open_stack(path) as s:
        assert s.axes == "YXS" and s.channel_names == ["a", "b"] and s.is_memmap
        assert (s.read() == 7).all()


def test_in_file_order():
    shape = (2, 3, 32, 32)  # Z K Y X
    whole_z = [(slice(z, z + 1), slice(0, 3), slice(0, 32), slice(0, 32)) for z in range(2)]
    assert in_file_order(shape, 2, whole_z, 16)
    rows = [(slice(0, 1), slice(0, 3), slice(y, y + 16), slice(0, 32)) for y in (0, 16)]
    assert not in_file_order(shape, 2, rows, 16)  # row bands of 3 planes at once
    yxs = [(slice(y, min(y + 16, 40)), slice(0, 8), slice(0, 3)) for y in range(0, 40, 16)]
    assert in_file_order((40, 8, 3), 3, yxs, 16)
    assert not in_file_order((40, 8, 3), 3, [(slice(0, 8), slice(0, 8), slice(0, 3))] +
                             [(slice(8, 40), slice(0, 8), slice(0, 3))], 16)


def test_reader_thread_stops_when_consumer_stops(tmp_path):
    p = tmp_path / "z.tif"
    _write_layout(p, "ome-zcyx-zlib-tiled")
    with open_stack(p) as s:
        slabs = s.iter_slabs(max_bytes=600)
        next(slabs)
        slabs.close()  # joins the reader thread
    assert math.isfinite(0.0)
