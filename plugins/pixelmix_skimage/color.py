"""scikit-image's colour conversions, each run as one fused pixelmix pass.

Every function here has the name, signature and results of its namesake in
:mod:`skimage.color`: the same values (float64 results to float64
precision, float32 results to float32 precision), the same output dtype
(float32 for float16 / float32 input, float64 otherwise, as scikit-image
decides it per function), the same shape, every ``channel_axis``, and the
same errors for a wrong channel count. Integer input is scaled exactly as
``img_as_float`` does (uint8 by 1/255, uint16 by 1/65535, int16 by 1/32767
and floored at -1, ...).

What differs is how the work is done. scikit-image converts the whole image
to float, then runs NumPy over it several times (log, divide, matmul,
maximum, ...), each time writing a full-size temporary. Here the integer
scaling, the elementwise steps and the matrix form one per-pixel program
(:class:`pixelmix.Program`) that the Numba kernel runs in a single parallel
pass, with no temporary image. Numbers agree with scikit-image to rounding
(the order of the floating-point operations differs: the 1/255 scale, for
example, is folded into the matrix), not bit for bit: NumPy's matmul
(BLAS) does not fix its own summation order either.

The conversion matrices are scikit-image's own (from
:mod:`skimage.color.colorconv`, imported on first use).
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import numpy as np
from numpy.typing import ArrayLike

import pixelmix as pm
from pixelmix import ops

from ._floats import engine_view, log_steps, prepare, run, to_float_steps
from .backend import FUNCTIONS

__all__ = ["mix_channels", *FUNCTIONS]

# scikit-image's Beer-Lambert floor: separate_stains takes log(max(rgb, 1e-6)).
_LOG_FLOOR = 1e-6
# The offsets rgb2ycbcr adds after its matrix (and ycbcr2rgb subtracts before).
_YCBCR_OFFSETS = np.array([16.0, 128.0, 128.0])


@cache
def _matrix(name: str) -> np.ndarray:
    """A conversion matrix from scikit-image (imported here, on first use)."""
    from skimage.color import colorconv

    return np.asarray(getattr(colorconv, name), dtype=np.float64)


def _convert(image, matrix_name: str, channel_axis, bias=None) -> np.ndarray:
    """scikit-image's ``_convert``: ``img_as_float(image) @ matrix.T`` (+ bias), one pass."""
    prep = prepare(image, channel_axis=channel_axis, n_channels=3)
    steps = to_float_steps(prep, 3) + [pm.Mixer(_matrix(matrix_name), bias)]
    return run(prep, steps, prep.float_dtype)


def mix_channels(image: ArrayLike, matrix: ArrayLike, bias: ArrayLike | None = None, *, channel_axis: int = -1) -> np.ndarray:
    """Mix the channels of every pixel: ``out[k] = sum_c matrix[k, c] * x[c] + bias[k]``.

    The general form of scikit-image's colour-matrix conversions (its
    private ``skimage.color.colorconv._convert``), for any number of input
    and output channels, with the same dtype rules.

    Parameters
    ----------
    image : (..., C, ...) array_like
        The image; integer input is scaled as ``img_as_float`` does (uint8
        by 1/255, ...) before mixing, float input is used as is.
    matrix : (K, C) array_like
        One row per output channel, one column per input channel.
    bias : (K,) array_like, optional
        Added to each output channel after mixing.
    channel_axis : int, optional
        The axis of ``image`` that holds the channels.

    Returns
    -------
    out : (..., K, ...) ndarray
        float32 for float16 / float32 input, float64 otherwise; K channels
        on ``channel_axis``.

    Raises
    ------
    ValueError
        If ``image`` does not have C channels on ``channel_axis``.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix_skimage import mix_channels
    >>> rgb = np.full((2, 2, 3), 255, dtype=np.uint8)
    >>> mix_channels(rgb, [[0.5, 0.5, 0.0]])[0, 0]
    array([1.])
    """
    mixer = pm.Mixer(matrix, bias)
    prep = prepare(image, channel_axis=channel_axis, n_channels=None)
    n = prep.image.shape[prep.channel_axis]
    if n != mixer.n_inputs:
        raise ValueError(
            f"image has {n} channels on axis {channel_axis} but the matrix has "
            f"{mixer.n_inputs} columns; pass channel_axis= for the axis that holds the channels"
        )
    return run(prep, to_float_steps(prep, n) + [mixer], prep.float_dtype)


