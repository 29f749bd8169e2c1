"""The CPU engine against the NumPy oracle: shapes, dtypes, axes, tiles, threads."""

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pixelmix as pm
from pixelmix import ops

from .helpers import DTYPES, assert_affine_close, random_image


@st.composite
def mixing_problems(draw):
    ndim = draw(st.integers(1, 4))
    shape = draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim))
    axis = draw(st.integers(-ndim, ndim - 1))
    dtype = draw(st.sampled_from(DTYPES))
    k = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    tile = draw(st.sampled_from([None, 1, 3, 64]))
    return tuple(shape), axis, dtype, k, seed, tile


@given(mixing_problems())
def test_affine_matches_oracle(problem):
    shape, axis, dtype, k, seed, tile = problem
    rng = np.random.default_rng(seed)
    x = random_image(rng, shape, dtype)
    m = pm.Mixer(rng.standard_normal((k, shape[axis])), rng.standard_normal(k))
    got = m.apply(x, channel_axis=axis, tile_size=tile)
    want = m.apply(x, channel_axis=axis, backend="numpy")
    expected_dtype = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    assert got.dtype == want.dtype == expected_dtype
    expected_shape = list(shape)
    expected_shape[axis] = k
    assert got.shape == tuple(expected_shape)
    assert_affine_close(got, want, m, x, axis)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_every_channel_axis_matches_transposed_channels_last(rng, axis):
    x = random_image(rng, (5, 6, 7), np.uint16)
    c = x.shape[axis]
    m = pm.Mixer(rng.standard_normal((3, c)))
    got = m.apply(x, channel_axis=axis)
    last = m.apply(np.moveaxis(x, axis, -1))
    np.testing.assert_array_equal(np.moveaxis(got, axis, -1), last)


@pytest.mark.parametrize("shape,axis", [((3, 300, 500), 0), ((300, 500, 3), -1), ((2, 3, 40, 50), 1)])
def test_bitwise_identical_for_every_tile_size_and_thread_count(rng, shape, axis):
    x = random_image(rng, shape, np.float32)
    m = pm.Mixer(rng.standard_normal((4, shape[axis])), rng.standard_normal(4))
    ref = m.apply(x, channel_axis=axis)
    for tile in (1, 7, 64, 1000, 10**7):
        np.testing.assert_array_equal(m.apply(x, channel_axis=axis, tile_size=tile), ref)
    before = numba.get_num_threads()
    try:
        for n in range(1, numba.config.NUMBA_NUM_THREADS + 1):
            numba.set_num_threads(n)
            np.testing.assert_array_equal(m.apply(x, channel_axis=axis, tile_size=97), ref)
    finally:
        numba.set_num_threads(before)


def test_small_calls_run_on_the_calling_thread_alone(rng, monkeypatch):
    """Below config.SERIAL_BYTES a call runs on one thread (the count restored after), with the same result."""
    from pixelmix import config

    calls = []
    real = numba.set_num_threads
    monkeypatch.setattr(numba, "set_num_threads", lambda n: calls.append(n) or real(n))
    m = pm.Mixer(rng.standard_normal((2, 3)))
    x = random_image(rng, (64, 64, 3), np.float32)
    before = numba.get_num_threads()
    small = m(x)
    assert calls == [1, before] and numba.get_num_threads() == before
    calls.clear()
    monkeypatch.setattr(config, "SERIAL_BYTES", 0)
    np.testing.assert_array_equal(m(x), small)
    assert calls == []


def test_non_contiguous_and_readonly_inputs_are_read_in_place(rng):
    base = random_image(rng, (40, 60, 5), np.uint16)
    m = pm.Mixer(rng.standard_normal((2, 3)))
    views = [base[::2, 1::3, :3], base[..., 1:4], np.moveaxis(base, 0, 1)[:, :, :3]]
    for view in views:
        np.testing.assert_array_equal(m(view), m(np.ascontiguousarray(view)))
    frozen = base[..., :3].copy()
    frozen.flags.writeable = False
    np.testing.assert_array_equal(m(frozen), m(base[..., :3].copy()))


