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

from . import color
from .color import *  # noqa: F403 (the functions named in color.__all__)
from .tiled import apply_tiled

__all__ = [*color.__all__, "apply_tiled"]