def rgb2gray(rgb: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    """Compute luminance of an RGB image: ``0.2125 R + 0.7154 G + 0.0721 B``.

    Same as :func:`skimage.color.rgb2gray`, as one fused pass.

    Parameters
    ----------
    rgb : (..., C=3, ...) array_like
        The image in RGB format.
    channel_axis : int, optional
        The axis that holds the channels.

    Returns
    -------
    out : ndarray
        The luminance image: the input's shape with the channel axis
        removed. float32 for float16 / float32 input, float64 otherwise.

    Raises
    ------
    ValueError
        If ``rgb`` does not have 3 channels on ``channel_axis``.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix_skimage import rgb2gray
    >>> rgb2gray(np.full((2, 2, 3), 255, dtype=np.uint8))
    array([[1., 1.],
           [1., 1.]])
    """
    prep = prepare(rgb, channel_axis=channel_axis, n_channels=3)
    weights = _matrix("gray_from_rgb")[:1]
    out = run(prep, to_float_steps(prep, 3) + [pm.Mixer(weights)], prep.float_dtype)
    # The single output channel sits on the channel axis: drop it (a view, no copy).
    out = out.reshape(out.shape[: prep.channel_axis] + out.shape[prep.channel_axis + 1 :])
    # scikit-image returns a NumPy scalar for a single pixel (a 1-D input).
    return out[()] if out.ndim == 0 else out


_MATRIX_DOC = """{src} to {dst} color space conversion.

    Same as :func:`skimage.color.{name}` (``img_as_float(image) @ {matrix}.T``{extra}),
    as one fused pass.

    Parameters
    ----------
    {arg} : (..., C=3, ...) array_like
        The image in {src} format. By default, the final dimension denotes
        channels.
    channel_axis : int, optional
        The axis that holds the channels.

    Returns
    -------
    out : (..., C=3, ...) ndarray
        The image in {dst} format, same shape as the input. float32 for
        float16 / float32 input, float64 otherwise.

    Raises
    ------
    ValueError
        If ``{arg}`` does not have 3 channels on ``channel_axis``.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix_skimage import {name}
    >>> {name}(np.zeros((4, 4, 3), dtype=np.uint8)).shape
    (4, 4, 3)
    """


def _matrix_doc(name: str, src: str, dst: str, arg: str, matrix: str, extra: str = "") -> str:
    return _MATRIX_DOC.format(name=name, src=src, dst=dst, arg=arg, matrix=matrix, extra=extra)


def rgb2yuv(rgb: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    return _convert(rgb, "yuv_from_rgb", channel_axis)


def yuv2rgb(yuv: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    return _convert(yuv, "rgb_from_yuv", channel_axis)


def rgb2yiq(rgb: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    return _convert(rgb, "yiq_from_rgb", channel_axis)


def yiq2rgb(yiq: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    return _convert(yiq, "rgb_from_yiq", channel_axis)


def rgb2ypbpr(rgb: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    return _convert(rgb, "ypbpr_from_rgb", channel_axis)


def ypbpr2rgb(ypbpr: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    return _convert(ypbpr, "rgb_from_ypbpr", channel_axis)


def rgb2ydbdr(rgb: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    return _convert(rgb, "ydbdr_from_rgb", channel_axis)


def ydbdr2rgb(ydbdr: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    return _convert(ydbdr, "rgb_from_ydbdr", channel_axis)


def rgb2rgbcie(rgb: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    return _convert(rgb, "rgbcie_from_rgb", channel_axis)


def rgbcie2rgb(rgbcie: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    return _convert(rgbcie, "rgb_from_rgbcie", channel_axis)


def rgb2ycbcr(rgb: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    # scikit-image adds the offsets after the matrix; here they are its bias.
    return _convert(rgb, "ycbcr_from_rgb", channel_axis, bias=_YCBCR_OFFSETS)


for _f, _src, _dst, _arg, _m, _extra in [
    (rgb2yuv, "RGB", "YUV", "rgb", "yuv_from_rgb", ""),
    (yuv2rgb, "YUV", "RGB", "yuv", "rgb_from_yuv", ""),
    (rgb2yiq, "RGB", "YIQ", "rgb", "yiq_from_rgb", ""),
    (yiq2rgb, "YIQ", "RGB", "yiq", "rgb_from_yiq", ""),
    (rgb2ypbpr, "RGB", "YPbPr", "rgb", "ypbpr_from_rgb", ""),
    (ypbpr2rgb, "YPbPr", "RGB", "ypbpr", "rgb_from_ypbpr", ""),
    (rgb2ydbdr, "RGB", "YDbDr", "rgb", "ydbdr_from_rgb", ""),
    (ydbdr2rgb, "YDbDr", "RGB", "ydbdr", "rgb_from_ydbdr", ""),
    (rgb2rgbcie, "RGB", "RGB CIE", "rgb", "rgbcie_from_rgb", ""),
    (rgbcie2rgb, "RGB CIE", "RGB", "rgbcie", "rgb_from_rgbcie", ""),
    (rgb2ycbcr, "RGB", "YCbCr", "rgb", "ycbcr_from_rgb", " + (16, 128, 128); Y between 16 and 235"),
]:
    _f.__doc__ = _matrix_doc(_f.__name__, _src, _dst, _arg, _m, _extra)
del _f, _src, _dst, _arg, _m, _extra


def ycbcr2rgb(ycbcr: ArrayLike, *, channel_axis: int = -1, integer_codes: bool = False) -> np.ndarray:
    """YCbCr to RGB color space conversion.

    Same as :func:`skimage.color.ycbcr2rgb` (subtract (16, 128, 128), then
    ``img_as_float(...) @ rgb_from_ycbcr.T``), as one fused pass.

    Parameters
    ----------
    ycbcr : (..., C=3, ...) array_like
        The image in YCbCr format (Y between 16 and 235).
    channel_axis : int, optional
        The axis that holds the channels.
    integer_codes : bool, optional
        How integer input is read. False (default) reproduces scikit-image,
        defect included: it subtracts the offsets in the input's own integer
        dtype, so uint8 values below 16 (Y) or 128 (Cb, Cr) wrap around to
        large positive numbers, and then scales by 1/255 as ``img_as_float``
        does, which a YCbCr code value should not be. True reads integer
        input as YCbCr code values, the usual meaning of an 8-bit YCbCr
        image: no wraparound and no scaling, so
        ``ycbcr2rgb(np.round(rgb2ycbcr(rgb)).astype(np.uint8), integer_codes=True)``
        gives back ``rgb`` in [0, 1] up to the rounding. Float input is
        the same either way.

    Returns
    -------
    out : (..., C=3, ...) ndarray
        The image in RGB format, same shape as the input. float32 for
        float16 / float32 input, float64 otherwise.

    Raises
    ------
    ValueError
        If ``ycbcr`` does not have 3 channels on ``channel_axis``.
    TypeError, OverflowError
        As scikit-image, for boolean and int8 input (with the default
        ``integer_codes=False``): NumPy refuses to subtract the offsets in
        those dtypes.

    Notes
    -----
    float32 and float64 input (and integer input with
    ``integer_codes=True``) run as one fused pass. Otherwise the offsets
    are first subtracted in the input's own dtype, as scikit-image does (a
    NumPy pass over the small integer or float16 array, wrapping or
    rounding exactly as scikit-image's), then the scaling and the matrix
    run fused.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix_skimage import ycbcr2rgb
    >>> codes = np.array([[[235, 128, 128]]], dtype=np.uint8)  # white
    >>> ycbcr2rgb(codes, integer_codes=True).round(6)
    array([[[1., 1., 1.]]])
    """
    prep = prepare(ycbcr, channel_axis=channel_axis, n_channels=3)
    matrix = pm.Mixer(_matrix("rgb_from_ycbcr"))
    if prep.source in (np.float32, np.float64) or (integer_codes and prep.source.kind != "f"):
        # The offsets fold into the matrix's bias: one pass.
        return run(prep, [pm.Mixer(np.eye(3), -_YCBCR_OFFSETS), matrix], prep.float_dtype)
    # scikit-image subtracts the offsets in the input's own dtype (integers wrap
    # around, float16 rounds). That is not a per-pixel affine map, so it is done
    # here first, on the small integer array, and only the scaling and matrix
    # are fused.
    prep = replace(prep, image=engine_view(_subtract_in_dtype(np.asarray(ycbcr), prep.channel_axis)))
    return run(prep, to_float_steps(prep, 3) + [matrix], prep.float_dtype)


def _subtract_in_dtype(ycbcr: np.ndarray, axis: int) -> np.ndarray:
    """``ycbcr`` minus the offsets (16, 128, 128) on ``axis``, in its own dtype, as scikit-image computes it."""
    dtype = ycbcr.dtype
    if axis == ycbcr.ndim - 1 and ycbcr.flags.c_contiguous and dtype.kind in "ui" and np.iinfo(dtype).max >= 128:
        # Channels last, the offsets fit the dtype: one contiguous pass,
        # subtracting a block of repeated offsets (NumPy's three strided
        # subtractions are four times slower). Same wrap-around.
        out = np.empty_like(ycbcr)
        src, dst = ycbcr.reshape(-1), out.reshape(-1)
        block = np.tile(_YCBCR_OFFSETS.astype(dtype), 2**16)
        for i in range(0, src.size, block.size):
            n = min(block.size, src.size - i)
            np.subtract(src[i : i + n], block[:n], out=dst[i : i + n])
        return out
    # Otherwise as scikit-image does it (NumPy raises the same errors for bool and int8).
    shifted = np.array(ycbcr, copy=True)
    last = np.moveaxis(shifted, axis, -1)
    last[..., 0] -= 16
    last[..., 1] -= 128
    last[..., 2] -= 128
    return shifted


def rgb2xyz(rgb: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    """RGB to XYZ color space conversion.

    Same as :func:`skimage.color.rgb2xyz` (the sRGB transfer function undone,
    then ``@ xyz_from_rgb.T``), as one fused pass.

    Parameters
    ----------
    rgb : (..., C=3, ...) array_like
        The image in sRGB format.
    channel_axis : int, optional
        The axis that holds the channels.

    Returns
    -------
    out : (..., C=3, ...) ndarray
        The image in XYZ format, same shape as the input. float32 for
        float16 / float32 input, float64 otherwise.

    Raises
    ------
    ValueError
        If ``rgb`` does not have 3 channels on ``channel_axis``.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix_skimage import rgb2xyz
    >>> rgb2xyz(np.full((1, 1, 3), 255, dtype=np.uint8)).round(4)
    array([[[0.9505, 1.    , 1.0888]]])
    """
    prep = prepare(rgb, channel_axis=channel_axis, n_channels=3)
    steps = to_float_steps(prep, 3) + [ops.srgb_decode(), pm.Mixer(_matrix("xyz_from_rgb"))]
    return run(prep, steps, prep.float_dtype)


def xyz2rgb(xyz: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    """XYZ to RGB color space conversion.

    Same as :func:`skimage.color.xyz2rgb` (``@ rgb_from_xyz.T``, the sRGB
    transfer function, then clipped to [0, 1]), as one fused pass.

    Parameters
    ----------
    xyz : (..., C=3, ...) array_like
        The image in XYZ format.
    channel_axis : int, optional
        The axis that holds the channels.

    Returns
    -------
    out : (..., C=3, ...) ndarray
        The image in sRGB format, same shape as the input. float32 for
        float16 / float32 input, float64 otherwise.

    Raises
    ------
    ValueError
        If ``xyz`` does not have 3 channels on ``channel_axis``.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix_skimage import xyz2rgb
    >>> xyz2rgb(np.array([[[0.95047, 1.0, 1.08883]]])).round(4)
    array([[[1., 1., 1.]]])
    """
    prep = prepare(xyz, channel_axis=channel_axis, n_channels=3)
    steps = to_float_steps(prep, 3) + [
        pm.Mixer(_matrix("rgb_from_xyz")),
        ops.srgb_encode(),
        ops.clip(0.0, 1.0),
    ]
    return run(prep, steps, prep.float_dtype)


def _stain_matrix(conv_matrix, name: str) -> np.ndarray:
    m = np.asarray(conv_matrix)
    if m.ndim != 2 or m.shape[0] != 3:
        raise ValueError(
            f"{name}: conv_matrix must be a 2-D array with 3 rows (one per input channel), "
            f"got shape {m.shape}"
        )
    if m.dtype.kind not in "biuf":
        raise TypeError(f"{name}: conv_matrix must hold real numbers, got dtype {m.dtype}")
    return m.astype(np.float64)


def separate_stains(rgb: ArrayLike, conv_matrix: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    """RGB to stain color space conversion (colour deconvolution).

    Same as :func:`skimage.color.separate_stains`: optical density
    ``log(max(rgb, 1e-6)) / log(1e-6)``, then ``@ conv_matrix``, then
    negative values set to 0. Here the log, the matrix and the clip run as
    one fused pass; for 8- and 16-bit input the log is a lookup table.

    Parameters
    ----------
    rgb : (..., C=3, ...) array_like
        The image in RGB format.
    conv_matrix : (3, K) array_like
        The stain separation matrix as described by G. Landini (for example
        ``skimage.color.hed_from_rgb``), applied as ``od @ conv_matrix``.
    channel_axis : int, optional
        The axis that holds the channels.

    Returns
    -------
    out : (..., C=K, ...) ndarray
        The image in stain color space; float64 for every input dtype (as
        scikit-image returns).

    Raises
    ------
    ValueError
        If ``rgb`` does not have 3 channels on ``channel_axis``.

    Notes
    -----
    For float32 input scikit-image takes the logarithm in float32 and
    only then promotes to float64; here everything is computed in float64,
    so the two agree to float32 precision (about 1e-7), this one being the
    more accurate.

    Examples
    --------
    >>> import numpy as np
    >>> from skimage.color import hed_from_rgb
    >>> from pixelmix_skimage import separate_stains
    >>> separate_stains(np.full((2, 2, 3), 255, np.uint8), hed_from_rgb)[0, 0]
    array([0., 0., 0.])
    """
    matrix = _stain_matrix(conv_matrix, "separate_stains")
    prep = prepare(rgb, channel_axis=channel_axis, n_channels=3)
    log_adjust = np.log(_LOG_FLOOR)
    steps = log_steps(prep, 3, _LOG_FLOOR) + [pm.Mixer(matrix.T / log_adjust), ops.relu()]
    return run(prep, steps, np.float64)


def combine_stains(stains: ArrayLike, conv_matrix: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    """Stain to RGB color space conversion.

    Same as :func:`skimage.color.combine_stains`:
    ``exp(-(stains * -log(1e-6)) @ conv_matrix)`` clipped to [0, 1], as one
    fused pass.

    Parameters
    ----------
    stains : (..., C=3, ...) array_like
        The image in stain color space.
    conv_matrix : (3, K) array_like
        The stain combination matrix (for example
        ``skimage.color.rgb_from_hed``), applied as ``... @ conv_matrix``.
    channel_axis : int, optional
        The axis that holds the channels.

    Returns
    -------
    out : (..., C=K, ...) ndarray
        The image in RGB format; float64 for every input dtype (as
        scikit-image returns).

    Raises
    ------
    ValueError
        If ``stains`` does not have 3 channels on ``channel_axis``.

    Examples
    --------
    >>> import numpy as np
    >>> from skimage.color import rgb_from_hed
    >>> from pixelmix_skimage import combine_stains
    >>> combine_stains(np.zeros((2, 2, 3)), rgb_from_hed)[0, 0]
    array([1., 1., 1.])
    """
    matrix = _stain_matrix(conv_matrix, "combine_stains")
    prep = prepare(stains, channel_axis=channel_axis, n_channels=3)
    log_adjust = -np.log(_LOG_FLOOR)
    steps = to_float_steps(prep, 3) + [
        pm.Mixer(-log_adjust * matrix.T),
        ops.exp(),
        ops.clip(0.0, 1.0),
    ]
    return run(prep, steps, np.float64)


def rgb2hed(rgb: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    """RGB to Haematoxylin-Eosin-DAB (HED) color space conversion.

    Same as :func:`skimage.color.rgb2hed`, i.e.
    ``separate_stains(rgb, hed_from_rgb)``, as one fused pass.

    Parameters
    ----------
    rgb : (..., C=3, ...) array_like
        The image in RGB format.
    channel_axis : int, optional
        The axis that holds the channels.

    Returns
    -------
    out : (..., C=3, ...) ndarray
        The image in HED format, float64.

    Raises
    ------
    ValueError
        If ``rgb`` does not have 3 channels on ``channel_axis``.

    Examples
    --------
    >>> from skimage import data
    >>> from pixelmix_skimage import rgb2hed
    >>> ihc_hed = rgb2hed(data.immunohistochemistry())
    >>> ihc_hed.shape, ihc_hed.dtype
    ((512, 512, 3), dtype('float64'))
    """
    return separate_stains(rgb, _matrix("hed_from_rgb"), channel_axis=channel_axis)


def hed2rgb(hed: ArrayLike, *, channel_axis: int = -1) -> np.ndarray:
    """Haematoxylin-Eosin-DAB (HED) to RGB color space conversion.

    Same as :func:`skimage.color.hed2rgb`, i.e.
    ``combine_stains(hed, rgb_from_hed)``, as one fused pass.

    Parameters
    ----------
    hed : (..., C=3, ...) array_like
        The image in HED format.
    channel_axis : int, optional
        The axis that holds the channels.

    Returns
    -------
    out : (..., C=3, ...) ndarray
        The image in RGB format, float64, in [0, 1].

    Raises
    ------
    ValueError
        If ``hed`` does not have 3 channels on ``channel_axis``.

    Examples
    --------
    >>> from skimage import data
    >>> from pixelmix_skimage import hed2rgb, rgb2hed
    >>> rgb = hed2rgb(rgb2hed(data.immunohistochemistry()))
    >>> bool(rgb.min() >= 0 and rgb.max() <= 1)
    True
    """
    return combine_stains(hed, _matrix("rgb_from_hed"), channel_axis=channel_axis)
