"""OME-Zarr (v0.4) metadata of an output image: axes with units, scales, omero channels.

What :class:`pixelmix.io.zarr.ZarrImage` writes so that the group validates
against the OME-Zarr 0.4 model (``ome_zarr_models.v04.image.Image``) and
viewers (napari, OMERO, Fiji's N5 reader) show it calibrated:

- ``multiscales``: the axes (``t``, ``c``, ``z``, ``y``, ``x``) with their
  type and, for space and time, their unit in OME-Zarr's words
  (``micrometer``, ``second``, ...); one dataset per pyramid level, whose
  scale is the input's pixel size (OME or ImageJ calibration, or a
  GeoTIFF's pixel size in CRS units), times the level's reduction;
- ``omero``: one channel per output channel with its label, a colour (the
  input channel's own when the output channels are the input channels,
  else white for one channel and a fixed palette for more) and a display
  window: ``min``/``max`` the dtype's range for integers, the data's range
  for floats, ``start``/``end`` the data's range.

Examples
--------
>>> import numpy as np
>>> from pixelmix.io.ome_zarr import axes_and_scale, omero
>>> axes_and_scale(["c", "y", "x"], {"PhysicalSizeX": 0.5, "PhysicalSizeXUnit": "µm",
...                                  "PhysicalSizeY": 0.5, "PhysicalSizeYUnit": "µm"})[1]
[1.0, 0.5, 0.5]
>>> omero(["DAPI"], np.uint16)["channels"][0]["window"]
{'min': 0.0, 'max': 65535.0, 'start': 0.0, 'end': 65535.0}
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .ome import ome_unit

__all__ = ["axes_and_scale", "omero", "windows", "ngff_unit", "zarr_calibration", "PALETTE"]

_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
# OME units -> the UDUNITS-2 names OME-Zarr uses.
_NGFF_UNITS = {
    "Å": "angstrom", "pm": "picometer", "nm": "nanometer", "µm": "micrometer", "mm": "millimeter",
    "cm": "centimeter", "dm": "decimeter", "m": "meter", "km": "kilometer", "in": "inch", "ft": "foot",
    "yd": "yard", "mi": "mile", "pc": "parsec", "ps": "picosecond", "ns": "nanosecond", "µs": "microsecond",
    "ms": "millisecond", "s": "second", "min": "minute", "h": "hour", "d": "day",
}
# Colours of the output channels when they are not the input's: white, then a palette.
PALETTE = ("FF0000", "00FF00", "0000FF", "FFFF00", "FF00FF", "00FFFF", "FF8000", "8000FF")


def ngff_unit(unit, *, time: bool = False) -> str | None:
    """``unit`` (OME's, ImageJ's or OME-Zarr's spelling) in OME-Zarr's words, or None.

    Examples
    --------
    >>> from pixelmix.io.ome_zarr import ngff_unit
    >>> ngff_unit("µm"), ngff_unit("micron"), ngff_unit("meter"), ngff_unit("s", time=True)
    ('micrometer', 'micrometer', 'meter', 'second')
    """
    if unit is None:
        return None
    if str(unit) in _NGFF_UNITS.values():
        return str(unit)
    return _NGFF_UNITS.get(ome_unit(unit, time=time) or "")


def zarr_calibration(stack) -> dict[str, Any]:
    """``stack.calibration``, with a GeoTIFF's pixel size (in CRS units) as its X and Y sizes.

    ``stack`` is a :class:`~pixelmix.io.read.TiffStack`; its ``geo``
    (:class:`pixelmix.io.geotiff.GeoInfo`), when it has one, gives the
    pixel size of an unrotated raster and the CRS's linear unit (none for
    degrees).
    """
    cal = dict(stack.calibration)
    geo = getattr(stack, "geo", None)
    size = None if geo is None else geo.pixel_size
    if size is not None:
        for key, value in zip(("PhysicalSizeY", "PhysicalSizeX"), size):
            cal[key] = float(value)
            cal.pop(key + "Unit", None)
            if geo.unit:
                cal[key + "Unit"] = geo.unit
    return cal


def axes_and_scale(
    names: Sequence[str], calibration: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], list[float]]:
    """The ``multiscales`` axes (name, type, unit) and the level-0 scale of ``names`` (``"tczyx"`` letters)."""
    calibration = calibration or {}
    axes, scale = [], []
    for name in names:
        axis: dict[str, Any] = {"name": name, "type": _TYPES[name]}
        key = "TimeIncrement" if name == "t" else f"PhysicalSize{name.upper()}" if name in "zyx" else None
        size = calibration.get(key) if key else None
        if size is not None and math.isfinite(float(size)) and float(size) > 0:
            time = name == "t"
            unit = ngff_unit(calibration.get(key + "Unit") or ("s" if time else "µm"), time=time)
            if unit:
                axis["unit"] = unit
            scale.append(float(size))
        else:
            scale.append(1.0)
        axes.append(axis)
    return axes, scale


def _color(value) -> str | None:
    """An OME ``Color`` (a signed 32-bit RGBA integer) as ``RRGGBB``, or None."""
    try:
        rgba = int(value) & 0xFFFFFFFF
    except (TypeError, ValueError):
        return None
    return f"{rgba >> 8:06X}"


def omero(
    channel_names: Sequence[str] | None, dtype, *, n: int | None = None, colors: Sequence | None = None
) -> dict[str, Any]:
    """The ``omero`` attribute of an image of ``n`` channels (default one per name) of ``dtype``.

    ``colors`` are the input's OME ``Color`` values, given when the output
    channels are the input channels. Windows start at the dtype's range
    (integers) or [0, 1] (floats) until :func:`windows` sets them from the data.
    """
    n = len(channel_names) if n is None else n
    names = list(channel_names) if channel_names is not None and len(channel_names) == n else None
    dtype = np.dtype(dtype)
    lo, hi = (float(np.iinfo(dtype).min), float(np.iinfo(dtype).max)) if dtype.kind in "iu" else (0.0, 1.0)
    channels = []
    for i in range(n):
        color = _color(colors[i]) if colors is not None and len(colors) == n else None
        if color is None:
            color = "FFFFFF" if n == 1 else PALETTE[i % len(PALETTE)]
        channel: dict[str, Any] = {"color": color, "active": True,
                                   "window": {"min": lo, "max": hi, "start": lo, "end": hi}}
        channel["label"] = names[i] if names else f"channel {i}"
        channels.append(channel)
    return {"version": "0.4", "channels": channels, "rdefs": {"model": "color" if n > 1 else "greyscale"}}


def windows(attrs: dict[str, Any], low: np.ndarray, high: np.ndarray, dtype) -> dict[str, Any]:
    """``attrs["omero"]`` with each channel's window set from its data range (``low``, ``high``).

    Integers keep the dtype's range as ``min``/``max``; floats take the
    data's. A channel without finite data keeps its window.
    """
    dtype = np.dtype(dtype)
    out = dict(attrs)
    channels = [dict(c) for c in out["channels"]]
    for channel, lo, hi in zip(channels, low, high):
        if not (math.isfinite(lo) and math.isfinite(hi)):
            continue
        window = dict(channel["window"], start=float(lo), end=float(hi))
        if dtype.kind == "f":
            window.update(min=float(lo), max=float(hi))
        channel["window"] = window
    out["channels"] = channels
    return out
