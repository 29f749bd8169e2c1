"""OME-XML of outputs: what an input's OME ``Image`` says that still holds after a mix.

A mix replaces the channels of every pixel and leaves the pixel grid as it
was. So of an input image's OME metadata:

- carried: the image name, acquisition date, physical sizes with their
  units, time increment, and per plane the stage position
  (``PositionX/Y/Z``) and ``DeltaT`` where every channel of that plane
  agrees on them;
- carried only when the output channels are the input channels (an
  elementwise program, or a mix whose output names are the input's names
  in the same order, such as ``pca.pinv() @ pca``): every channel attribute
  (emission and excitation wavelengths, fluor, colour, ...) and every
  per-plane attribute (exposure times);
- replaced: channel names (the output names), pixel type and sizes, and
  the ``Description``, which holds the provenance record as JSON;
- not expressible: the names of the samples of one interleaved channel
  (``YXS``, ``SamplesPerPixel > 1``): OME names channels, not samples, so
  they go in a ``MapAnnotation`` of namespace :data:`SAMPLE_NAMES_NS`,
  which :func:`sample_names` reads back;
- not carried: instruments, objectives, light paths, ROIs, plates and
  other structured annotations (their references would dangle or no
  longer describe the output).

:func:`read_image` reads an input's image; :func:`ome_metadata` makes the
``metadata`` of tifffile's OME writer, which builds OME-XML that validates
against the 2016-06 schema; :func:`ome_layout` says how an output's shape
is declared in it.

Examples
--------
>>> import os, tempfile
>>> import numpy as np, tifffile
>>> from pixelmix.io.ome import ome_metadata, read_image
>>> path = os.path.join(tempfile.mkdtemp(), "in.ome.tif")
>>> tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint8), metadata={"axes": "CYX",
...     "Name": "cells", "PhysicalSizeX": 0.5, "PhysicalSizeXUnit": "µm",
...     "Channel": {"Name": ["a", "b"], "EmissionWavelength": [520, 610]}})
>>> with tifffile.TiffFile(path) as tif:
...     image = read_image(tif)
>>> image.name, image.pixels["PhysicalSizeX"], [c["EmissionWavelength"] for c in image.channels]
('cells', 0.5, ['520', '610'])
>>> meta = ome_metadata(image, shape=(1, 8, 8), axes="CYX", channel_names=["sum"])
>>> meta["Name"], meta["Channel"]
('cells', [{'Name': 'sum'}])
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .names import clean_name, clean_names
from .write import PROVENANCE_KEY

__all__ = ["OmeImage", "read_image", "ome_metadata", "ome_layout", "sample_names", "ome_unit",
           "SAMPLE_NAMES_NS"]

# The namespace of the MapAnnotation naming the samples of an interleaved channel.
SAMPLE_NAMES_NS = "pixelmix/sample-names"

# Channel attributes tifffile's OME writer stores (all but Name hold only for unchanged channels).
_CHANNEL_ATTRS = (
    "Name", "AcquisitionMode", "Color", "ContrastMethod", "EmissionWavelength", "EmissionWavelengthUnit",
    "ExcitationWavelength", "ExcitationWavelengthUnit", "Fluor", "IlluminationType", "NDFilter",
    "PinholeSize", "PinholeSizeUnit", "PockelCellSetting",
)
# Plane attributes tifffile's OME writer stores.
_PLANE_ATTRS = (
    "DeltaT", "DeltaTUnit", "ExposureTime", "ExposureTimeUnit", "PositionX", "PositionXUnit",
    "PositionY", "PositionYUnit", "PositionZ", "PositionZUnit",
)
# Those that describe where and when a plane was taken, not how a channel was: they hold
# for a mixed channel when every input channel of the plane agrees on them.
_PLACE_ATTRS = tuple(a for a in _PLANE_ATTRS if not a.startswith("Exposure"))
_PIXEL_ATTRS = ("PhysicalSizeX", "PhysicalSizeY", "PhysicalSizeZ", "TimeIncrement")
# OME's UnitsLength and UnitsTime, and the spellings other formats use for them.
_LENGTH_UNITS = {
    "Ym", "Zm", "Em", "Pm", "Tm", "Gm", "Mm", "km", "hm", "dam", "m", "dm", "cm", "mm", "µm", "nm", "pm",
    "fm", "am", "zm", "ym", "Å", "thou", "li", "in", "ft", "yd", "mi", "ua", "ly", "pc", "pt", "pixel",
    "reference frame",
}
_TIME_UNITS = {"Ys", "Zs", "Es", "Ps", "Ts", "Gs", "Ms", "ks", "hs", "das", "s", "ds", "cs", "ms", "µs", "ns",
               "ps", "fs", "as", "zs", "ys", "min", "h", "d"}
_ALIASES = {
    "um": "µm", "μm": "µm", "micron": "µm", "microns": "µm", "micrometer": "µm", "micrometers": "µm",
    "\\u00b5m": "µm", "nanometer": "nm", "nanometers": "nm", "millimeter": "mm", "millimeters": "mm",
    "centimeter": "cm", "meter": "m", "meters": "m", "metre": "m", "angstrom": "Å", "inch": "in",
    "inches": "in", "pixels": "pixel", "sec": "s", "second": "s", "seconds": "s", "msec": "ms",
    "millisecond": "ms", "milliseconds": "ms", "us": "µs", "μs": "µs", "microsecond": "µs",
    "minute": "min", "minutes": "min", "hour": "h", "hours": "h", "day": "d", "days": "d",
}


@dataclass
class OmeImage:
    """What :func:`read_image` found in one OME ``Image``: attributes as the file spells them.

    Attributes
    ----------
    name, acquisition_date : str or None
    pixels : dict
        ``PhysicalSize{X,Y,Z}`` and ``TimeIncrement`` (floats) with their units.
    channels : list of dict
        The attributes of each ``Channel`` that an output can carry.
    planes : dict
        ``(TheC, TheZ, TheT)`` -> the attributes of that ``Plane``.
    """

    name: str | None = None
    acquisition_date: str | None = None
    pixels: dict[str, Any] = field(default_factory=dict)
    channels: list[dict[str, str]] = field(default_factory=list)
    planes: dict[tuple[int, int, int], dict[str, str]] = field(default_factory=dict)


def parse_ome(text: str | None):
    """``(root element, "{namespace}")`` of OME-XML text, or ``(None, "")`` when there is none or it is broken."""
    if not text:
        return None, ""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None, ""
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    return root, ns


def ome_unit(unit, *, time: bool = False) -> str | None:
    """``unit`` as OME spells it (``"micron"`` -> ``"µm"``, ``"sec"`` -> ``"s"``), None if OME has no such unit.

    Examples
    --------
    >>> from pixelmix.io.ome import ome_unit
    >>> ome_unit("micron"), ome_unit("sec", time=True), ome_unit("furlong")
    ('µm', 's', None)
    """
    if unit is None:
        return None
    text = str(unit).strip()
    text = _ALIASES.get(text.lower(), text)
    return text if text in (_TIME_UNITS if time else _LENGTH_UNITS) else None


def read_image(tif, series: int = 0) -> OmeImage | None:
    """The OME ``Image`` number ``series`` of an open ``tifffile.TiffFile``, or None (not OME).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile
    >>> from pixelmix.io.ome import read_image
    >>> path = os.path.join(tempfile.mkdtemp(), "t.ome.tif")
    >>> tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint8), metadata={"axes": "TYX",
    ...     "TimeIncrement": 2.5, "Plane": {"PositionX": [1.0, 1.0], "DeltaT": [0.0, 2.5]}})
    >>> with tifffile.TiffFile(path) as tif:
    ...     image = read_image(tif)
    >>> image.pixels["TimeIncrement"], image.pixels["TimeIncrementUnit"], image.planes[0, 0, 1]["DeltaT"]
    (2.5, 's', '2.5')
    """
    root, ns = parse_ome(tif.ome_metadata if tif.is_ome else None)
    if root is None:
        return None
    images = root.findall(f"{ns}Image")
    if series >= len(images):
        return None
    element = images[series]
    pixels = element.find(f"{ns}Pixels")
    image = OmeImage(name=element.get("Name"), acquisition_date=element.findtext(f"{ns}AcquisitionDate"))
    if pixels is None:
        return image
    for key in _PIXEL_ATTRS:
        value = pixels.get(key)
        if value is None:
            continue
        try:
            image.pixels[key] = float(value)
        except ValueError:
            continue
        # the schema's default units, written out so that they survive any reader
        image.pixels[key + "Unit"] = pixels.get(key + "Unit") or ("s" if key == "TimeIncrement" else "µm")
    image.channels = [
        {k: v for k, v in c.attrib.items() if k in _CHANNEL_ATTRS} for c in pixels.findall(f"{ns}Channel")
    ]
    for plane in pixels.findall(f"{ns}Plane"):
        try:
            key = (int(plane.get("TheC", 0)), int(plane.get("TheZ", 0)), int(plane.get("TheT", 0)))
        except ValueError:
            continue
        image.planes[key] = {k: v for k, v in plane.attrib.items() if k in _PLANE_ATTRS}
    return image


def sample_names(root, series: int, n: int) -> list[str] | None:
    """The names of the ``n`` samples of image ``series``'s one interleaved channel, or None.

    They are the values of the image's ``MapAnnotation`` of namespace
    :data:`SAMPLE_NAMES_NS`, in order. ``root`` is the parsed OME element
    (None: no names).
    """
    if root is None:
        return None
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    images = root.findall(f"{ns}Image")
    if series >= len(images):
        return None
    refs = {r.get("ID") for r in images[series].findall(f"{ns}AnnotationRef")}
    for annotation in root.iter(f"{ns}MapAnnotation"):
        if annotation.get("ID") in refs and annotation.get("Namespace") == SAMPLE_NAMES_NS:
            names = [m.text or "" for m in annotation.iter(f"{ns}M")]
            return names if len(names) == n else None
    return None


def ome_layout(shape: Sequence[int], axes: str) -> tuple[tuple[int, ...], str]:
    """How an output of ``shape`` and ``axes`` is declared in OME: the same, but for one sample.

    OME cannot declare an interleaved channel of one sample (``YXS`` with
    ``S == 1``); the same bytes are one channel plane (``CYX``), so the
    sample axis moves before ``Y`` as ``C`` (or ``Q`` when ``C`` is taken).

    Examples
    --------
    >>> from pixelmix.io.ome import ome_layout
    >>> ome_layout((8, 9, 1), "YXS"), ome_layout((2, 8, 9, 3), "ZYXS")
    (((1, 8, 9), 'CYX'), ((2, 8, 9, 3), 'ZYXS'))
    """
    shape = tuple(int(n) for n in shape)
    if not (axes.endswith("S") and shape[-1] == 1 and "Y" in axes):
        return shape, axes
    y = axes.index("Y")
    letter = "Q" if "C" in axes else "C"
    return shape[:y] + (1,) + shape[y:-1], axes[:y] + letter + axes[y:-1]


def _plane_order(axes: str, shape: Sequence[int]) -> tuple[str, list[int]] | None:
    """tifffile's DimensionOrder and the sizes of its C, Z, T for ``axes`` (None: a modulo axis)."""
    hi = axes[: axes.index("Y")]
    if any(a not in "TZC" for a in hi):
        return None
    for order in ("XYCZT", "XYZCT", "XYZTC", "XYCTZ", "XYTCZ", "XYTZC"):
        if hi[::-1] in order:
            return order, [shape[axes.index(a)] if a in axes else 1 for a in order[2:]]
    return None


