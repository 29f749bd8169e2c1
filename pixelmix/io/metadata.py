"""What a TIFF file says about its pixels: channel names, wavelengths, calibration, flavour.

Read from the metadata each writer leaves: OME-XML (``Channel Name``,
emission/excitation wavelengths, ``PhysicalSize*``), ImageJ (``Labels``,
``spacing``, ``unit``, ``finterval`` and the resolution tags), tifffile's
JSON description (``channel_names``, ``wavelengths``) and GDAL's
``GDAL_METADATA`` tag (band descriptions, ENVI-style ``wavelength`` items).
The flavour of a file is tifffile's series kind (``"ome"``, ``"imagej"``,
``"shaped"``, ...), which says which of these it carries.

Examples
--------
>>> import os, tempfile
>>> import numpy as np, tifffile
>>> from pixelmix.io.metadata import read_metadata
>>> path = os.path.join(tempfile.mkdtemp(), "c.ome.tif")
>>> tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint8), metadata={"axes": "CYX",
...     "Channel": {"Name": ["a", "b"], "EmissionWavelength": [0.5, 0.6],
...                 "EmissionWavelengthUnit": ["µm", "µm"]}})
>>> with tifffile.TiffFile(path) as tif:
...     meta = read_metadata(tif, 2, "C")
>>> meta.kind, meta.channel_names, meta.wavelengths
('ome', ['a', 'b'], [500.0, 600.0])
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from .ome import parse_ome, sample_names
from .pyramid import tiff_series

__all__ = ["Metadata", "read_metadata", "channel_metadata", "calibration"]

# Length units to nanometres (wavelengths).
_TO_NM = {"nm": 1.0, "nanometer": 1.0, "nanometers": 1.0, "µm": 1e3, "um": 1e3,
          "micrometer": 1e3, "micrometers": 1e3, "micron": 1e3, "microns": 1e3,
          "mm": 1e6, "m": 1e9, "pm": 1e-3, "å": 0.1, "angstrom": 0.1}


@dataclass
class Metadata:
    """What :func:`read_metadata` found; see :class:`pixelmix.io.read.TiffStack`."""

    kind: str
    channel_names: list[str] | None = None
    wavelengths: list[float] | None = None
    calibration: dict[str, Any] = field(default_factory=dict)


def read_metadata(tif, n_channels: int, letter: str, series: int = 0, level: int = 0) -> Metadata:
    """The metadata of one series (and pyramid level) of an open ``tifffile.TiffFile``.

    Parameters
    ----------
    tif : tifffile.TiffFile
    n_channels : int
        Length of the channel axis: names and wavelengths are kept only when
        there is one for each channel.
    letter : str
        tifffile's letter of the channel axis (ImageJ labels name channels
        only on a ``C`` axis).
    series, level : int
        Which series of the file (OME ``Image``), and which level of its
        pyramid (the resolution tags are the level's own; OME physical
        sizes are those of level 0).

    Returns
    -------
    Metadata
    """
    levels = tiff_series(tif)[series]
    top, part = levels[0], levels[level]
    names, waves = channel_metadata(tif, n_channels, letter, series)
    cal = calibration(tif, part.keyframe, series)
    if level:
        # OME states the pixel size of level 0: a reduced level's pixels are larger
        for letter_ in "XY":
            key = f"PhysicalSize{letter_}"
            if key in cal and letter_ in top.axes and letter_ in part.axes:
                cal[key] *= top.shape[top.axes.index(letter_)] / part.shape[part.axes.index(letter_)]
    return Metadata(kind=str(top.kind), channel_names=names, wavelengths=waves, calibration=cal)


def _ome_root(tif):
    return parse_ome(tif.ome_metadata if tif.is_ome else None)


def _ome_pixels(tif, series: int = 0):
    """The ``Pixels`` element of OME ``Image`` number ``series`` (tifffile's series order), and the namespace."""
    root, ns = _ome_root(tif)
    if root is None:
        return None, ns
    images = root.findall(f"{ns}Image")
    if series >= len(images):
        return None, ns
    return images[series].find(f"{ns}Pixels"), ns


def _to_nm(value, unit) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    factor = _TO_NM.get(str(unit or "nm").strip().lower(), None)
    return None if factor is None else v * factor


def channel_metadata(
    tif, n: int, letter: str, series: int = 0
) -> tuple[list[str] | None, list[float] | None]:
    """Channel names and wavelengths (nm) from OME, ImageJ, JSON or GDAL metadata."""
    names: list[str] | None = None
    waves: list[float] | None = None

    pixels, ns = _ome_pixels(tif, series)
    channels = [] if pixels is None else pixels.findall(f"{ns}Channel")
    if len(channels) == 1 and n > 1:
        # one interleaved channel of n samples: OME names the channel, not its samples
        names = sample_names(_ome_root(tif)[0], series, n)
    if channels and len(channels) == n:
        got = [c.get("Name") for c in channels]
        if all(got):
            names = [str(s) for s in got]
        for attr in ("EmissionWavelength", "ExcitationWavelength"):
            vals = [_to_nm(c.get(attr), c.get(attr + "Unit")) for c in channels]
            if all(v is not None for v in vals):
                waves = vals  # type: ignore[assignment]
                break

    if names is None and tif.is_imagej:
        labels = (tif.imagej_metadata or {}).get("Labels")
        if isinstance(labels, (list, tuple)) and len(labels) >= n and letter == "C":
            # ImageJ labels one plane each, in CZT order: the first n name the channels.
            names = [str(s) for s in labels[:n]]

    # one JSON description per series of a shaped file, in order
    shaped = tif.shaped_metadata[series] if tif.is_shaped and len(tif.shaped_metadata or ()) > series else {}
    if names is None:
        got = shaped.get("channel_names")
        if isinstance(got, list) and len(got) == n:
            names = [str(s) for s in got]
    if waves is None:
        got = shaped.get("wavelengths", shaped.get("wavelength"))
        if isinstance(got, list) and len(got) == n:
            vals = [_to_nm(v, shaped.get("wavelength_units", "nm")) for v in got]
            if all(v is not None for v in vals):
                waves = vals  # type: ignore[assignment]

    gdal = tif.pages.first.tags.get("GDAL_METADATA") if series == 0 else None  # it names the first image's bands
    if gdal is not None and (names is None or waves is None):
        g_names, g_waves = _gdal_channels(str(gdal.value), n)
        names = names or g_names
        waves = waves or g_waves
    return names, waves


def _gdal_channels(text: str, n: int) -> tuple[list[str] | None, list[float] | None]:
    """Band descriptions and ENVI-style wavelengths from a GDAL_METADATA tag."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None, None
    unit = "nm"
    names: dict[int, str] = {}
    waves: dict[int, str] = {}
    for item in root.iter("Item"):
        key = (item.get("name") or "").lower()
        sample = item.get("sample")
        if key == "wavelength_units":
            unit = (item.text or "nm").strip()
        if sample is None:
            continue
        if key in ("wavelength", "wavelengths", "center_wavelength"):
            waves[int(sample)] = item.text or ""
        elif key == "description" or item.get("role") == "description":
            names[int(sample)] = (item.text or "").strip()
    out_names = [names[i] for i in range(n)] if sorted(names) == list(range(n)) else None
    out_waves = None
    if sorted(waves) == list(range(n)):
        vals = [_to_nm(waves[i], unit) for i in range(n)]
        if all(v is not None for v in vals):
            out_waves = vals
    return out_names, out_waves  # type: ignore[return-value]


def calibration(tif, keyframe, series: int = 0) -> dict[str, Any]:
    """Spatial calibration worth carrying to an output file (of OME ``Image`` ``series``)."""
    cal: dict[str, Any] = {}
    try:
        res = keyframe.resolution
        if res and all(r and math.isfinite(r) for r in res) and tuple(res) != (1.0, 1.0):
            cal["resolution"] = (float(res[0]), float(res[1]))
            cal["resolutionunit"] = int(keyframe.resolutionunit)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        pass
    root, _ = _ome_root(tif)
    if root is not None:
        pixels, _ = _ome_pixels(tif, series)
        if pixels is not None:
            for key in ("PhysicalSizeX", "PhysicalSizeY", "PhysicalSizeZ", "TimeIncrement"):
                if pixels.get(key) is not None:
                    cal[key] = float(pixels.get(key))
                    # the OME schema's defaults, so every size is printed and carried with its unit
                    cal[key + "Unit"] = pixels.get(key + "Unit") or ("s" if key == "TimeIncrement" else "µm")
    elif tif.is_imagej:
        ij = tif.imagej_metadata or {}
        unit = ij.get("unit")
        unit = {"micron": "µm", "microns": "µm", "um": "µm", "\\u00B5m": "µm"}.get(unit, unit)
        res = cal.get("resolution")
        if res:  # ImageJ stores pixels per unit
            cal["PhysicalSizeX"] = 1.0 / res[0]
            cal["PhysicalSizeY"] = 1.0 / res[1]
        if ij.get("spacing"):
            cal["PhysicalSizeZ"] = float(ij["spacing"])
        if unit:
            for key in ("PhysicalSizeX", "PhysicalSizeY", "PhysicalSizeZ"):
                if key in cal:
                    cal[key + "Unit"] = unit
        if ij.get("finterval"):
            cal["TimeIncrement"] = float(ij["finterval"])
    return cal