def test_memmap_input(rng, tmp_path):
    x = random_image(rng, (3, 64, 80), np.uint16)
    path = tmp_path / "stack.raw"
    x.tofile(path)
    mm = np.memmap(path, dtype=np.uint16, mode="r", shape=x.shape)
    m = pm.Mixer(rng.standard_normal((2, 3)))
    np.testing.assert_array_equal(m(mm, channel_axis=0), m(x, channel_axis=0))


def test_chunked_path_covers_large_non_contiguous_images(rng, monkeypatch):
    from pixelmix import config

    monkeypatch.setattr(config, "CHUNK_BYTES", 1000)  # force many chunks
    x = random_image(rng, (30, 20, 4), np.float64)
    view = x[:, ::-1]  # negative strides
    out = np.empty((4, 20, 30)).transpose(2, 1, 0)[:, :, :2]  # non-contiguous out
    m = pm.Mixer(rng.standard_normal((2, 4)))
    got = m.apply(view, out=out)
    assert got is out
    np.testing.assert_array_equal(got, m.apply(np.ascontiguousarray(view)))
    # channels first, split along axis 1
    cf = np.moveaxis(x, -1, 0)[:, ::-1]
    np.testing.assert_array_equal(m(cf, channel_axis=0), m(np.ascontiguousarray(cf), channel_axis=0))


def test_nan_in_any_channel_poisons_every_output(rng):
    x = random_image(rng, (4, 5, 3), np.float32)
    x[1, 2, 0] = np.nan
    x[3, 3, 2] = np.nan
    m = pm.Mixer(np.eye(3)[:2])  # output 1 does not even use channel 2
    y = m(x)
    assert np.isnan(y[1, 2]).all() and np.isnan(y[3, 3]).all()
    assert np.isfinite(np.delete(y.reshape(-1, 2), [1 * 5 + 2, 3 * 5 + 3], axis=0)).all()
    # a program with no affine step still spreads NaN to every channel of the pixel
    y = ops.relu()(x)
    assert np.isnan(y[1, 2]).all() and np.isnan(y[3, 3]).all()


def test_nodata_marks_pixels_missing(rng):
    x = random_image(rng, (6, 7, 3), np.uint16)
    x[2, 3, 1] = 0
    x[4, 4, :] = 0
    m = pm.Mixer(rng.standard_normal((2, 3)))
    y = m(x, nodata=0)
    assert np.isnan(y[2, 3]).all() and np.isnan(y[4, 4]).all()
    assert_affine_close(y, m(x, nodata=0, backend="numpy"), m, x)
    yi = m(x, nodata=0, dtype=np.uint8)
    assert (yi[2, 3] == 0).all()
    yi = m(x, nodata=0, dtype=np.int16, channel_axis=-1)
    assert (yi[4, 4] == 0).all()
    # nodata on the float path, clipped into the integer output range
    f = x.astype(np.float32)
    np.testing.assert_array_equal(m(f, nodata=0, dtype=np.uint8), m(x, nodata=0, dtype=np.uint8))
    yneg = pm.Mixer(np.ones((1, 3))).apply(f - 5, nodata=-5, dtype=np.uint8)
    assert yneg[2, 3, 0] == 0
    y300 = pm.Mixer(np.ones((1, 3))).apply(f + 300, nodata=300, dtype=np.uint8)
    assert y300[4, 4, 0] == 255


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32])
def test_integer_output_rounds_half_to_even_and_saturates(dtype):
    info = np.iinfo(dtype)
    values = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, 2.5001, 1e12, -1e12, np.nan], dtype=np.float64)
    m = pm.Mixer([[1.0]])
    got = m(values[:, None], dtype=dtype)[:, 0]
    want = np.clip(np.rint(values), info.min, info.max)
    want[-1] = 0
    np.testing.assert_array_equal(got, want.astype(dtype))
    np.testing.assert_array_equal(got, m(values[:, None], dtype=dtype, backend="numpy")[:, 0])


def test_out_is_filled_and_returned(rng):
    x = random_image(rng, (10, 11, 3), np.uint8)
    m = pm.Mixer(rng.standard_normal((2, 3)))
    out = np.empty((10, 11, 2), np.float32)
    assert m(x, out=out) is out
    np.testing.assert_array_equal(out, m(x))
    out16 = np.empty((10, 11, 2), np.int16)
    m(x, out=out16)  # dtype taken from out
    np.testing.assert_array_equal(out16, m(x, dtype=np.int16))


