"""GeoTIFF: what GDAL leaves in a TIFF, read from its first page and written back for an output.

A per-pixel mix changes the bands, never where the pixels are, so an output
of a GeoTIFF keeps its georeferencing verbatim: the GeoKey directory
(tags 34735, 34736, 34737) and the model tie-point (33922), pixel-scale
(33550) or transformation (34264) tags are copied. What the bands were
is rewritten for the output bands:

- ``GDAL_NODATA`` (42113): NaN for a float output of an input with nodata,
  the value the kernel writes for missing pixels (the input's nodata
  rounded and clipped to the range, or 0) for an integer output;
- ``GDAL_METADATA`` (42112): the dataset-level items of the input; one
  band description per output channel (``<Item name="DESCRIPTION"
  sample="i" role="description">``); and, when the output channels are the
  input channels (an elementwise program, or a map whose output names are
  its input names, such as a PCA denoiser), their wavelengths and the
  input's other band items (all but statistics, which no longer hold).

How the pixels were laid out is kept too (:mod:`pixelmix.io.write` and
:mod:`pixelmix.jobs.to_tiff` use :attr:`GeoInfo.interleave` and
:attr:`GeoInfo.tile`): pixel-interleaved in, pixel-interleaved out;
band-interleaved in, one multi-band image with planar configuration out
(GDAL reads K bands); tiled in, tiled out.

Not carried: statistics, colour tables and overviews (they describe the
input's bands); per-band nodata (GDAL has one value for a whole dataset);
a CRS or transform that a sidecar file (``.aux.xml``, ``.prj``,
``.tfw``) gives instead of the TIFF's own tags.

Examples
--------
>>> import os, tempfile
>>> import numpy as np, tifffile
>>> from pixelmix.io.geotiff import read_geotiff
>>> path = os.path.join(tempfile.mkdtemp(), "geo.tif")
>>> tifffile.imwrite(path, np.zeros((8, 8, 3), np.float32), photometric="minisblack",
...                  planarconfig="contig", extratags=[
...     (33550, "d", 3, (30.0, 30.0, 0.0)), (33922, "d", 6, (0, 0, 0, 500000.0, 4100000.0, 0)),
...     (34735, "H", 12, (1, 1, 0, 2, 1024, 0, 1, 1, 3072, 0, 1, 32633)), (42113, "s", 0, "-1")])
>>> with tifffile.TiffFile(path) as tif:
...     geo = read_geotiff(tif)
>>> geo.crs, geo.geotransform, geo.nodata, geo.interleave
('EPSG:32633', (500000.0, 30.0, 0.0, 4100000.0, 0.0, -30.0), -1.0, 'pixel')
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..plan import check_nodata
from .names import clean_names

__all__ = [
    "GeoInfo",
    "read_geotiff",
    "parse_geokeys",
    "input_nodata",
    "output_nodata",
    "output_tags",
    "gdal_metadata",
    "GEO_TAGS",
    "GDAL_METADATA",
    "GDAL_NODATA",
]

# ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory,
# GeoDoubleParams, GeoAsciiParams: copied to every output as they are.
GEO_TAGS = (33550, 33922, 34264, 34735, 34736, 34737)
GDAL_METADATA = 42112
GDAL_NODATA = 42113

# GeoKeys this module reads.
_MODEL_TYPE, _RASTER_TYPE, _CITATION = 1024, 1025, 1026
_GEOGRAPHIC, _GEOG_CITATION = 2048, 2049
_PROJECTED, _PCS_CITATION, _LINEAR_UNITS = 3072, 3073, 3076
_VERTICAL = 4096
_USER_DEFINED = 32767
_PIXEL_IS_POINT = 2
# EPSG linear units in the names OME-Zarr (UDUNITS-2) uses.
_UNITS = {9001: "meter", 9002: "foot", 9036: "kilometer"}
# Band items rewritten for the outputs rather than copied.
_WAVELENGTH_ITEMS = ("wavelength", "wavelengths", "wavelength_units", "center_wavelength")


@dataclass(frozen=True)
class GeoInfo:
    """What a GeoTIFF (or any TIFF GDAL wrote) says beyond its pixels; see :func:`read_geotiff`.

    Attributes
    ----------
    tags : tuple of (code, dtype, count, value)
        The georeferencing tags of :data:`GEO_TAGS` the file holds, to copy.
    geokeys : dict
        The GeoKey directory, parsed: key id -> value (int, float, tuple or str).
    nodata : float or None
        The file's ``GDAL_NODATA`` (NaN when it is "nan").
    metadata : str or None
        The file's ``GDAL_METADATA`` XML.
    interleave : {"pixel", "band"}
        How GDAL reads the bands: samples of a pixel together (planar
        configuration contiguous, more than one sample) or one plane per band.
    tile : (int, int) or None
        Tile height and width, None for strips.
    """

    tags: tuple = ()
    geokeys: dict = field(default_factory=dict)
    nodata: float | None = None
    metadata: str | None = None
    interleave: str = "band"
    tile: tuple[int, int] | None = None

    @property
    def crs(self) -> str | None:
        """``"EPSG:n"`` (``"EPSG:n+v"`` with a vertical CRS), ``"user-defined (citation)"``, or None.

        What GDAL reads from the GeoKeys: a registered projected or
        geographic CRS by its EPSG code; a user-defined one (code 32767) by
        the citation GDAL wrote for it (its parameters are GeoKeys, copied as
        they are).
        """
        keys = self.geokeys
        if not keys:
            return None
        model = keys.get(_MODEL_TYPE)
        code = keys.get(_PROJECTED) if model == 1 or (model is None and _PROJECTED in keys) else keys.get(_GEOGRAPHIC)
        if isinstance(code, int) and 0 < code < _USER_DEFINED:
            text = f"EPSG:{code}"
            vertical = keys.get(_VERTICAL)
            if isinstance(vertical, int) and 0 < vertical < _USER_DEFINED:
                text += f"+{vertical}"
            return text
        if model is None and code is None:
            return None
        citation = next((keys[k] for k in (_PCS_CITATION, _CITATION, _GEOG_CITATION) if isinstance(keys.get(k), str)), "")
        return f"user-defined ({citation})" if citation else "user-defined"

    @property
    def crs_name(self) -> str | None:
        """The CRS's name as GDAL cites it (``GTCitationGeoKey``), or None."""
        for key in (_CITATION, _PCS_CITATION, _GEOG_CITATION):
            if isinstance(self.geokeys.get(key), str) and self.geokeys[key]:
                return self.geokeys[key]
        return None

    @property
    def geotransform(self) -> tuple[float, ...] | None:
        """GDAL's geotransform ``(x0, dx, rx, y0, ry, dy)``, as rasterio's ``transform.to_gdal()``.

        From ModelTransformation, else from the first tie point and the
        pixel scale; shifted by half a pixel for PixelIsPoint rasters, as
        GDAL does. None for rasters placed by ground control points only.
        """
        tags = {code: value for code, _, _, value in self.tags}
        if 34264 in tags:
            m = [float(v) for v in tags[34264]]
            gt = [m[3], m[0], m[1], m[7], m[4], m[5]]
        elif 33922 in tags and 33550 in tags:
            tie = [float(v) for v in tags[33922]]
            scale = [float(v) for v in tags[33550]]
            if len(tie) < 6 or len(scale) < 2:
                return None
            i, j, x, y = tie[0], tie[1], tie[3], tie[4]
            gt = [x - i * scale[0], scale[0], 0.0, y + j * scale[1], 0.0, -scale[1]]
        else:
            return None
        if self.geokeys.get(_RASTER_TYPE) == _PIXEL_IS_POINT:
            gt[0] -= 0.5 * gt[1] + 0.5 * gt[2]
            gt[3] -= 0.5 * gt[4] + 0.5 * gt[5]
        return tuple(gt)

    @property
    def pixel_size(self) -> tuple[float, float] | None:
        """``(y, x)`` size of a pixel in CRS units, when the raster is not rotated; else None."""
        gt = self.geotransform
        if gt is None or gt[2] != 0 or gt[4] != 0:
            return None
        return abs(gt[5]), abs(gt[1])

    @property
    def unit(self) -> str | None:
        """The CRS's linear unit in OME-Zarr's words (``"meter"``, ``"foot"``), None when not linear or unknown."""
        if self.geokeys.get(_MODEL_TYPE) == 2:
            return None  # degrees: not a length
        code = self.geokeys.get(_LINEAR_UNITS, 9001 if _PROJECTED in self.geokeys else None)
        return _UNITS.get(code)

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary: ``crs``, ``crs_name``, ``geotransform``, ``nodata``, ``interleave``, ``tile``.

        NaN nodata is the string ``"nan"`` (JSON has no NaN).
        """
        nodata = self.nodata
        if nodata is not None and not math.isfinite(nodata):
            nodata = str(nodata)
        return {
            "crs": self.crs,
            "crs_name": self.crs_name,
            "geotransform": None if self.geotransform is None else list(self.geotransform),
            "nodata": nodata,
            "interleave": self.interleave,
            "tile": None if self.tile is None else list(self.tile),
        }


def parse_geokeys(directory: Sequence[int], doubles: Sequence[float] = (), ascii: str = "") -> dict[int, Any]:
    """The GeoKey directory (tag 34735) as ``{key id: value}``.

    Values stored in the directory are ints; those in GeoDoubleParams
    (34736) floats (tuples when several); those in GeoAsciiParams (34737)
    strings without GDAL's ``|`` terminator.

    Examples
    --------
    >>> from pixelmix.io.geotiff import parse_geokeys
    >>> parse_geokeys((1, 1, 0, 2, 1024, 0, 1, 2, 2049, 34737, 7, 0), ascii="WGS 84|")
    {1024: 2, 2049: 'WGS 84'}
    """
    d = [int(v) for v in directory]
    if len(d) < 4:
        return {}
    doubles = [doubles] if isinstance(doubles, (int, float)) else list(doubles)
    keys: dict[int, Any] = {}
    for i in range(min(d[3], (len(d) - 4) // 4)):
        key, where, count, value = d[4 + 4 * i : 8 + 4 * i]
        if where == 0:
            keys[key] = value
        elif where == 34736:
            got = tuple(float(v) for v in doubles[value : value + count])
            keys[key] = got[0] if count == 1 and got else got
        elif where == 34737:
            keys[key] = ascii[value : value + count].rstrip("|\x00").strip()
        elif where == 34735:
            keys[key] = tuple(d[value : value + count])
    return keys


def _nodata_text(text) -> float | None:
    try:
        return float(str(text).strip().strip("\x00"))
    except ValueError:
        return None


def read_geotiff(tif) -> GeoInfo | None:
    """The GeoTIFF and GDAL tags of an open ``tifffile.TiffFile``'s first page; None if it has none.

    OME and ImageJ files are never read as GeoTIFF (their own metadata
    says what their axes are).
    """
    if tif.is_ome or tif.is_imagej:
        return None
    page = tif.pages.first
    found = {code: page.tags[code] for code in (*GEO_TAGS, GDAL_METADATA, GDAL_NODATA) if code in page.tags}
    if not found:
        return None
    tags = tuple(
        (code, int(tag.dtype), int(tag.count), tag.value) for code, tag in found.items() if code in GEO_TAGS
    )
    keys: dict[int, Any] = {}
    if 34735 in found:
        ascii_params = found[34737].value if 34737 in found else ""
        keys = parse_geokeys(
            found[34735].value,
            found[34736].value if 34736 in found else (),
            ascii_params if isinstance(ascii_params, str) else "",
        )
    metadata = found[GDAL_METADATA].value if GDAL_METADATA in found else None
    return GeoInfo(
        tags=tags,
        geokeys=keys,
        nodata=_nodata_text(found[GDAL_NODATA].value) if GDAL_NODATA in found else None,
        metadata=metadata if isinstance(metadata, str) else None,
        interleave="pixel" if page.samplesperpixel > 1 and page.planarconfig == 1 else "band",
        tile=(int(page.tilelength), int(page.tilewidth)) if page.is_tiled else None,
    )


def input_nodata(geo: GeoInfo | None, dtype, nodata=None, use_file: bool = True) -> float | None:
    """The input value treated as missing: ``nodata`` if given, else the file's own (when ``use_file``).

    The file's value is used only when pixels of ``dtype`` can hold it: a
    NaN nodata needs no value (NaN is always missing), and one outside the
    range of the data (GDAL allows -9999 for uint16) marks no pixel.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.io.geotiff import GeoInfo, input_nodata
    >>> geo = GeoInfo(nodata=-9999.0)
    >>> input_nodata(geo, np.int16), input_nodata(geo, np.uint16), input_nodata(geo, np.int16, 7)
    (-9999.0, None, 7)
    >>> input_nodata(geo, np.int16, use_file=False) is None
    True
    """
    if nodata is not None or not use_file or geo is None or geo.nodata is None:
        return nodata
    try:
        return check_nodata(geo.nodata, np.dtype(dtype))
    except (TypeError, ValueError):
        return None


def output_nodata(nodata: float | None, out_dtype, *, nan: bool = False) -> float | None:
    """The nodata value of an output, or None when its input has none.

    ``nodata`` is the input value treated as missing; ``nan`` says the
    input declares NaN as its nodata. A float output marks missing pixels
    NaN; an integer output holds what the kernel writes there: ``nodata``
    rounded and clipped to the range, or 0.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.io.geotiff import output_nodata
    >>> output_nodata(-9999.0, np.float32), output_nodata(-9999.0, np.uint8), output_nodata(None, np.int16, nan=True)
    (nan, 0.0, 0.0)
    """
    if nodata is None and not nan:
        return None
    out_dtype = np.dtype(out_dtype)
    if out_dtype.kind == "f":
        return math.nan
    info = np.iinfo(out_dtype)
    return 0.0 if nodata is None else float(np.clip(np.rint(nodata), info.min, info.max))


def _nodata_tag(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return str(int(value)) if value == int(value) and abs(value) < 2**63 else repr(value)


def _items(text: str | None) -> list[ET.Element]:
    if not text:
        return []
    try:
        return list(ET.fromstring(text).iter("Item"))
    except ET.ParseError:
        return []


def _carried(item: ET.Element, keeps_channels: bool) -> bool:
    """Whether an input ``GDAL_METADATA`` item still holds for the output."""
    name = (item.get("name") or "").lower()
    if name.startswith("statistics_"):
        return False  # the values changed
    if item.get("sample") is None:
        return True  # about the dataset: where, when, by what
    if not keeps_channels:
        return False  # about the input's bands
    return name not in _WAVELENGTH_ITEMS and name != "description" and item.get("role") != "description"


def gdal_metadata(
    source: str | None,
    names: Sequence[str] | None = None,
    wavelengths: Sequence[float] | None = None,
    *,
    keeps_channels: bool = False,
) -> str | None:
    """The ``GDAL_METADATA`` XML of an output, or None when it would be empty.

    Parameters
    ----------
    source : str or None
        The input's ``GDAL_METADATA``: its dataset items are kept, and its
        band items too (but statistics) when ``keeps_channels``.
    names : sequence of str, optional
        The output band descriptions.
    wavelengths : sequence of float, optional
        The output bands' wavelengths in nm (given only when they still hold).
    keeps_channels : bool
        Whether output band i is input band i.

    Examples
    --------
    >>> from pixelmix.io.geotiff import gdal_metadata
    >>> print(gdal_metadata(None, ["PC1"], [500.0]))
    <GDALMetadata><Item name="DESCRIPTION" sample="0" role="description">PC1</Item><Item name="wavelength" sample="0">500.0</Item><Item name="wavelength_units" sample="0">nm</Item></GDALMetadata>
    """
    root = ET.Element("GDALMetadata")
    for item in _items(source):
        if _carried(item, keeps_channels):
            copy = ET.SubElement(root, "Item", dict(item.attrib))
            copy.text = item.text
    for i, name in enumerate(clean_names(names) or []):
        ET.SubElement(root, "Item", {"name": "DESCRIPTION", "sample": str(i), "role": "description"}).text = name
    for i, w in enumerate(wavelengths or []):
        ET.SubElement(root, "Item", {"name": "wavelength", "sample": str(i)}).text = repr(float(w))
        ET.SubElement(root, "Item", {"name": "wavelength_units", "sample": str(i)}).text = "nm"
    if not len(root):
        return None
    return ET.tostring(root, encoding="unicode")


def output_tags(
    geo: GeoInfo,
    *,
    names: Sequence[str] | None = None,
    wavelengths: Sequence[float] | None = None,
    keeps_channels: bool = False,
    nodata: float | None = None,
) -> list[tuple]:
    """tifffile ``extratags`` for the output of a GeoTIFF: georeferencing, GDAL metadata, nodata.

    Parameters
    ----------
    geo : GeoInfo
        The input's (:func:`read_geotiff`).
    names, wavelengths, keeps_channels
        As for :func:`gdal_metadata`.
    nodata : float, optional
        The output's nodata (:func:`output_nodata`); None writes none.

    Examples
    --------
    >>> import math
    >>> from pixelmix.io.geotiff import GeoInfo, output_tags
    >>> geo = GeoInfo(tags=((33550, 12, 3, (30.0, 30.0, 0.0)),))
    >>> [(code, value) for code, _, _, value, _ in output_tags(geo, names=["a"], nodata=math.nan)][::2]
    [(33550, (30.0, 30.0, 0.0)), (42113, 'nan')]
    """
    tags = [(code, dtype, count, value, True) for code, dtype, count, value in geo.tags]
    xml = gdal_metadata(geo.metadata, names, wavelengths, keeps_channels=keeps_channels)
    if xml is not None:
        tags.append((GDAL_METADATA, 2, 0, xml, True))
    if nodata is not None:
        tags.append((GDAL_NODATA, 2, 0, _nodata_tag(nodata), True))
    return tags
