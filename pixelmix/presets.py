"""Ready-made mixers: colour spaces, stain separation, band binning, spectral rendering.

Look presets up by name (what ``pixelmix apply --preset NAME`` does)::

    >>> from pixelmix import presets
    >>> "hed" in presets.names()
    True
    >>> presets.get("rgb2gray")
    Mixer(3 -> 1)

Colour-space and stain presets reproduce scikit-image's functions
(``rgb2gray``, ``rgb2yuv``, ..., ``separate_stains(rgb, hed_from_rgb)``),
matrices included, for RGB input scaled to [0, 1]; pass ``scale=255`` (or
``65535``) to feed uint8 (uint16) images directly, as scikit-image's
``img_as_float`` would scale them.

Spectral rendering (:func:`spectral_to_xyz`, :func:`spectral_to_srgb`)
integrates a reflectance cube sampled at any wavelengths against the CIE
1931 2-degree colour-matching functions under CIE D65; the tables ship in
``pixelmix/data/cie/`` (see ``data/cie/README.md`` for their source).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any, Callable

import numpy as np

from . import ops
from .mixer import Mixer
from .ops import Program

__all__ = [
    "names",
    "get",
    "colour_space",
    "stain_separation",
    "band_binning",
    "spectral_to_xyz",
    "spectral_to_srgb",
    "cie_tables",
    "SRGB_FROM_XYZ",
]

# name -> (skimage.color.colorconv matrix name, offsets added after the matrix)
_SPACES = {
    "yuv": ("yuv_from_rgb", None),
    "yiq": ("yiq_from_rgb", None),
    "ypbpr": ("ypbpr_from_rgb", None),
    "ycbcr": ("ycbcr_from_rgb", (16.0, 128.0, 128.0)),
    "ydbdr": ("ydbdr_from_rgb", None),
    "rgbcie": ("rgbcie_from_rgb", None),
}
# name -> (matrix name, stain names)
_STAINS = {
    "hed": ("hed_from_rgb", ("hematoxylin", "eosin", "dab")),
    "hdx": ("hdx_from_rgb", ("hematoxylin", "dab", "residual")),
    "fgx": ("fgx_from_rgb", ("feulgen", "light_green", "residual")),
    "bex": ("bex_from_rgb", ("methyl_blue", "eosin", "residual")),
    "rbd": ("rbd_from_rgb", ("fast_red", "fast_blue", "dab")),
    "gdx": ("gdx_from_rgb", ("methyl_green", "dab", "residual")),
    "hax": ("hax_from_rgb", ("hematoxylin", "aec", "residual")),
    "bro": ("bro_from_rgb", ("aniline_blue", "azocarmine", "residual")),
    "bpx": ("bpx_from_rgb", ("methyl_blue", "ponceau_fuchsin", "residual")),
    "ahx": ("ahx_from_rgb", ("alcian_blue", "hematoxylin", "residual")),
    "hpx": ("hpx_from_rgb", ("hematoxylin", "pas", "residual")),
}
_RGB = ("R", "G", "B")

# IEC 61966-2-1 sRGB: the XYZ -> linear RGB matrix derived from the sRGB
# primaries and the D65 white point (x, y) = (0.3127, 0.3290), as
# colour-science derives it (not the 4-digit rounded table).
def _srgb_from_xyz() -> np.ndarray:
    primaries = np.array([[0.64, 0.33], [0.30, 0.60], [0.15, 0.06]])
    white = np.array([0.3127, 0.3290])

    def xyz(xy):
        return np.array([xy[0] / xy[1], 1.0, (1 - xy[0] - xy[1]) / xy[1]])

    p = np.column_stack([xyz(xy) for xy in primaries])
    s = np.linalg.solve(p, xyz(white))
    return np.linalg.inv(p * s)


SRGB_FROM_XYZ = _srgb_from_xyz()


def _skimage_matrix(name: str) -> np.ndarray:
    from skimage.color import colorconv

    return np.asarray(getattr(colorconv, name), dtype=np.float64)


def _scale_step(scale: float) -> Mixer | None:
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number (the input value of full intensity), got {scale}")
    return None if scale == 1.0 else Mixer(np.eye(3) / scale, input_names=_RGB, output_names=_RGB)


def rgb2gray(*, scale: float = 1.0) -> Mixer:
    """Luminance as scikit-image's ``rgb2gray``: ``0.2125 R + 0.7154 G + 0.0721 B``.

    Examples
    --------
    >>> from pixelmix import presets
    >>> presets.rgb2gray(scale=255).weights.round(6)
    array([[0.000833, 0.002805, 0.000283]])
    """
    w = _skimage_matrix("gray_from_rgb")[:1] / _check_scale(scale)
    return Mixer(w, input_names=_RGB, output_names=["gray"], metadata={"method": "preset", "preset": "rgb2gray"})


def _check_scale(scale: float) -> float:
    _scale_step(scale)
    return float(scale)


def colour_space(name: str, *, scale: float = 1.0) -> Mixer | Program:
    """RGB to a colour space, as scikit-image's ``rgb2<name>``.

    Parameters
    ----------
    name : {"yuv", "yiq", "ypbpr", "ycbcr", "ydbdr", "rgbcie", "xyz"}
        ``"xyz"`` first linearises sRGB (a Program: ``srgb_decode`` then the
        matrix), like ``skimage.color.rgb2xyz``; the others are one matrix
        (``ycbcr`` adds scikit-image's offsets 16, 128, 128).
    scale : float
        Input value of full intensity (255 for uint8 data).

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix import presets
    >>> presets.colour_space("yuv")(np.array([1.0, 1.0, 1.0])).round(6)
    array([ 1.,  0., -0.])
    """
    scale = _check_scale(scale)
    meta = {"method": "preset", "preset": name, "scale": scale}
    if name == "xyz":
        matrix = Mixer(_skimage_matrix("xyz_from_rgb"), input_names=_RGB, output_names=["X", "Y", "Z"], metadata=meta)
        head = _scale_step(scale)
        return Program(([head] if head is not None else []) + [ops.srgb_decode(), matrix])
    if name not in _SPACES:
        raise ValueError(f"unknown colour space {name!r}; choose from {', '.join(sorted(_SPACES) + ['xyz'])}")
    matrix_name, offsets = _SPACES[name]
    w = _skimage_matrix(matrix_name) / scale
    return Mixer(w, offsets, input_names=_RGB, output_names=_space_channels(name), metadata=meta)


def _space_channels(name: str) -> list[str]:
    return {
        "yuv": ["Y", "U", "V"],
        "yiq": ["Y", "I", "Q"],
        "ypbpr": ["Y", "Pb", "Pr"],
        "ycbcr": ["Y", "Cb", "Cr"],
        "ydbdr": ["Y", "Db", "Dr"],
        "rgbcie": ["R_cie", "G_cie", "B_cie"],
    }[name]


def stain_separation(name: str = "hed", *, scale: float = 1.0) -> Program:
    """Colour deconvolution into stain densities, as scikit-image's ``separate_stains``.

    The program clips the input at 1e-6, takes the log, applies
    ``conv_matrix`` scaled by ``1 / log(1e-6)`` and clips negative densities
    to 0: ``separate_stains(rgb, <name>_from_rgb)`` in one fused pass.

    Parameters
    ----------
    name : str
        One of scikit-image's stain matrices: "hed", "hdx", "fgx", "bex",
        "rbd", "gdx", "hax", "bro", "bpx", "ahx", "hpx".
    scale : float
        Input value of full intensity (255 for uint8 data).

    Examples
    --------
    >>> from pixelmix import presets
    >>> presets.stain_separation("hed")
    Program([log(1e-06), Mixer(3 -> 3), relu()])
    """
    if name not in _STAINS:
        raise ValueError(f"unknown stain matrix {name!r}; choose from {', '.join(sorted(_STAINS))}")
    scale = _check_scale(scale)
    matrix_name, stains = _STAINS[name]
    conv = _skimage_matrix(matrix_name)
    log_adjust = np.log(1e-6)
    steps: list[Any] = []
    if scale != 1.0:
        # log(max(v / s, 1e-6)) = log(max(v, 1e-6 s)) - log(s): fold the scale into the affine map.
        steps.append(ops.log(1e-6 * scale))
        bias = -np.log(scale) * conv.sum(axis=0) / log_adjust
    else:
        steps.append(ops.log(1e-6))
        bias = None
    steps.append(
        Mixer(conv.T / log_adjust, bias, input_names=_RGB, output_names=list(stains),
              metadata={"method": "preset", "preset": name, "scale": scale})
    )
    steps.append(ops.relu())
    return Program(steps)


def band_binning(n_bands: int, factor: int, *, mode: str = "mean", wavelengths=None) -> Mixer:
    """Combine each run of ``factor`` adjacent bands into one: C bands -> ceil(C / factor).

    Parameters
    ----------
    n_bands : int
        C, the number of input bands.
    factor : int
        Bands per bin; a last, shorter bin takes the remaining bands.
    mode : {"mean", "sum"}
        Average or add the bands of each bin.
    wavelengths : array_like, optional
        Band centres; outputs are then named by their bin's mean wavelength.

    Examples
    --------
    >>> from pixelmix import presets
    >>> presets.band_binning(5, 2).weights
    array([[0.5, 0.5, 0. , 0. , 0. ],
           [0. , 0. , 0.5, 0.5, 0. ],
           [0. , 0. , 0. , 0. , 1. ]])
    """
    for label, v in (("n_bands", n_bands), ("factor", factor)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{label} must be a positive integer, got {v!r}")
    if factor > n_bands:
        raise ValueError(f"factor={factor} is larger than the number of bands ({n_bands})")
    if mode not in ("mean", "sum"):
        raise ValueError(f"mode must be 'mean' or 'sum', got {mode!r}")
    n_out = -(-n_bands // factor)
    w = np.zeros((n_out, n_bands))
    for i in range(n_out):
        lo, hi = i * factor, min((i + 1) * factor, n_bands)
        w[i, lo:hi] = 1.0 / (hi - lo) if mode == "mean" else 1.0
    names = [f"bin{i + 1}" for i in range(n_out)]
    if wavelengths is not None:
        wl = np.asarray(wavelengths, dtype=np.float64)
        if wl.shape != (n_bands,):
            raise ValueError(f"wavelengths has {wl.size} values but there are {n_bands} bands")
        names = [f"{(np.abs(row) > 0) @ wl / np.count_nonzero(row):g}" for row in w]
    return Mixer(w, output_names=names, metadata={"method": "preset", "preset": "band_binning",
                                                  "factor": int(factor), "mode": mode})


@functools.lru_cache(maxsize=None)
def cie_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The shipped CIE tables: ``(cmf_wavelengths, cmf (N, 3), d65_wavelengths, d65)``."""
    folder = resources.files("pixelmix") / "data" / "cie"

    def read(name):
        with (folder / name).open("r", encoding="utf-8") as f:
            return np.loadtxt(f, delimiter=",", comments="#", skiprows=2)

    cmf = read("cie1931_2deg_cmf.csv")
    d65 = read("cie_d65_spd.csv")
    for arr in (cmf, d65):
        arr.flags.writeable = False
    return cmf[:, 0], cmf[:, 1:], d65[:, 0], d65[:, 1]


def _band_widths(wl: np.ndarray) -> np.ndarray:
    """Trapezoid weights: each sample stands for half the gap to each neighbour."""
    if wl.size == 1:
        return np.ones(1)
    gaps = np.diff(wl)
    widths = np.zeros_like(wl)
    widths[:-1] += gaps / 2
    widths[1:] += gaps / 2
    return widths


def spectral_to_xyz(wavelengths, *, illuminant="D65", observer: str = "CIE 1931 2", scale: float = 1.0) -> Mixer:
    """A mixer from a reflectance cube at ``wavelengths`` (nm) to CIE XYZ.

    ``X = k sum_i R(l_i) S(l_i) xbar(l_i) w_i`` (Y, Z alike), with the
    colour-matching functions and illuminant interpolated linearly to the
    band centres, trapezoid weights ``w_i``, and ``k`` chosen so that a
    perfect reflector (R = 1 in every band) has Y = 1. Bands outside the
    tables (CMF 360-830 nm) get weight 0. A range narrower than the
    visible one (e.g. 400-700 nm) shifts white slightly (by ~0.2% there).

    Parameters
    ----------
    wavelengths : array_like, shape (C,)
        Band centres in nm, increasing.
    illuminant : "D65", "E" or array_like
        CIE D65 (default), the equal-energy illuminant E, or the illuminant's
        relative power at each of ``wavelengths``.
    observer : "CIE 1931 2"
        The standard observer (only the 2-degree 1931 observer ships).
    scale : float
        The input value of a perfect reflector: 1 for reflectance, e.g.
        10000 for reflectance stored as integers x 10000 (as many
        remote-sensing products are).

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix import presets
    >>> xyz = presets.spectral_to_xyz(np.arange(380, 781, 5))
    >>> xyz(np.ones(81)).round(3)        # a perfect reflector: D65 white
    array([0.95 , 1.   , 1.089])
    """
    if observer not in ("CIE 1931 2", "CIE 1931 2 Degree Standard Observer"):
        raise ValueError(f"observer={observer!r} is not available; pixelmix ships 'CIE 1931 2'")
    wl = np.asarray(wavelengths, dtype=np.float64).ravel()
    if wl.size < 1 or not np.all(np.isfinite(wl)):
        raise ValueError("wavelengths must be a non-empty list of finite numbers (nm)")
    if wl.size > 1 and np.any(np.diff(wl) <= 0):
        raise ValueError("wavelengths must be strictly increasing (band centres in nm)")
    if wl.max() < 100 or wl.min() > 5000:
        raise ValueError(f"wavelengths {wl.min():g}..{wl.max():g} do not look like nanometres")
    cmf_wl, cmf, d65_wl, d65 = cie_tables()
    bar = np.column_stack([np.interp(wl, cmf_wl, cmf[:, j], left=0.0, right=0.0) for j in range(3)])
    if isinstance(illuminant, str):
        if illuminant == "D65":
            spd = np.interp(wl, d65_wl, d65, left=0.0, right=0.0)
        elif illuminant == "E":
            spd = np.ones_like(wl)
        else:
            raise ValueError(f"illuminant={illuminant!r}: use 'D65', 'E' or an array of relative powers")
        label = illuminant
    else:
        spd = np.asarray(illuminant, dtype=np.float64).ravel()
        if spd.shape != wl.shape:
            raise ValueError(f"illuminant has {spd.size} values but there are {wl.size} wavelengths")
        label = "custom"
    w = (bar * (spd * _band_widths(wl))[:, None]).T
    y_white = w[1].sum()
    if not y_white > 0:
        raise ValueError(
            f"wavelengths {wl.min():g}..{wl.max():g} nm hold no visible light (Y of white is 0); "
            f"the colour-matching functions cover 360-830 nm"
        )
    scale = _check_scale(scale)
    return Mixer(
        w / (y_white * scale),
        input_names=[f"{v:g}" for v in wl],
        output_names=["X", "Y", "Z"],
        metadata={"method": "preset", "preset": "spectral_to_xyz", "wavelengths": wl,
                  "illuminant": label, "observer": "CIE 1931 2", "scale": scale},
    )


def spectral_to_srgb(
    wavelengths, *, illuminant="D65", observer: str = "CIE 1931 2", scale: float = 1.0
) -> Program:
    """A program from a reflectance cube to gamma-encoded sRGB in [0, 1].

    :func:`spectral_to_xyz`, then the sRGB matrix (folded into one affine
    map), then the sRGB transfer function and a clip to [0, 1]: one fused
    pass. A perfect reflector under D65 renders white. ``scale`` is the
    input value of a perfect reflector (e.g. 10000 for reflectance x 10000;
    ``pixelmix apply --preset spectral_to_srgb --preset-option scale=10000``).

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix import presets
    >>> srgb = presets.spectral_to_srgb(np.arange(380, 781, 5))
    >>> srgb
    Program([Mixer(81 -> 3), srgb_encode(), clip(0.0, 1.0)])
    >>> srgb(np.full(81, 0.5)).round(2)  # a grey reflecting half the light
    array([0.74, 0.74, 0.74])
    >>> presets.spectral_to_srgb(np.arange(380, 781, 5), scale=10000)(np.full(81, 5000, np.uint16)).round(2)
    array([0.74, 0.74, 0.74], dtype=float32)
    """
    xyz = spectral_to_xyz(wavelengths, illuminant=illuminant, observer=observer, scale=scale)
    to_rgb = Mixer(SRGB_FROM_XYZ, input_names=["X", "Y", "Z"], output_names=list(_RGB))
    return Program([xyz, to_rgb, ops.srgb_encode(), ops.clip(0.0, 1.0)])


_REGISTRY: dict[str, Callable[..., Mixer | Program]] = {
    "rgb2gray": rgb2gray,
    **{name: functools.partial(colour_space, name) for name in (*_SPACES, "xyz")},
    **{name: functools.partial(stain_separation, name) for name in _STAINS},
    "band_binning": band_binning,
    "spectral_to_xyz": spectral_to_xyz,
    "spectral_to_srgb": spectral_to_srgb,
}


def names() -> list[str]:
    """The names :func:`get` knows, sorted.

    Examples
    --------
    >>> from pixelmix import presets
    >>> presets.names()[:3]
    ['ahx', 'band_binning', 'bex']
    """
    return sorted(_REGISTRY)


def get(name: str, **kwargs) -> Mixer | Program:
    """The preset called ``name``, built with ``kwargs``.

    Colour and stain presets take ``scale=`` (input value of full
    intensity); ``band_binning`` needs ``n_bands`` and ``factor``; the
    spectral presets need ``wavelengths``.

    Examples
    --------
    >>> from pixelmix import presets
    >>> presets.get("band_binning", n_bands=6, factor=3).n_outputs
    2
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(names())}") from None
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise TypeError(f"preset {name!r}: {exc}") from exc
