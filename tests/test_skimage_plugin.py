"""pixelmix_skimage against scikit-image itself: values, dtypes, shapes, errors, quirks."""

import numpy as np
import pixelmix_skimage as pxs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pixelmix_skimage.backend import FUNCTIONS
from skimage import color, data

MATRIX_FUNCTIONS = [f for f in FUNCTIONS if f not in ("separate_stains", "combine_stains")]
NATIVE_DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64]
CONVERTED_DTYPES = [np.bool_, np.int8, np.uint32, np.int64, np.uint64, np.float16]


def sample(rng, shape, dtype, axis=-1):
    """Random values of ``dtype`` with its extremes included; floats in [-0.5, 1.5) and one NaN pixel."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        x = rng.random(shape) > 0.5
    elif dtype.kind == "f":
        x = (rng.random(shape) * 2 - 0.5).astype(dtype)
        np.moveaxis(x, axis, -1)[(0,) * (x.ndim - 1)] = np.nan
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
        flat = x.reshape(-1)
        flat[:2] = info.min, info.max
    return x


def working_eps(fn: str, dtype) -> float:
    """Machine epsilon of the precision scikit-image computes in for this input."""
    low = np.dtype(dtype) in (np.float16, np.float32)
    return float(np.finfo(np.float32 if low else np.float64).eps)


def assert_matches(got, expected, eps):
    """Same dtype and shape, values equal to a few units of the working precision."""
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    scale = max(1.0, float(np.nanmax(np.abs(expected))) if np.isfinite(expected).any() else 1.0)
    np.testing.assert_allclose(got, expected, rtol=0, atol=16 * eps * scale)


def call_both(fn, x, **kwargs):
    if fn in ("separate_stains", "combine_stains"):
        matrix = color.hdx_from_rgb if fn == "separate_stains" else color.rgb_from_hdx
        return getattr(pxs, fn)(x, matrix, **kwargs), getattr(color, fn)(x, matrix, **kwargs)
    return getattr(pxs, fn)(x, **kwargs), getattr(color, fn)(x, **kwargs)


@pytest.mark.parametrize("dtype", NATIVE_DTYPES)
@pytest.mark.parametrize("fn", MATRIX_FUNCTIONS + ["separate_stains", "combine_stains"])
def test_matches_skimage_channels_last(fn, dtype, rng):
    x = sample(rng, (9, 7, 3), dtype)
    got, expected = call_both(fn, x)
    assert_matches(got, expected, working_eps(fn, dtype))


@pytest.mark.parametrize("channel_axis", [0, 1, -2, 2])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("fn", MATRIX_FUNCTIONS + ["separate_stains", "combine_stains"])
def test_matches_skimage_every_channel_axis(fn, dtype, channel_axis, rng):
    shape = [6, 5, 4]
    shape[channel_axis] = 3
    x = sample(rng, tuple(shape), dtype, axis=channel_axis)
    got, expected = call_both(fn, x, channel_axis=channel_axis)
    assert_matches(got, expected, working_eps(fn, dtype))


@pytest.mark.parametrize("dtype", CONVERTED_DTYPES)
@pytest.mark.parametrize("fn", ["rgb2gray", "rgb2yuv", "rgb2xyz", "rgb2hed", "hed2rgb", "ycbcr2rgb"])
def test_dtypes_the_kernel_does_not_read_are_converted_like_skimage(fn, dtype, rng):
    x = sample(rng, (8, 5, 3), dtype)
    try:
        expected = getattr(color, fn)(x)
    except Exception as exc:  # ycbcr2rgb refuses bool and int8 in NumPy's own words
        with pytest.raises(type(exc)):
            getattr(pxs, fn)(x)
        return
    assert_matches(getattr(pxs, fn)(x), expected, working_eps(fn, dtype))


def test_nd_images_and_single_pixels(rng):
    x = sample(rng, (2, 3, 4, 3), np.uint16)
    assert_matches(pxs.rgb2hed(x), color.rgb2hed(x), working_eps("rgb2hed", np.uint16))
    pixel = np.array([10, 200, 30], np.uint8)
    got, expected = pxs.rgb2gray(pixel), color.rgb2gray(pixel)
    assert np.ndim(got) == 0 and type(got) is type(expected)
    assert got == pytest.approx(expected, rel=1e-15)
    assert pxs.rgb2gray(np.zeros((0, 4, 3), np.uint8)).shape == (0, 4)


@pytest.mark.parametrize("channel_axis", [-1, 0])
def test_bundled_ihc_image(channel_axis):
    ihc = np.moveaxis(data.immunohistochemistry(), -1, channel_axis)
    eps = working_eps("rgb2hed", np.uint8)
    for fn in ["rgb2hed", "rgb2gray", "rgb2xyz", "rgb2ycbcr", "separate_stains"]:
        got, expected = call_both(fn, ihc, channel_axis=channel_axis)
        assert_matches(got, expected, eps)
    for matrix in [color.hed_from_rgb, color.bex_from_rgb, color.rbd_from_rgb, color.ahx_from_rgb]:
        got = pxs.separate_stains(ihc, matrix, channel_axis=channel_axis)
        assert_matches(got, color.separate_stains(ihc, matrix, channel_axis=channel_axis), eps)


def test_round_trips_hold_where_skimage_s_do():
    ihc = data.immunohistochemistry()
    hed = color.rgb2hed(ihc)
    sk_back = color.rgb2hed(color.hed2rgb(hed))
    ours_back = pxs.rgb2hed(pxs.hed2rgb(pxs.rgb2hed(ihc)))
    holds = np.isclose(sk_back, hed, rtol=0, atol=1e-9).all(axis=-1)
    assert holds.mean() > 0.9  # scikit-image's round trip holds on most pixels
    np.testing.assert_allclose(ours_back[holds], hed[holds], rtol=0, atol=1e-9)
    assert_matches(ours_back, sk_back, 1e-12)

    rgb = ihc / 255.0
    for forward, back in [("rgb2yuv", "yuv2rgb"), ("rgb2ydbdr", "ydbdr2rgb"), ("rgb2xyz", "xyz2rgb")]:
        again = getattr(pxs, back)(getattr(pxs, forward)(rgb))
        np.testing.assert_allclose(again, rgb, rtol=0, atol=1e-12)


def test_wrong_channel_count_raises_skimage_s_error():
    x = np.zeros((4, 5, 4), np.uint8)
    for fn in ["rgb2gray", "rgb2hed", "ycbcr2rgb", "xyz2rgb"]:
        with pytest.raises(ValueError) as theirs:
            getattr(color, fn)(x, channel_axis=1)
        with pytest.raises(ValueError) as ours:
            getattr(pxs, fn)(x, channel_axis=1)
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(np.exceptions.AxisError):
        pxs.rgb2yuv(np.zeros((4, 5, 3)), channel_axis=3)
    with pytest.raises(ValueError, match="complex"):
        pxs.rgb2gray(np.zeros((2, 2, 3), np.complex128))
    with pytest.raises(ValueError, match="3 rows"):
        pxs.separate_stains(np.zeros((2, 2, 3)), np.eye(2))


def test_channel_axis_forms_skimage_accepts(rng):
    x = sample(rng, (3, 4, 5), np.float64, axis=0)
    np.testing.assert_array_equal(pxs.rgb2yuv(x, channel_axis=(0,)), pxs.rgb2yuv(x, channel_axis=0))
    last = sample(rng, (4, 5, 3), np.float64)
    np.testing.assert_array_equal(pxs.rgb2yuv(last, channel_axis=None), pxs.rgb2yuv(last))
    with pytest.raises(ValueError, match="single channel axis"):
        pxs.rgb2yuv(x, channel_axis=(0, 1))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_ycbcr2rgb_reproduces_skimage_wraparound_on_integers(dtype, rng):
    info = np.iinfo(dtype)
    # Values on both sides of every offset (16, 128) above the minimum, where the wrap happens.
    edges = np.array([info.min, info.min + 15, info.min + 16, info.min + 127, info.min + 128, info.max])
    x = rng.choice(edges, size=(6, 6, 3)).astype(dtype)
    assert_matches(pxs.ycbcr2rgb(x), color.ycbcr2rgb(x), 2.2e-16)
    # Channels last and contiguous, the offsets are subtracted in blocks of
    # 2**16 pixels: an image of several blocks and a partial one, and the
    # same data channels first (the other path).
    big = rng.choice(edges, size=(301, 500, 3)).astype(dtype)
    assert_matches(pxs.ycbcr2rgb(big), color.ycbcr2rgb(big), 2.2e-16)
    first = np.moveaxis(big, -1, 0)
    assert_matches(pxs.ycbcr2rgb(first, channel_axis=0), color.ycbcr2rgb(first, channel_axis=0), 2.2e-16)


def test_ycbcr2rgb_integer_codes_reads_8bit_ycbcr_correctly():
    rgb = data.immunohistochemistry()[:64, :64] / 255.0
    codes = np.round(color.rgb2ycbcr(rgb)).astype(np.uint8)
    back = pxs.ycbcr2rgb(codes, integer_codes=True)
    assert back.dtype == np.float64
    assert np.abs(back - rgb).max() < 0.02  # 8-bit rounding of the codes
    assert np.abs(color.ycbcr2rgb(codes) - rgb).max() > 0.5  # what the default (scikit-image's) gives
    np.testing.assert_array_equal(pxs.ycbcr2rgb(codes.astype(np.float64), integer_codes=True), pxs.ycbcr2rgb(codes.astype(np.float64)))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_mix_channels_is_skimage_convert_for_any_channel_count(dtype, rng):
    from skimage.util import img_as_float

    x = sample(rng, (7, 4, 5), dtype)
    w = rng.standard_normal((2, 5))
    b = rng.standard_normal(2)
    got = pxs.mix_channels(x, w, b)
    xf = img_as_float(x)
    expected = xf @ w.T.astype(xf.dtype) + b.astype(xf.dtype)
    assert_matches(got, expected, working_eps("mix", dtype))
    channels_first = np.moveaxis(x, -1, 0)
    np.testing.assert_array_equal(pxs.mix_channels(channels_first, w, b, channel_axis=0), np.moveaxis(got, -1, 0))
    with pytest.raises(ValueError, match="5 channels on axis -1 but the matrix has 3 columns"):
        pxs.mix_channels(x, np.ones((2, 3)))


@given(
    shape=st.lists(st.integers(1, 5), min_size=0, max_size=3),
    axis_pos=st.integers(0, 3),
    dtype=st.sampled_from([np.uint16, np.float64]),
    fn=st.sampled_from(["rgb2yuv", "rgb2gray", "rgb2hed", "xyz2rgb"]),
    seed=st.integers(0, 2**16),
)
def test_any_shape_and_channel_position_matches_skimage(shape, axis_pos, dtype, fn, seed):
    axis = min(axis_pos, len(shape))
    shape = tuple(shape[:axis]) + (3,) + tuple(shape[axis:])
    x = sample(np.random.default_rng(seed), shape, dtype, axis=axis)
    got, expected = call_both(fn, x, channel_axis=axis - len(shape) if seed % 2 else axis)
    assert_matches(np.asarray(got), np.asarray(expected), working_eps(fn, dtype))
