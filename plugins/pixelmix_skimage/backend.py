"""pixelmix as a scikit-image backend (scikit-image's experimental dispatching).

scikit-image finds backends through two entry point groups, both named
``pixelmix`` in pixelmix's ``pyproject.toml``:

- ``skimage_backend_infos``: :func:`info`, which lists the functions
  implemented. scikit-image calls it once, when it first looks for
  backends, so it imports nothing heavy (not pixelmix, not Numba).
- ``skimage_backends``: this module, which scikit-image loads only when a
  dispatchable function that pixelmix implements is called. It asks
  :func:`can_has` whether pixelmix takes the call, then calls the function
  :func:`get_implementation` returns.

:func:`can_has` declines, without importing anything, every call whose
result pixelmix would not make faster or could not make the same:
non-NumPy arrays (dask, CuPy, masked arrays, lists), dtypes the kernel does
not read directly, and keywords scikit-image's signature does not have.
Declined calls run in scikit-image as usual. Set
``SKIMAGE_NO_DISPATCHING=1`` to turn dispatching off altogether.

In scikit-image 0.26 no colour function is marked dispatchable yet; when
one is (with ``skimage.util._backends.dispatchable``), its calls come here
with nothing else to install.
"""

from __future__ import annotations

import importlib

# Functions this backend implements, as scikit-image names them ("module:function").
FUNCTIONS = (
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
)
SUPPORTED_FUNCTIONS = tuple(f"skimage.color:{name}" for name in FUNCTIONS)

_STAIN_FUNCTIONS = frozenset({"separate_stains", "combine_stains"})


def info():
    """What this backend implements: a ``skimage.util._backends.BackendInformation``.

    Examples
    --------
    >>> from pixelmix_skimage.backend import info
    >>> "skimage.color:rgb2hed" in info().supported_functions
    True
    """
    from skimage.util._backends import BackendInformation

    return BackendInformation(list(SUPPORTED_FUNCTIONS))


def _native_dtype(array) -> bool:
    """A dtype the kernel reads in place (pixelmix.plan.KERNEL_DTYPES; this module imports no pixelmix)."""
    dtype = array.dtype
    if dtype.char in "BHhfd":  # uint8, uint16, int16, float32, float64
        return True
    return dtype.kind == "i" and dtype.itemsize == 4  # int32


def can_has(name: str, *args, **kwargs) -> bool:
    """Whether pixelmix takes this call of scikit-image function ``name``.

    Parameters
    ----------
    name : str
        ``"skimage.color:rgb2hed"`` and so on.
    *args, **kwargs
        The arguments of the call, as given to the scikit-image function.

    Returns
    -------
    bool
        True for NumPy arrays (``np.ndarray`` itself or ``np.memmap``) of
        uint8, uint16, int16, int32, float32 or float64 with only the
        keywords scikit-image's function has; False otherwise, and then
        scikit-image runs the call itself.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix_skimage.backend import can_has
    >>> can_has("skimage.color:rgb2gray", np.zeros((4, 4, 3), np.uint8))
    True
    >>> can_has("skimage.color:rgb2gray", [[[0, 0, 0]]])
    False
    """
    module, _, func = name.partition(":")
    if module != "skimage.color" or func not in FUNCTIONS or not args:
        return False
    image = args[0]
    # Exact types only: subclasses such as masked arrays carry meaning pixelmix
    # would drop. np.memmap is read in place, so it is welcome. The class
    # names are compared so that NumPy need not be imported here.
    cls = type(image)
    if cls.__module__ != "numpy" or cls.__name__ not in ("ndarray", "memmap"):
        return False
    if not _native_dtype(image):
        return False
    allowed = {"channel_axis"}
    n_positional = 1
    if func in _STAIN_FUNCTIONS:
        allowed.add("conv_matrix")
        n_positional = 2
        matrix = args[1] if len(args) > 1 else kwargs.get("conv_matrix")
        shape = getattr(matrix, "shape", None)
        if shape is None or len(shape) != 2 or shape[0] != 3 or matrix.dtype.kind not in "iuf":
            return False
    if len(args) > n_positional or not set(kwargs) <= allowed:
        return False
    axis = kwargs.get("channel_axis", -1)
    if type(axis) is not int:
        return False
    return True


def get_implementation(name: str):
    """The pixelmix function for scikit-image function ``name`` (``"skimage.color:rgb2hed"``).

    Examples
    --------
    >>> from pixelmix_skimage.backend import get_implementation
    >>> get_implementation("skimage.color:rgb2hed").__module__
    'pixelmix_skimage.color'
    """
    module, _, func = name.partition(":")
    if module != "skimage.color" or func not in FUNCTIONS:
        raise LookupError(f"the pixelmix backend does not implement {name!r}")
    return getattr(importlib.import_module("pixelmix_skimage.color"), func)
