"""Every bad request is refused before any work, with a message that says how to fix it."""

import numpy as np
import pytest

import pixelmix as pm


@pytest.fixture
def m():
    return pm.Mixer(np.ones((2, 4)))


def test_wrong_channel_count_names_both_numbers_and_suggests_axis(m):
    with pytest.raises(ValueError, match=r"3 channels on axis -1 but the mixer expects 4.*channel_axis=0"):
        m(np.zeros((4, 5, 3)))


def test_channel_axis_out_of_range(m):
    with pytest.raises(np.exceptions.AxisError, match="channel_axis=3 is out of range"):
        m(np.zeros((4, 5, 4)), channel_axis=3)
    with pytest.raises(np.exceptions.AxisError):
        m(np.zeros((4, 5, 4)), channel_axis=-4)
    with pytest.raises(TypeError, match="channel_axis must be an integer"):
        m(np.zeros((4, 5, 4)), channel_axis=1.0)


@pytest.mark.parametrize("weights", [[[1.0, np.nan]], [[np.inf, 0.0]]])
def test_non_finite_weights(weights):
    with pytest.raises(ValueError, match="finite"):
        pm.Mixer(weights)


def test_bad_weights_shape():
    with pytest.raises(ValueError, match="2-D"):
        pm.Mixer([1.0, 2.0])
    with pytest.raises(ValueError, match="2-D"):
        pm.Mixer(np.zeros((0, 3)))


def test_bias_of_wrong_length():
    with pytest.raises(ValueError, match="bias must have 2 values"):
        pm.Mixer(np.ones((2, 3)), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="finite"):
        pm.Mixer(np.ones((2, 3)), [1.0, np.nan])


@pytest.mark.parametrize("dtype", [np.complex64, object, bool, np.int64])
def test_unsupported_dtype(m, dtype):
    with pytest.raises(TypeError, match="not supported|cannot be mixed"):
        m(np.zeros((3, 4), dtype=dtype))


@pytest.mark.parametrize("dtype", [np.int8, np.uint32, np.float16])
def test_converted_dtypes_are_mixed_exactly(m, dtype):
    """int8, uint32 and float16 are read piece by piece in a kernel dtype that holds every value."""
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(dtype)
    x = np.linspace(float(info.min), float(info.max), 3 * 4 * 4).reshape(3, 4, 4).astype(dtype)
    want = m(x.astype(np.float64), dtype=np.float32, backend="numpy")
    np.testing.assert_array_equal(m(x, backend="numpy"), want)
    got = m(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * float(info.max))
    np.testing.assert_array_equal(m(x[::-1]), got[::-1])  # non-contiguous: converted in pieces


def test_unsupported_output_dtype(m):
    with pytest.raises(TypeError, match="output dtype"):
        m(np.zeros((3, 4)), dtype=np.complex128)


def test_out_wrong_shape_or_dtype(m):
    x = np.zeros((3, 5, 4), np.float32)
    with pytest.raises(ValueError, match=r"out has shape \(3, 5, 4\) but the result has shape \(3, 5, 2\)"):
        m(x, out=np.zeros((3, 5, 4), np.float32))
    with pytest.raises(TypeError, match="out has dtype float64 but dtype=float32"):
        m(x, out=np.zeros((3, 5, 2), np.float64), dtype=np.float32)
    ro = np.zeros((3, 5, 2), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        m(x, out=ro)
    with pytest.raises(TypeError, match="NumPy array"):
        m(x, out=[[0.0]])


def test_out_untouched_when_request_is_bad(m):
    out = np.full((3, 5, 2), 7.0, np.float32)
    with pytest.raises(ValueError, match="cannot occur"):
        m(np.zeros((3, 5, 4), np.uint16), out=out, nodata=-1)
    with pytest.raises(ValueError, match="tile_size"):
        m(np.zeros((3, 5, 4), np.uint16), out=out, tile_size=0)
    assert (out == 7.0).all()


def test_nodata_that_cannot_occur(m):
    with pytest.raises(ValueError, match="cannot occur in uint16"):
        m(np.zeros((3, 4), np.uint16), nodata=-1)
    with pytest.raises(ValueError, match="NaN pixels are always"):
        m(np.zeros((3, 4)), nodata=np.nan)


def test_bad_tile_size_and_backend(m):
    x = np.zeros((3, 4))
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="tile_size"):
            m(x, tile_size=bad)
    with pytest.raises(ValueError, match="backend='gpu' is not one of"):
        m(x, backend="gpu")


def test_names_must_match_channel_counts():
    with pytest.raises(ValueError, match="input_names has 2 names but there are 3"):
        pm.Mixer(np.ones((1, 3)), input_names=["a", "b"])
    with pytest.raises(TypeError, match="sequence of strings"):
        pm.Mixer(np.ones((1, 3)), output_names="gray")