def test_float64_accumulates_in_float64(rng):
    x = random_image(rng, (50, 3), np.float64)
    m = pm.Mixer(rng.standard_normal((2, 3)))
    got = m(x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, x @ m.weights.T, rtol=1e-13, atol=1e-13)
    assert m(x, dtype=np.float32).dtype == np.float32


def test_zero_size_image():
    m = pm.Mixer(np.ones((2, 3)))
    assert m(np.zeros((0, 4, 3), np.uint8)).shape == (0, 4, 2)


def test_one_pixel_vector():
    m = pm.Mixer([[1.0, 2.0, 3.0]], [1.0])
    np.testing.assert_array_equal(m(np.array([1.0, 1.0, 1.0])), [7.0])
    np.testing.assert_array_equal(m(np.arange(6.0)[::2]), [17.0])


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_many_channels_last_dot_product_path(rng, dtype):
    """Channels last with >= 16 inputs and <= 16 outputs: dot products along the channels."""
    x = random_image(rng, (37, 23, 40), dtype)
    if np.dtype(dtype).kind == "f":
        x[3, 4, 17] = np.nan
    m = pm.Mixer(rng.standard_normal((5, 40)), rng.standard_normal(5))
    got = m(x)
    assert_affine_close(got, m(x, backend="numpy"), m, x)
    for tile in (1, 7, 100, 10**6):
        np.testing.assert_array_equal(m(x, tile_size=tile), got)
    # the channels-first order rounds differently, within the same bound
    first = np.moveaxis(m(np.ascontiguousarray(np.moveaxis(x, -1, 0)), channel_axis=0), 0, -1)
    assert_affine_close(first, got, m, x)
    # nodata, integer output and a program continuing after the first mixer
    nodata = x[5, 6, 0]
    y = m(x, nodata=nodata)
    assert np.isnan(y[5, 6]).all()
    # Integer output: the float64 result, rounded half to even and saturated.
    rounded = np.clip(np.rint(np.nan_to_num(m(x, dtype=np.float64))), -32768, 32767).astype(np.int16)
    np.testing.assert_array_equal(m(x, dtype=np.int16), rounded)  # NaN pixels get 0
    net = pm.Mixer(rng.standard_normal((3, 5))) @ ops.relu() @ m
    want = net(x, dtype=np.float64, backend="numpy")
    np.testing.assert_allclose(net(x, dtype=np.float64), want, rtol=1e-12, atol=1e-12 * np.nanmax(np.abs(want)))


def test_integer_output_of_wide_inputs_sums_in_float64():
    # Four channels: the general kernel (the RGB one has the same sums:
    # test_rgb_programs_run_pixel_by_pixel_with_the_same_sums).
    m = pm.Mixer(np.ones((1, 4)))
    assert m(np.array([[2.5000001, 0.0, 0.0, 0.0]]), dtype=np.uint8)[0, 0] == 3
    assert m(np.array([[1e8 + 1, -1e8, 0.0, 0.0]]), dtype=np.int16)[0, 0] == 1
    big = np.array([[2**31 - 1, -(2**31 - 2), 0, 0]], dtype=np.int32)
    assert m(big, dtype=np.int16)[0, 0] == 1
    # float32 output sums in float32, as asked
    assert m(np.array([[2.5, 0.0, 0.0, 0.0]]), dtype=np.float32).dtype == np.float32


def test_huge_tile_size_is_clamped_to_the_image(rng):
    x = random_image(rng, (4, 5, 3), np.float32)
    m = pm.Mixer(rng.standard_normal((2, 3)))
    np.testing.assert_array_equal(m(x, tile_size=2**40), m(x))
    cf = np.ascontiguousarray(np.moveaxis(x, -1, 0))
    np.testing.assert_array_equal(m(cf, channel_axis=0, tile_size=2**62), m(cf, channel_axis=0))


def test_non_native_byte_order_is_read(rng):
    m = pm.Mixer(rng.standard_normal((2, 3)))
    for dtype in (np.float32, np.float64, np.uint16):
        x = random_image(rng, (6, 7, 3), dtype)
        swapped = x.astype(x.dtype.newbyteorder(">"))
        np.testing.assert_array_equal(m(swapped), m(x))
        assert m(swapped).dtype == m(x).dtype  # float64 stays float64 whatever its byte order
        np.testing.assert_array_equal(m(swapped, nodata=x[0, 0, 0]), m(x, nodata=x[0, 0, 0]))


