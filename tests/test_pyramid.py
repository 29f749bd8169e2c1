"""Pyramids and series: every level of every series is mixed and written as the same pyramid.

Inputs are written by tifffile (OME with SubIFDs, its shaped writer with
SubIFDs, several series); outputs are read back by tifffile, ome-types and
bioio.
"""

import json

import numpy as np
import ome_types
import pytest
import tifffile
from bioio import BioImage
from bioio_ome_tiff import Reader as OmeTiffReader

import pixelmix as pm
from pixelmix import ops
from pixelmix.cli import main
from pixelmix.jobs.file import process_file

MIXER = pm.Mixer([[1.0, 1.0, 0.0], [0.5, -1.0, 2.0]], output_names=["sum", "diff"])


def _down(a):
    """Mean of 2 x 2 blocks: how the reduced levels of a pyramid are made."""
    c, h, w = a.shape
    return a.reshape(c, h // 2, 2, w // 2, 2).mean(axis=(2, 4)).astype(a.dtype)


def _levels(rng, shape=(3, 64, 96)):
    full = rng.integers(0, 4000, shape).astype(np.uint16)
    return [full, _down(full), _down(_down(full))]


def _ome_pyramid(path, rng, *, second=True):
    """An OME-TIFF: a 3-level SubIFD pyramid (tiled, compressed) and a second, plain image."""
    levels = _levels(rng)
    other = rng.integers(0, 4000, (3, 40, 24)).astype(np.uint16)
    options = dict(tile=(16, 16), compression="zlib", photometric="minisblack")
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(levels[0], subifds=2, metadata={"axes": "CYX", "Name": "tissue", "PhysicalSizeX": 0.5,
                                                  "PhysicalSizeY": 0.5, "Channel": {"Name": ["a", "b", "c"]}},
                  **options)
        for level in levels[1:]:
            tif.write(level, subfiletype=1, **options)
        if second:
            tif.write(other, metadata={"axes": "CYX", "Name": "label"}, photometric="minisblack")
    return levels, other


def _read_levels(path):
    with tifffile.TiffFile(path) as tif:
        ome = ome_types.from_xml(tif.ome_metadata, validate=True) if tif.is_ome else None
        return ome, [[lv.asarray() for lv in series.levels] for series in tif.series]


@pytest.mark.parametrize("compression", ["none", "zlib"])
def test_ome_pyramid_and_second_series(tmp_path, rng, compression):
    src = tmp_path / "slide.ome.tif"
    levels, other = _ome_pyramid(src, rng)
    MIXER.save(tmp_path / "m.json")
    out = tmp_path / "out"
    assert main(["apply", str(src), "--mixer", str(tmp_path / "m.json"), "-o", str(out), "-q",
                 "--compression", compression, "--slab-mb", "0.004"]) == 0  # a few rows per slab
    ome, series = _read_levels(out / src.name)
    assert [image.name for image in ome.images] == ["tissue", "label"]
    assert [c.name for c in ome.images[0].pixels.channels] == ["sum", "diff"]
    assert ome.images[0].pixels.physical_size_x == 0.5
    assert [s[0].shape for s in series] == [(2, 64, 96), (2, 40, 24)]
    assert [lv.shape for lv in series[0]] == [(2, 64, 96), (2, 32, 48), (2, 16, 24)]
    for got, level in zip(series[0], levels):  # each level mixed as it is
        np.testing.assert_array_equal(got, MIXER.apply(level, channel_axis=0))
    np.testing.assert_array_equal(series[1][0], MIXER.apply(other, channel_axis=0))
    bio = BioImage(out / src.name, reader=OmeTiffReader)
    assert len(bio.scenes) == 2 and bio.channel_names == ["sum", "diff"]


def test_shaped_subifd_pyramid_from_tifffile(tmp_path, rng):
    # tifffile's own pyramid recipe with its default (shaped) metadata: the reduced
    # levels carry no axes, and tifffile lists them as series of their own
    src = tmp_path / "plain.tif"
    levels = _levels(rng)
    with tifffile.TiffWriter(src) as tif:
        tif.write(levels[0], subifds=2, photometric="minisblack", metadata={"axes": "CYX"})
        for level in levels[1:]:
            tif.write(level, subfiletype=1, photometric="minisblack")
    dst = tmp_path / "out.tif"
    process_file(src, dst, MIXER)
    ome, series = _read_levels(dst)
    assert len(series) == 1 and len(series[0]) == 3  # one image, three levels: a pyramid in, a pyramid out
    for got, level in zip(series[0], levels):
        np.testing.assert_array_equal(got, MIXER.apply(level, channel_axis=0))


def test_nonlinear_program_mixes_each_level(tmp_path, rng):
    src = tmp_path / "p.ome.tif"
    levels, _ = _ome_pyramid(src, rng, second=False)
    program = pm.Program([MIXER, ops.relu()])
    dst = tmp_path / "out.ome.tif"
    process_file(src, dst, program, compression="zlib")
    _, series = _read_levels(dst)
    for got, level in zip(series[0], levels):
        np.testing.assert_array_equal(got, program.apply(level, channel_axis=0))


def test_a_series_the_mixer_cannot_take_fails_the_file(tmp_path, rng):
    src = tmp_path / "two.ome.tif"
    with tifffile.TiffWriter(src, ome=True) as tif:
        tif.write(rng.integers(0, 9, (3, 16, 16)).astype(np.uint16), metadata={"axes": "CYX", "Name": "rgb"})
        tif.write(rng.integers(0, 9, (16, 16)).astype(np.uint16), metadata={"axes": "YX", "Name": "thumb"})
    with pytest.raises(ValueError, match=r"series 1 \(thumb\) has 1 channels .* mixer expects 3"):
        process_file(src, tmp_path / "out.ome.tif", MIXER)
    assert not (tmp_path / "out.ome.tif").exists()


def test_info_lists_series_and_levels(tmp_path, rng, capsys):
    src = tmp_path / "slide.ome.tif"
    _ome_pyramid(src, rng)
    assert main(["info", str(src)]) == 0
    text = capsys.readouterr().out
    assert "series 0 'tissue': shape (3, 64, 96)  axes CYX  dtype uint16; 3 levels: (3, 32, 48), (3, 16, 24)" in text
    assert "series 1 'label': shape (3, 40, 24)" in text
    assert main(["info", str(src), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [s["levels"] for s in record["series"]] == [[[3, 64, 96], [3, 32, 48], [3, 16, 24]], [[3, 40, 24]]]