def _planes(image: OmeImage, axes: str, shape: Sequence[int], keep_channels: bool) -> list[dict] | None:
    """The attributes of each output plane in tifffile's plane order, or None when none hold."""
    order = _plane_order(axes, shape)
    if order is None or not image.planes:
        return None
    dimorder, sizes = order
    place = [dimorder[2:].index(a) for a in "CZT"]
    in_channels = 1 + max(c for c, _, _ in image.planes)
    out: list[dict] = []
    for p in range(int(np.prod(sizes))):
        index = np.unravel_index(p, sizes, order="F")
        c, z, t = (int(index[i]) for i in place)
        if keep_channels:
            attrs = dict(image.planes.get((c, z, t), {}))
        else:
            # what every input channel of this (z, t) agrees on
            found = [image.planes.get((ci, z, t)) for ci in range(in_channels)]
            if any(f is None for f in found):
                attrs = {}
            else:
                attrs = {k: v for k, v in found[0].items()
                         if k in _PLACE_ATTRS and all(f.get(k) == v for f in found[1:])}
        out.append(attrs)
    return out if any(out) else None


def _pixel_sizes(image: OmeImage | None, calibration: dict[str, Any] | None) -> dict[str, Any]:
    """Physical sizes and time increment with OME units: the image's, else the calibration's."""
    source = dict(calibration or {})
    if image is not None and image.pixels:
        source = image.pixels
    sizes: dict[str, Any] = {}
    for key in _PIXEL_ATTRS:
        value = source.get(key)
        if value is None:
            continue
        time = key == "TimeIncrement"
        unit = ome_unit(source.get(key + "Unit") or ("s" if time else "µm"), time=time)
        if unit is None or not np.isfinite(float(value)) or float(value) <= 0:
            continue  # a size in a unit OME cannot say is not carried rather than misread
        sizes[key] = float(value)
        sizes[key + "Unit"] = unit
    return sizes