def test_int64_gets_a_hint():
    with pytest.raises(TypeError, match=r"int64 is not supported.*astype\(np.int32\)"):
        pm.mix(np.array([[1, 2, 3]], dtype=np.int64), [[1.0, 1.0, 1.0]])


def test_integer_fill_of_nodata_rounds_half_to_even():
    m = pm.Mixer(np.ones((1, 2)))
    x = np.array([[1.5, 0.0], [2.5, 0.0]])
    assert m(x, nodata=1.5, dtype=np.uint8)[0, 0] == 2
    assert m(x, nodata=2.5, dtype=np.uint8)[1, 0] == 2
    np.testing.assert_array_equal(m(x, nodata=2.5, dtype=np.uint8), m(x, nodata=2.5, dtype=np.uint8, backend="numpy"))
    with pytest.raises(TypeError, match="fits a float"):
        m(x, nodata=10**400)


def test_chunks_split_the_longest_axis(rng, monkeypatch):
    from pixelmix import config, plan
    from pixelmix.dispatch import prepare

    monkeypatch.setattr(config, "CHUNK_BYTES", 1024)
    x = random_image(rng, (1, 64, 64, 6), np.float32)[..., ::2]  # non-contiguous, axis 0 of length 1
    m = pm.Mixer(rng.standard_normal((2, 3)))
    request = prepare((m,), x, channel_axis=-1, dtype=None, nodata=None, out=None, tile_size=None)
    pieces = list(plan.pieces(request))
    assert len(pieces) > 1 and max(p[0].nbytes for p in pieces) <= 64 * 3 * 4 * 2
    np.testing.assert_array_equal(m(x), m(np.ascontiguousarray(x)))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_few_channels_last_into_one_output(rng, dtype):
    """RGB to gray (pixel by pixel, or as strided rows with nodata): same sums as channels first, bit for bit."""
    x = random_image(rng, (45, 67, 3), dtype)
    if np.dtype(dtype).kind == "f":
        x[2, 3, 1] = np.nan
    m = pm.Mixer(rng.standard_normal((1, 3)), [0.5])
    got = m(x)
    first = m(np.ascontiguousarray(np.moveaxis(x, -1, 0)), channel_axis=0)
    np.testing.assert_array_equal(got, np.moveaxis(first, 0, -1))
    assert_affine_close(got, m(x, backend="numpy"), m, x)
    for tile in (1, 13, 10**6):
        np.testing.assert_array_equal(m(x, tile_size=tile), got)
    assert np.isnan(m(x, nodata=x[4, 5, 2])[4, 5, 0])
    np.testing.assert_array_equal(m(x, dtype=np.int16), np.rint(np.nan_to_num(m(x, dtype=np.float64))).astype(np.int16))


