"""pixelmix as a scikit-image backend, and inside scikit-image's apply_parallel / dask tiles."""

import subprocess
import sys
import warnings

import numpy as np
import pixelmix_skimage as pxs
import pytest
from pixelmix_skimage import backend
from skimage import color
from skimage.color import colorconv
from skimage.util import _backends


def test_entry_points_are_installed_and_point_here():
    from importlib.metadata import entry_points

    (impl,) = [ep for ep in entry_points(group="skimage_backends") if ep.name == "pixelmix"]
    (info,) = [ep for ep in entry_points(group="skimage_backend_infos") if ep.name == "pixelmix"]
    assert impl.load() is backend
    assert info.load() is backend.info
    assert "pixelmix" in _backends.all_backends()


def test_info_lists_every_implemented_function():
    supported = backend.info().supported_functions
    assert "skimage.color:rgb2hed" in supported and "skimage.color:separate_stains" in supported
    for name in supported:
        module, func = name.split(":")
        assert module == "skimage.color"
        assert getattr(color, func)  # a real scikit-image function
        assert backend.get_implementation(name) is getattr(pxs, func)


def test_info_and_can_has_import_nothing_heavy():
    code = (
        "import sys, time, numpy as np\n"
        "t0 = time.perf_counter()\n"
        "from pixelmix_skimage import backend\n"
        "backend.info()\n"
        "x = np.zeros((8, 8, 3), np.uint8)\n"
        "t1 = time.perf_counter()\n"
        "for _ in range(1000):\n"
        "    backend.can_has('skimage.color:rgb2hed', x)\n"
        "t2 = time.perf_counter()\n"
        "heavy = [m for m in ('numba', 'pixelmix.backends.cpu', 'dask', 'torch', 'skimage.color') if m in sys.modules]\n"
        "print(heavy, (t2 - t1) / 1000)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy, per_call = out.rsplit("]", 1)
    assert heavy.strip("[ ") == ""
    assert float(per_call) < 1e-3


@pytest.mark.parametrize(
    "args, kwargs",
    [
        (([[[0, 0, 0]]],), {}),  # a list
        ((np.ma.zeros((2, 2, 3)),), {}),  # a masked array
        ((np.zeros((2, 2, 3), np.int8),), {}),  # a dtype the kernel does not read
        ((np.zeros((2, 2, 3), np.complex64),), {}),
        ((np.zeros((2, 2, 3)),), {"channel_axis": (0,)}),  # not an int
        ((np.zeros((2, 2, 3)),), {"unknown": 1}),
        ((), {}),
    ],
)
def test_can_has_declines_what_pixelmix_does_not_handle(args, kwargs):
    assert not backend.can_has("skimage.color:rgb2gray", *args, **kwargs)


def test_can_has_checks_names_and_stain_matrices():
    x = np.zeros((2, 2, 3), np.uint16)
    assert backend.can_has("skimage.color:rgb2gray", x, channel_axis=0)
    assert backend.can_has("skimage.color:separate_stains", x, colorconv.hed_from_rgb)
    assert backend.can_has("skimage.color:separate_stains", x, conv_matrix=colorconv.hed_from_rgb)
    assert not backend.can_has("skimage.color:separate_stains", x)
    assert not backend.can_has("skimage.color:separate_stains", x, [[1, 0, 0]])
    assert not backend.can_has("skimage.color:rgb2lab", x)
    assert not backend.can_has("skimage.filters:gaussian", x)
    with pytest.raises(LookupError, match="rgb2lab"):
        backend.get_implementation("skimage.color:rgb2lab")


def _dispatched(func, *args, **kwargs):
    """Call ``func`` and return (result, the backend names it was dispatched to)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = func(*args, **kwargs)
    names = [str(w.message) for w in caught if issubclass(w.category, _backends.DispatchNotification)]
    return result, names


def test_skimage_dispatch_routes_colour_calls_to_pixelmix(monkeypatch):
    monkeypatch.delenv("SKIMAGE_NO_DISPATCHING", raising=False)
    # scikit-image 0.26 marks no colour function dispatchable: wrap them as it would.
    rgb2hed = _backends.dispatchable(colorconv.rgb2hed)
    separate = _backends.dispatchable(colorconv.separate_stains)
    assert rgb2hed is not colorconv.rgb2hed

    calls = []
    real = backend.get_implementation

    def spy(name):
        calls.append(name)
        return real(name)

    monkeypatch.setattr(backend, "get_implementation", spy)
    x = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    got, notes = _dispatched(rgb2hed, x)
    assert calls == ["skimage.color:rgb2hed"]
    assert notes and "'pixelmix' backend" in notes[0]
    np.testing.assert_allclose(got, colorconv.rgb2hed(x), rtol=0, atol=1e-14)

    got, notes = _dispatched(separate, np.moveaxis(x, -1, 0).copy(), colorconv.hdx_from_rgb, channel_axis=0)
    assert calls[-1] == "skimage.color:separate_stains" and notes

    # Declined calls stay in scikit-image, silently.
    calls.clear()
    got, notes = _dispatched(rgb2hed, x.astype(np.int8))
    assert calls == [] and notes == []
    np.testing.assert_array_equal(got, colorconv.rgb2hed(x.astype(np.int8)))


def test_dispatch_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("SKIMAGE_NO_DISPATCHING", "1")
    assert _backends.dispatchable(colorconv.rgb2hed) is colorconv.rgb2hed


def test_skimage_apply_parallel_runs_rgb_to_rgb_conversions():
    from skimage.util import apply_parallel

    x = np.random.default_rng(1).integers(0, 256, (60, 50, 3), dtype=np.uint8)
    # dtype must be given: dask would otherwise probe with a 1-channel array.
    got = apply_parallel(pxs.rgb2hed, x, chunks=(32, 32, 3), channel_axis=-1, dtype=np.float64)
    np.testing.assert_array_equal(got, pxs.rgb2hed(x))


@pytest.mark.parametrize("channel_axis", [-1, 0])
def test_apply_tiled_changes_channel_count(channel_axis):
    import dask.array as da

    rng = np.random.default_rng(2)
    x = np.moveaxis(rng.integers(0, 65536, (70, 45, 3), dtype=np.uint16), -1, channel_axis).copy()
    kw = {"channel_axis": channel_axis}

    gray = pxs.apply_tiled(pxs.rgb2gray, x, chunks=32, channel_axis=channel_axis, extra_keywords=kw)
    np.testing.assert_array_equal(gray, pxs.rgb2gray(x, **kw))

    w = rng.standard_normal((2, 3))
    lazy = pxs.apply_tiled(
        pxs.mix_channels, da.from_array(x, chunks=32), channel_axis=channel_axis,
        extra_arguments=(w,), extra_keywords=kw,
    )
    expected = pxs.mix_channels(x, w, **kw)
    assert isinstance(lazy, da.Array)
    assert lazy.shape == expected.shape and lazy.dtype == expected.dtype
    assert lazy.chunks[channel_axis % 3] == (2,)
    np.testing.assert_array_equal(lazy.compute(), expected)

    with pytest.raises(np.exceptions.AxisError):
        pxs.apply_tiled(pxs.rgb2gray, x, channel_axis=3)