def ome_metadata(
    image: OmeImage | None,
    *,
    shape: Sequence[int],
    axes: str,
    channel_names: Sequence[str] | None = None,
    keep_channels: bool = False,
    calibration: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    name: str | None = None,
    wavelengths: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The ``metadata`` for tifffile's OME writer of one output image.

    Parameters
    ----------
    image : OmeImage or None
        The input's image (:func:`read_image`); None for an input that is
        not OME (then ``calibration`` gives the sizes).
    shape, axes
        The output as declared (:func:`ome_layout`).
    channel_names : sequence of str, optional
        The output channel names (the sample names of an interleaved output).
    keep_channels : bool
        Whether the output channels are the input channels: then every
        channel and plane attribute of the input is carried.
    calibration : dict, optional
        ``TiffStack.calibration``: physical sizes when ``image`` has none.
    provenance : dict, optional
        Stored as ``{"pixelmix": provenance}`` JSON in the ``Description``.
    name : str, optional
        The image name when the input has none (e.g. the file's stem).
    wavelengths : sequence of float, optional
        The input channels' wavelengths in nm from other metadata (ImageJ,
        JSON, GDAL): the emission wavelengths of kept channels that OME did
        not describe.

    Returns
    -------
    dict
        ``axes``, ``Name``, ``AcquisitionDate``, sizes, ``Channel``,
        ``Plane``, ``Description`` and the sample-name ``MapAnnotation`` as
        tifffile's :class:`~tifffile.OmeXml` takes them.
    """
    image = image or OmeImage()
    names = clean_names(channel_names)
    meta: dict[str, Any] = {"axes": axes}
    title = image.name or name
    if title:
        meta["Name"] = clean_name(title)
    if image.acquisition_date:
        meta["AcquisitionDate"] = image.acquisition_date
    meta.update(_pixel_sizes(image, calibration))
    interleaved = "S" in axes and "C" not in axes
    n_channels = 1 if interleaved else shape[axes.index("C")] if "C" in axes else 1
    channels: list[dict[str, Any]] = [{} for _ in range(n_channels)]
    if keep_channels and len(image.channels) == n_channels:
        channels = [dict(c) for c in image.channels]
    if keep_channels and wavelengths is not None and len(wavelengths) == n_channels and not interleaved:
        for c, w in zip(channels, wavelengths):
            if "EmissionWavelength" not in c and "ExcitationWavelength" not in c:
                c.update(EmissionWavelength=float(w), EmissionWavelengthUnit="nm")
    if names and not interleaved and len(names) == n_channels:
        for c, n in zip(channels, names):
            c["Name"] = n
    if any(channels):
        meta["Channel"] = channels
    if interleaved and names and len(names) == shape[axes.index("S")]:
        meta["MapAnnotation"] = {"Namespace": SAMPLE_NAMES_NS, "Value": {str(i): n for i, n in enumerate(names)}}
    planes = _planes(image, axes, shape, keep_channels)
    if planes is not None:
        meta["Plane"] = planes
    if provenance is not None:
        meta["Description"] = json.dumps({PROVENANCE_KEY: provenance})
    return meta