@pytest.mark.parametrize(
    "k,dtype,shape",
    [(1, np.uint8, (45, 67, 3)), (3, np.uint8, (45, 67, 3)), (1, np.float32, (45, 67, 3)),
     (3, np.float32, (45, 67, 3)), (3, np.int16, (260, 260, 3))],  # a 16-bit table, signed offset
)
def test_rgb_programs_run_pixel_by_pixel_with_the_same_sums(rng, monkeypatch, k, dtype, shape):
    """Three channels last into one or three, after a lookup table and before elementwise steps.

    That kernel (kernels/cpu_pixels.py) mixes each pixel straight from the
    image into the output; it must give what the general kernel gives for
    the same program channels first, bit for bit, for every tile size.
    """
    from pixelmix.kernels import cpu_pixels

    calls = []
    run_pixels = cpu_pixels.run_pixels
    monkeypatch.setattr(cpu_pixels, "run_pixels", lambda *a, **kw: calls.append(1) or run_pixels(*a, **kw))
    x = random_image(rng, shape, dtype)
    if np.dtype(dtype).kind == "f":
        x[2, 3, 1] = np.nan
        x[4, 5, 2] = np.inf
    else:
        x[0, :3] = 0  # log(0) hits the floor
    m = pm.Mixer(rng.standard_normal((k, 3)), rng.standard_normal(k))
    first = np.ascontiguousarray(np.moveaxis(x, -1, 0))
    programs = [
        pm.Program([m]),
        pm.Program([ops.log(1.0), m]),  # a lookup table for uint8
        pm.Program([m, ops.relu(), ops.clip(-0.5, 2.0)]),
        pm.Program([ops.log(1.0), m, ops.relu()]),
        # a step whose multiply-add must not fuse (as it does not in the general kernel)
        pm.Program([pm.Mixer(np.full((k, 3), 1 / 900), np.full(k, 0.25)), ops.clip(0, 1), ops.srgb_encode()]),
    ]
    for i, program in enumerate(programs):
        calls.clear()
        got = program.apply(x, dtype=np.float64)
        # log on float input is computed, not looked up: then the general kernel runs
        assert bool(calls) == (np.dtype(dtype).kind in "iu" or i not in (1, 3))
        want = program.apply(x, dtype=np.float64, backend="numpy")
        finite = np.isfinite(want)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-12 * np.abs(want[finite]).max())
        np.testing.assert_array_equal(np.moveaxis(program.apply(first, channel_axis=0, dtype=np.float64), 0, -1), got)
        for tile in (1, 13, 10**6):
            np.testing.assert_array_equal(program.apply(x, dtype=np.float64, tile_size=tile), got)
        # integer output: rounded and saturated in the same pass
        as_int = program.apply(x, dtype=np.int16)
        np.testing.assert_array_equal(as_int, program.apply(first, channel_axis=0, dtype=np.int16).transpose(1, 2, 0))
    finite = np.where(np.isinf(x), 0, x)  # the bound is for finite sums
    assert_affine_close(m(finite), m(finite, backend="numpy"), m, finite)


def test_pixel_kernel_leaves_other_programs_to_the_general_one():
    from pixelmix.dispatch import prepare
    from pixelmix.kernels import cpu_pixels
    from pixelmix.lowering import kernel_args

    rgb = np.zeros((4, 4, 3), np.uint8)
    m3, relu = pm.Mixer(np.ones((3, 3))), ops.relu()

    def takes(steps, image, channel_axis=-1, dtype=None, nodata=None):
        request = prepare(
            tuple(steps), image, channel_axis=channel_axis, dtype=dtype, nodata=nodata, out=None, tile_size=None
        )
        kw = kernel_args(request, np.zeros((1, 1)), 0, 0)
        channels_last = request.axis == image.ndim - 1
        return cpu_pixels.takes(kw["table"], 0, channels_last, kw["is_int"], kw["use_nodata"], kw["check_nan"])

    assert takes([m3], rgb) and takes([m3, relu], rgb) and takes([pm.Mixer(np.ones((1, 3)))], rgb)
    assert takes([m3], rgb, dtype=np.uint8)
    assert not takes([m3], np.zeros((3, 4, 4), np.uint8), channel_axis=0)  # channels first
    assert not takes([m3], rgb, nodata=0)  # missing pixels need marking
    assert not takes([m3, relu], rgb, dtype=np.uint8)  # integer output after elementwise steps
    assert not takes([pm.Mixer(np.ones((2, 3)))], rgb)  # two outputs: no unrolled copy
    assert not takes([pm.Mixer(np.ones((3, 4)))], np.zeros((4, 4, 4), np.uint8))  # four channels
    assert not takes([m3, relu, m3], rgb)  # a second mix
    assert not takes([relu], rgb)  # no mix


# -- integer RGB output through float32 sums (kernels/cpu_pixels.py run_rounded) --------

# Weights as users give them: decimal fractions make exact ties (x.5) common,
# which only the float64 sums can settle; powers of two make them exact.
ROUNDING_CASES = [
    ([[0.2125, 0.7154, 0.0721]], [0.0]),  # scikit-image's gray
    ([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], [0.0, 128.0, 128.0]),
    ([[0.5, 0.25, 0.25]], [0.0]),  # every third value a tie, exactly
    ([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5], [1.0, -1.0, 0.5]], [0.5, -0.25, 3.5]),
    ([[1.1, -0.7, 0.3], [0.1, 0.2, 0.3], [-2.0, 0.0, 1.5]], [-7.5, 0.05, 300.0]),  # saturates both ways
]


