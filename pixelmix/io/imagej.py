"""ImageJ hyperstacks out: what an input's ImageJ metadata says that still holds after a mix.

An ImageJ hyperstack in gives an ImageJ hyperstack out (tifffile's
``imagej=True`` writer), which Fiji opens with its calibration:

- carried: the voxel depth (``spacing``), the units (``unit``, ``yunit``,
  ``zunit``, ``tunit``), the origin (``xorigin``, ``yorigin``,
  ``zorigin``), the frame interval (``finterval``, ``fps``), ``loop`` and
  the display ``mode``; the pixel size as the resolution tags (pixels per
  ``unit``);
- replaced: the slice ``Labels`` (each plane is labelled with the output
  name of its channel) and the ``pixelmix`` entry of the ``Properties``,
  which holds the provenance record as JSON;
- not carried: display ranges and LUTs (the values changed), the value
  calibration (``cf``, ``c0``, ``c1``, ``vunit``), ``Info``, ROIs and
  overlays (their positions name input channels).

ImageJ cannot hold every output (:func:`imagej_problem`): only uint8,
uint16, int16 and float32 pixels, axes in ``TZCYXS`` order, interleaved
samples only as 8-bit RGB, one series and no pyramid. Such outputs are
written as OME-TIFF instead, with the same calibration.

Examples
--------
>>> import os, tempfile
>>> import numpy as np, tifffile
>>> from pixelmix.io.imagej import imagej_metadata, read_imagej
>>> path = os.path.join(tempfile.mkdtemp(), "hs.tif")
>>> tifffile.imwrite(path, np.zeros((2, 3, 8, 8), np.uint16), imagej=True,
...                  metadata={"axes": "ZCYX", "spacing": 0.4, "unit": "um", "min": 0, "max": 9})
>>> with tifffile.TiffFile(path) as tif:
...     info = read_imagej(tif)
>>> info
{'spacing': 0.4, 'unit': 'um', 'mode': 'grayscale'}
>>> imagej_metadata(info, shape=(2, 1, 8, 8), axes="ZCYX", channel_names=["sum"])["Labels"]
['sum', 'sum']
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from .names import clean_names
from .write import PROVENANCE_KEY

__all__ = ["read_imagej", "imagej_problem", "imagej_metadata", "CARRIED"]

# The ImageJ description entries that still hold after a per-pixel mix.
CARRIED = ("spacing", "unit", "yunit", "zunit", "tunit", "xorigin", "yorigin", "zorigin", "finterval", "fps",
           "loop", "mode")
# Pixel types the ImageJ format holds (tifffile's 'BHhf').
_DTYPES = {np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int16), np.dtype(np.float32)}


def read_imagej(tif) -> dict[str, Any]:
    """The entries of an ImageJ file's description that an output carries (empty: not ImageJ).

    Parameters
    ----------
    tif : tifffile.TiffFile
    """
    if not tif.is_imagej:
        return {}
    found = tif.imagej_metadata or {}
    return {key: found[key] for key in CARRIED if key in found}


def imagej_problem(shape: Sequence[int], axes: str, dtype) -> str | None:
    """Why an ImageJ hyperstack cannot hold this output (None: it can).

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.io.imagej import imagej_problem
    >>> imagej_problem((3, 8, 8), "CYX", np.float32) is None
    True
    >>> imagej_problem((3, 8, 8), "CYX", np.float64)
    'ImageJ holds uint8, uint16, int16 and float32 pixels, not float64'
    """
    dtype = np.dtype(dtype)
    if dtype not in _DTYPES:
        return f"ImageJ holds uint8, uint16, int16 and float32 pixels, not {dtype.name}"
    positions = ["TZCYXS".find(a) for a in axes]
    if -1 in positions or positions != sorted(positions) or len(set(axes)) != len(axes):
        return f"ImageJ holds axes in TZCYXS order, not {axes}"
    if "Y" not in axes or "X" not in axes:
        return f"ImageJ images have Y and X axes, not {axes}"
    if "S" in axes and (dtype != np.uint8 or shape[axes.index("S")] != 3):
        return "ImageJ holds interleaved samples only as 8-bit RGB"
    return None


def _labels(shape: Sequence[int], axes: str, names: list[str]) -> list[str] | None:
    """One label per plane (ImageJ's TZC order): the name of the plane's channel."""
    if "C" not in axes or len(names) != shape[axes.index("C")]:
        return None
    page_axes = axes[: axes.index("Y")]
    c = page_axes.index("C")
    return [names[index[c]] for index in np.ndindex(*shape[: len(page_axes)])]


def imagej_metadata(
    info: dict[str, Any],
    *,
    shape: Sequence[int],
    axes: str,
    channel_names: Sequence[str] | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``metadata`` for tifffile's ImageJ writer of one output.

    Parameters
    ----------
    info : dict
        The input's carried entries (:func:`read_imagej`).
    shape, axes
        The output (:func:`pixelmix.io.write.output_layout`).
    channel_names : sequence of str, optional
        The output channel names: every plane is labelled with its channel's.
    provenance : dict, optional
        Stored as JSON under ``pixelmix`` in the ImageJ ``Properties``.
    """
    meta: dict[str, Any] = {"axes": axes}
    meta.update({key: info[key] for key in CARRIED if key in info})
    names = clean_names(channel_names)
    labels = _labels(shape, axes, names) if names else None
    if labels:
        meta["Labels"] = labels
    if provenance is not None:
        meta["Properties"] = {PROVENANCE_KEY: json.dumps(provenance)}
    return meta
