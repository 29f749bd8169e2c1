"""scikit-image's colour conversions, computed by pixelmix.

Drop-in replacements for the functions of :mod:`skimage.color` that are
per-pixel channel mixes (``rgb2gray``, ``rgb2hed``, ``rgb2xyz``,
``separate_stains``, ...): same names, signatures, values, dtypes, shapes
and errors, each run as one fused parallel pass with no temporary image.
Also :func:`mix_channels` (any C -> K matrix) and :func:`apply_tiled` (dask
tiling for functions that change the channel count).

pixelmix is also registered as a scikit-image backend (see
:mod:`pixelmix_skimage.backend`): scikit-image functions marked
dispatchable are routed here when pixelmix can handle the call.

Importing this package imports pixelmix (light: nothing compiles) but not
scikit-image, which is imported on the first conversion.

Examples
--------
>>> import numpy as np
>>> import pixelmix_skimage as pxs
>>> rgb = np.full((4, 4, 3), 255, dtype=np.uint8)
>>> pxs.rgb2gray(rgb)[0, 0]
np.float64(1.0)
"""

from .color import (
    combine_stains,
    hed2rgb,
    mix_channels,
    rgb2gray,
    rgb2hed,
    rgb2rgbcie,
    rgb2xyz,
    rgb2ycbcr,
    rgb2ydbdr,
    rgb2yiq,
    rgb2ypbpr,
    rgb2yuv,
    rgbcie2rgb,
    separate_stains,
    xyz2rgb,
    ycbcr2rgb,
    ydbdr2rgb,
    yiq2rgb,
    ypbpr2rgb,
    yuv2rgb,
)
from .tiled import apply_tiled

__all__ = [
    "mix_channels",
    "apply_tiled",
    "rgb2gray",
    "rgb2yuv",
    "yuv2rgb",
    "rgb2yiq",
    "yiq2rgb",
    "rgb2ypbpr",
    "ypbpr2rgb",
    "rgb2ycbcr",
    "ycbcr2rgb",
    "rgb2ydbdr",
    "ydbdr2rgb",
    "rgb2rgbcie",
    "rgbcie2rgb",
    "rgb2xyz",
    "xyz2rgb",
    "rgb2hed",
    "hed2rgb",
    "separate_stains",
    "combine_stains",
]