def _rgb_codes(rng, dtype, n):
    """Every uint8 RGB triple class: random pixels plus the corners of the range."""
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, size=(n, 3), endpoint=True).astype(dtype)
    x[:8] = np.array(np.meshgrid(*[[info.min, info.max]] * 3)).reshape(3, -1).T
    return x


@pytest.mark.parametrize("weights,bias", ROUNDING_CASES)
@pytest.mark.parametrize("out_dtype", [np.uint8, np.int16, np.uint16])
def test_float32_rounding_pass_equals_the_float64_result_bit_for_bit(rng, monkeypatch, weights, bias, out_dtype):
    """Integer RGB output is summed in float32 where that provably rounds the same, else in float64.

    The result must be the float64 sums (the general kernel's, channels
    first) rounded half to even and saturated, for every tile size.
    """
    from pixelmix.kernels import cpu_pixels

    calls = []
    run_rounded = cpu_pixels.run_rounded
    monkeypatch.setattr(cpu_pixels, "run_rounded", lambda *a, **kw: calls.append(1) or run_rounded(*a, **kw))
    m = pm.Mixer(weights, bias)
    x = _rgb_codes(rng, np.uint8, 300_000).reshape(500, 600, 3)
    got = m(x, dtype=out_dtype)
    assert calls, "the float32 pass was not taken"
    info = np.iinfo(out_dtype)
    sums = m(x, dtype=np.float64)  # the float64 sums, bias first and channel by channel
    np.testing.assert_array_equal(got, np.clip(np.rint(sums), info.min, info.max).astype(out_dtype))
    first = m(np.ascontiguousarray(np.moveaxis(x, -1, 0)), channel_axis=0, dtype=out_dtype)  # the general kernel
    np.testing.assert_array_equal(got, np.moveaxis(first, 0, -1))
    for tile in (1, 7, 1000, 1025, 10**7):
        np.testing.assert_array_equal(m(x, dtype=out_dtype, tile_size=tile), got)


