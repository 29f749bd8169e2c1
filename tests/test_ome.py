"""OME-TIFF in, valid OME-TIFF out: inputs written by bioio and tifffile, outputs read by bioio and ome-types."""

import datetime

import numpy as np
import ome_types
import pytest
import tifffile
from bioio import BioImage
from bioio.writers import OmeTiffWriter
from bioio_base.types import PhysicalPixelSizes
from bioio_ome_tiff import Reader as OmeTiffReader
from ome_types.model import Plane

import pixelmix as pm
from pixelmix.cli import main
from pixelmix.io.read import open_stack

from .helpers import apply_cli

NAMES = ["DAPI", "GFP", "RFP"]
EMISSION = [461.0, 510.0, 610.0]
EXCITATION = [405.0, 488.0, 561.0]


def _bioio_tczyx(path):
    """A TCZYX uint16 OME-TIFF written by bioio: names, sizes, image name, date, time step, stage positions."""
    data = np.random.default_rng(7).integers(0, 4000, (2, 3, 2, 24, 32)).astype(np.uint16)
    ome = OmeTiffWriter.build_ome(
        [data.shape], [data.dtype], dimension_order=["TCZYX"], channel_names=[NAMES], image_name=["cells"],
        physical_pixel_sizes=[PhysicalPixelSizes(1.5, 0.25, 0.2)],
    )
    image = ome.images[0]
    image.acquisition_date = datetime.datetime(2024, 5, 6, 7, 8, 9)
    image.pixels.time_increment = 30.0
    for channel, em, ex in zip(image.pixels.channels, EMISSION, EXCITATION):
        channel.emission_wavelength, channel.excitation_wavelength = em, ex
    # one stage position per z; each channel is taken a little later (DeltaT) with its own exposure
    image.pixels.planes = [
        Plane(the_t=t, the_c=c, the_z=z, position_x=100.0, position_y=200.0, position_z=2.0 + z,
              delta_t=30.0 * t + c, exposure_time=10.0 + c)
        for t in range(2) for c in range(3) for z in range(2)
    ]
    OmeTiffWriter.save(data, str(path), dim_order="TCZYX", ome_xml=ome)
    return data


def _ome(path):
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        return ome_types.from_xml(tif.ome_metadata, validate=True)


@pytest.mark.parametrize("compression", ["none", "zlib"])
def test_tczyx_keeps_name_sizes_date_time_and_positions(tmp_path, compression):
    src = tmp_path / "cells.ome.tif"
    data = _bioio_tczyx(src)
    mixer = pm.Mixer([[1.0, 1.0, 0.0], [0.0, -1.0, 2.0]], output_names=["sum", "diff"])
    dst = apply_cli(tmp_path, src, mixer, "--compression", compression) / src.name

    image = _ome(dst).images[0]
    pixels = image.pixels
    assert image.name == "cells"
    assert image.acquisition_date == datetime.datetime(2024, 5, 6, 7, 8, 9)
    assert (pixels.physical_size_x, pixels.physical_size_y, pixels.physical_size_z) == (0.2, 0.25, 1.5)
    assert pixels.physical_size_x_unit.value == "µm" and pixels.physical_size_z_unit.value == "µm"
    assert pixels.time_increment == 30.0 and pixels.time_increment_unit.value == "s"
    assert [c.name for c in pixels.channels] == ["sum", "diff"]
    # a mixed channel has no emission wavelength; its planes keep where they were taken,
    # not when each input channel was (DeltaT) nor how long (ExposureTime)
    assert all(c.emission_wavelength is None and c.excitation_wavelength is None for c in pixels.channels)
    assert len(pixels.planes) == 2 * 2 * 2
    for plane in pixels.planes:
        assert (plane.position_x, plane.position_y, plane.position_z) == (100.0, 200.0, 2.0 + plane.the_z)
        assert plane.delta_t is None and plane.exposure_time is None

    bio = BioImage(dst, reader=OmeTiffReader)
    assert bio.dims.order == "TCZYX" and bio.dims.C == 2
    assert bio.channel_names == ["sum", "diff"]
    assert tuple(bio.physical_pixel_sizes) == (1.5, 0.25, 0.2)
    np.testing.assert_array_equal(bio.data, mixer.apply(data, channel_axis=1))


def test_channels_kept_carry_wavelengths_and_plane_times(tmp_path):
    src = tmp_path / "cells.ome.tif"
    data = _bioio_tczyx(src)
    # output channel i is input channel i (names match): a per-channel gain
    gain = pm.Mixer(np.diag([2.0, 0.5, 1.0]), input_names=NAMES, output_names=NAMES)
    dst = apply_cli(tmp_path, src, gain) / src.name
    pixels = _ome(dst).images[0].pixels
    assert [c.name for c in pixels.channels] == NAMES
    assert [c.emission_wavelength for c in pixels.channels] == EMISSION
    assert [c.excitation_wavelength for c in pixels.channels] == EXCITATION
    planes = {(p.the_t, p.the_c, p.the_z): p for p in pixels.planes}
    assert planes[1, 2, 1].delta_t == 32.0 and planes[1, 2, 1].exposure_time == 12.0
    with open_stack(dst) as out:
        assert out.wavelengths == EMISSION
    np.testing.assert_array_equal(BioImage(dst, reader=OmeTiffReader).data, gain.apply(data, channel_axis=1))


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("compression", ["none", "zlib"])
def test_rgb_ome_gives_valid_ome(tmp_path, k, compression):
    rgb = np.random.default_rng(3).integers(0, 256, (40, 48, 3)).astype(np.uint8)
    src = tmp_path / "slide.ome.tif"
    tifffile.imwrite(src, rgb, photometric="rgb",
                     metadata={"Name": "slide 1", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
    names = ["H", "E", "D"][:k]
    mixer = pm.Mixer(np.random.default_rng(4).random((k, 3)), output_names=names)
    dst = apply_cli(tmp_path, src, mixer, "--compression", compression) / src.name

    image = _ome(dst).images[0]
    assert image.name == "slide 1"
    assert image.pixels.physical_size_x == 0.5 and image.pixels.size_c == k
    want = mixer.apply(rgb)
    bio = BioImage(dst, reader=OmeTiffReader)
    got = bio.get_image_data("YXS") if k > 1 else bio.get_image_data("YX")[..., None]
    np.testing.assert_array_equal(got, want)
    with open_stack(dst) as out:  # the sample names survive (OME names channels, not samples)
        assert out.channel_names == names


def test_info_prints_ome_pixel_sizes_with_units(tmp_path, capsys):
    src = tmp_path / "a.ome.tif"  # no unit attributes: OME's default, micrometres
    tifffile.imwrite(src, np.zeros((2, 16, 16), np.uint16),
                     metadata={"axes": "CYX", "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325})
    assert main(["info", str(src)]) == 0
    assert "pixel size: X 0.325 µm, Y 0.325 µm" in capsys.readouterr().out