@pytest.mark.parametrize("n_out", [1, 3])
def test_float32_rounding_pass_is_exact_at_every_image_size(rng, monkeypatch, n_out):
    """Sixteen pixels at a time (64-byte loads for 8-bit input), the last few in float64.

    Every size from 1 to 70 pixels puts the image's end at each offset of the
    16-pixel groups; each image is the head of a larger buffer, and nothing
    past its end may be written.
    """
    from pixelmix.kernels import cpu_pixels

    calls = []
    run_rounded = cpu_pixels.run_rounded
    monkeypatch.setattr(cpu_pixels, "run_rounded", lambda *a, **kw: calls.append(1) or run_rounded(*a, **kw))
    m = pm.Mixer(ROUNDING_CASES[1][0][:n_out], ROUNDING_CASES[1][1][:n_out])
    for n in range(1, 71):
        buffer = np.full(3 * n + 64, 7, dtype=np.uint8)
        x = buffer[: 3 * n].reshape(n, 3)
        x[:] = rng.integers(0, 256, (n, 3))
        out = np.full(n * n_out + 64, 9, dtype=np.uint8)
        got = m(x, dtype=np.uint8, out=out[: n * n_out].reshape(n, n_out))
        expected = np.clip(np.rint(m(x, dtype=np.float64)), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(got, expected, err_msg=f"{n} pixels")
        assert (out[n * n_out :] == 9).all() and (buffer[3 * n :] == 7).all()
    assert len(calls) == 70


@pytest.mark.parametrize("in_dtype", [np.uint16, np.int16])
@pytest.mark.parametrize("n_out", [1, 3])
def test_float32_rounding_pass_reads_16_bit_input(rng, monkeypatch, in_dtype, n_out):
    from pixelmix.kernels import cpu_pixels

    calls = []
    run_rounded = cpu_pixels.run_rounded
    monkeypatch.setattr(cpu_pixels, "run_rounded", lambda *a, **kw: calls.append(1) or run_rounded(*a, **kw))
    weights = [[1 / 257, 0.5 / 257, 0.25 / 257], [0.1 / 257, -0.2 / 257, 0.3 / 257], [0.3 / 257, 0.3 / 257, 0.3 / 257]]
    m = pm.Mixer(weights[:n_out], [0.5] * n_out)  # 16 to 8 bits
    x = _rgb_codes(rng, in_dtype, 200_000).reshape(400, 500, 3)
    got = m(x, dtype=np.uint8)
    assert calls
    np.testing.assert_array_equal(got, np.clip(np.rint(m(x, dtype=np.float64)), 0, 255).astype(np.uint8))


def test_float32_rounding_pass_is_left_when_it_cannot_be_exact():
    from pixelmix.kernels.cpu_pixels import rounding_limit

    table = np.array([[0, 3, 1, 0]])
    gray = np.array([0.2125, 0.7154, 0.0721, 0.0])
    u8, u16, i32, f32 = (np.dtype(t) for t in ("uint8", "uint16", "int32", "float32"))
    limit = rounding_limit(table, gray, 0, False, u8, u8)
    assert limit is not None and 0.49 < limit < 0.5
    assert rounding_limit(table, gray, 0, False, u16, u8) is None  # sums near 65535: float32 too coarse
    assert rounding_limit(table, gray, 0, False, u8, np.dtype("int32")) is None  # output range too wide
    assert rounding_limit(table, gray, 0, False, i32, u8) is None  # int32 input
    assert rounding_limit(table, gray, 0, False, f32, u8) is None  # float input (NaN, and no bound)
    assert rounding_limit(table, gray, 1, True, u8, u8) is None  # after a lookup table
    assert rounding_limit(table, np.array([np.inf, 0, 0, 0]), 0, False, u8, u8) is None
    two = np.array([[0, 3, 1, 0], [1, 1, 1, 4]])
    assert rounding_limit(two, np.r_[gray, 0.0, 0.0], 0, False, u8, u8) is None  # a step after the mix


# -- many channels last: dot products four pixels by four outputs ----------------------


@pytest.mark.parametrize("c,k", [(40, 3), (70, 1), (70, 4), (70, 5), (70, 6), (70, 10), (70, 16)])
def test_dot_product_path_is_the_same_for_every_tile_and_image_size(rng, c, k):
    """Each pixel's dot products go through one compiled body, wherever it sits.

    With 64 channels or more, four pixels by four outputs at a time: tiles
    of 1 to 5 pixels put a pixel in every slot of the four-pixel window;
    images of fewer than four pixels are padded; a crop of the image gives
    the same values as the whole.
    """
    from pixelmix.kernels import cpu

    assert (c >= cpu.DOTS_BLOCK_MIN_IN) == (c == 70)
    x = random_image(rng, (7, 9, c), np.float32)
    m = pm.Mixer(rng.standard_normal((k, c)), rng.standard_normal(k))
    got = m(x)
    assert_affine_close(got, m(x, backend="numpy"), m, x)
    for tile in (1, 2, 3, 5, 13, 10**6):
        np.testing.assert_array_equal(m(x, tile_size=tile), got)
    for crop in (np.s_[:1, :1], np.s_[:1, :3], np.s_[2:3, 4:8], np.s_[3:]):
        np.testing.assert_array_equal(m(np.ascontiguousarray(x[crop])), got[crop])
        for tile in (1, 2):  # tiles that start inside an image of fewer than four pixels
            np.testing.assert_array_equal(m(np.ascontiguousarray(x[crop]), tile_size=tile), got[crop])


@pytest.mark.parametrize("k", [5, 7, 8, 9])
def test_channels_first_and_last_sum_alike_with_outputs_in_blocks_of_four(rng, k):
    """The affine step updates four output rows at a time; rows past the last are junk, never written."""
    x = random_image(rng, (6, 11, 9), np.uint16)
    m = pm.Mixer(rng.standard_normal((k, 9)), rng.standard_normal(k))
    last = m(x)
    first = m(np.ascontiguousarray(np.moveaxis(x, -1, 0)), channel_axis=0)
    np.testing.assert_array_equal(np.moveaxis(first, 0, -1), last)
    assert_affine_close(last, m(x, backend="numpy"), m, x)
    program = pm.Program([m, ops.relu(), pm.Mixer(rng.standard_normal((2, k)))])  # affine steps on scratch
    np.testing.assert_allclose(program(x, dtype=np.float64), program(x, dtype=np.float64, backend="numpy"),
                               rtol=1e-12, atol=1e-9)
