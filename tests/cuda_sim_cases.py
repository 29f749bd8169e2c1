"""The CUDA backend against the NumPy oracle (``backend="numpy"``).

Not collected by a plain ``pytest`` run (the name does not start with
``test_``): ``tests/test_cuda.py`` runs this file in a subprocess, either
under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set before
``numba.cuda`` is imported, so it never leaks into the other test modules)
with tiny images and tiny blocks, or on a real GPU (``PIXELMIX_TEST_GPU=1``)
with larger images and real-hardware tolerances.

Affine results are compared with :func:`tests.helpers.assert_affine_close`:
the GPU fuses each multiply-add (FMA) and the simulator does not, and both
must stay within the rounding of the partial sums of the oracle.
"""

import numpy as np
import pytest

import pixelmix as pm
from pixelmix import config, ops
from pixelmix.backends import cuda as gpu
from pixelmix.dispatch import prepare
from pixelmix.kernels.cuda import simulated

from .helpers import DTYPES, assert_affine_close, random_image

if not gpu.usable():  # this module only runs where test_cuda.py found CUDA usable
    pytest.skip(f"CUDA not usable: {gpu.unusable_reason()}", allow_module_level=True)

from numba import cuda  # noqa: E402  (after the check: numba.cuda must import)

SIM = simulated()
# Shapes: a few hundred pixels in the simulator (Python per thread), none a
# multiple of the block size; about a hundred thousand on a GPU.
CF = (3, 5, 7) if SIM else (5, 301, 259)  # channels first
CL = (6, 7, 3) if SIM else (301, 259, 5)  # channels last
ZCYX = (2, 3, 4, 5) if SIM else (3, 4, 97, 101)  # both A and B > 1
LAYOUTS = [(CF, 0), (CL, -1), (ZCYX, 1)]
# Transcendental steps: the simulator uses Python's double-precision math,
# the GPU CUDA's libdevice (a few ulp).
TRANSCENDENTAL = dict(rtol=2e-6, atol=1e-6) if SIM else dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(autouse=True)
def small_launches(monkeypatch):
    """Tiny blocks, few blocks and tiny tiles: block edges, grid-stride loops, many tiles."""
    monkeypatch.setattr(config, "THREADS_PER_BLOCK", 8 if SIM else 64)
    monkeypatch.setattr(config, "MAX_BLOCKS", 3 if SIM else 40)
    monkeypatch.setattr(config, "GPU_TILE_BYTES", 200 if SIM else 2**18)


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


def _mixer(rng, c, k):
    return pm.Mixer(rng.standard_normal((k, c)), rng.standard_normal(k))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape,axis", LAYOUTS, ids=["CYX", "YXC", "ZCYX"])
def test_affine_every_dtype_and_layout(rng, dtype, shape, axis):
    x = random_image(rng, shape, dtype)
    m = _mixer(rng, shape[axis], 4)
    got = m.apply(x, channel_axis=axis, backend="cuda")
    want = m.apply(x, channel_axis=axis, backend="numpy")
    assert isinstance(got, np.ndarray)
    assert_affine_close(got, want, m, x, channel_axis=axis)


@pytest.mark.parametrize("out_dtype", [np.uint8, np.int16, np.uint16, np.int32])
def test_integer_output_rounds_half_to_even_and_saturates(out_dtype):
    # Weights and values in halves: the arithmetic is exact, so ties are real ties.
    values = np.array([-1e6, -70000.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.49, 254.5, 255.5, 65535.5, 1e6, np.inf, -np.inf])
    x = np.stack([values, np.zeros_like(values)], axis=-1).astype(np.float64)
    m = pm.Mixer([[1.0, 0.5], [-1.0, 0.0]], [0.0, 0.5])
    got = m.apply(x, dtype=out_dtype, backend="cuda")
    want = m.apply(x, dtype=out_dtype, backend="numpy")
    assert got.dtype == np.dtype(out_dtype)
    np.testing.assert_array_equal(got, want)


def test_nan_and_nodata_blank_every_output_channel(rng):
    x = random_image(rng, CF, np.float32)
    x[1, 0, 0] = np.nan
    x[0, 2, 3] = -7.0
    x[2, -1, -1] = -7.0
    m = _mixer(rng, CF[0], 3)
    for kwargs in (dict(), dict(nodata=-7.0), dict(nodata=-7.0, dtype=np.int16), dict(dtype=np.uint8)):
        got = m.apply(x, channel_axis=0, backend="cuda", **kwargs)
        want = m.apply(x, channel_axis=0, backend="numpy", **kwargs)
        if got.dtype.kind == "f":
            assert np.isnan(got[:, 0, 0]).all()
            assert_affine_close(got, want, m, x, channel_axis=0)
        else:
            # Blanked pixels hold the fill value exactly; the others may differ by
            # one where the sum lies within rounding of a half.
            blank = np.isnan(m.apply(x, channel_axis=0, backend="numpy", nodata=kwargs.get("nodata")))
            np.testing.assert_array_equal(got[blank], want[blank])
            assert np.abs(got.astype(np.int64) - want).max() <= 1


def test_integer_nodata_on_uint16(rng):
    x = random_image(rng, CL, np.uint16)
    x[0, 0, 1] = 0
    x[-1, -1, 0] = 0
    m = _mixer(rng, CL[-1], 2)
    got = m.apply(x, nodata=0, backend="cuda")
    want = m.apply(x, nodata=0, backend="numpy")
    assert np.isnan(got[0, 0]).all() and np.isnan(got[-1, -1]).all()
    assert_affine_close(got, want, m, x)


def test_elementwise_only_program_spreads_nan_across_channels(rng):
    x = random_image(rng, CL, np.float32)
    x[1, 2, 0] = np.nan
    x[2, 3, 2] = 4.0
    for program in (pm.Program([ops.relu()]), pm.Program([ops.clip(-1.0, 2.0), ops.leaky_relu(0.25)])):
        got = program.apply(x, nodata=4.0, backend="cuda")
        want = program.apply(x, nodata=4.0, backend="numpy")
        assert np.isnan(got[1, 2]).all() and np.isnan(got[2, 3]).all()
        np.testing.assert_array_equal(got, want)


def test_fused_log_mixer_clip_program(rng):
    x = random_image(rng, CF, np.uint16)
    m = _mixer(rng, CF[0], 3)
    net = ops.clip(-2.0, 2.0) @ m @ ops.log(1e-3)
    got = net(x, channel_axis=0, backend="cuda")
    want = net(x, channel_axis=0, backend="numpy")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, **TRANSCENDENTAL)
    np.testing.assert_allclose(got, net(x, channel_axis=0, backend="cpu"), **TRANSCENDENTAL)


@pytest.mark.parametrize(
    "step",
    [ops.relu(), ops.exp(), ops.srgb_encode(), ops.srgb_decode(), ops.sigmoid(), ops.tanh()],
    ids=repr,
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_step_between_two_mixers(rng, step, dtype):
    x = random_image(rng, CL, dtype) / 4
    net = _mixer(rng, 4, 2) @ step @ _mixer(rng, CL[-1], 4)
    got = net(x, backend="cuda")
    want = net(x, backend="numpy")
    assert got.dtype == np.dtype(dtype)
    tol = TRANSCENDENTAL if np.dtype(dtype) == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, want, **tol)


def test_lookup_table_path_for_uint8(rng):
    x = random_image(rng, CL, np.uint8)
    m = _mixer(rng, CL[-1], 2)
    net = m @ ops.srgb_decode()
    got = net(x, backend="cuda")  # the leading step becomes a 256-entry table per channel
    want = net(x, backend="numpy")
    np.testing.assert_allclose(got, want, **TRANSCENDENTAL)


def test_lookup_table_absorbing_a_diagonal_mixer(rng):
    """uint8 -> scale -> sRGB decode -> mixer: the scale goes into the table too."""
    x = random_image(rng, CL, np.uint8)
    c = CL[-1]
    net = _mixer(rng, c, 2) @ ops.srgb_decode() @ pm.Mixer(np.eye(c) / 255)
    np.testing.assert_allclose(net(x, backend="cuda"), net(x, backend="numpy"), **TRANSCENDENTAL)


@pytest.mark.parametrize("which", ["log", "scale+decode"])
def test_per_channel_program_entirely_in_the_table(rng, which):
    x = random_image(rng, CL, np.uint8)
    c = CL[-1]
    net = pm.Program([ops.log(1.0)]) if which == "log" else ops.srgb_decode() @ pm.Mixer(np.eye(c) / 255)
    np.testing.assert_allclose(net(x, backend="cuda"), net(x, backend="numpy"), **TRANSCENDENTAL)


def test_wide_program_beyond_register_lanes(rng):
    x = random_image(rng, CL, np.float32)
    m1 = _mixer(rng, CL[-1], 20)  # 20 outputs: 32 scratch lanes
    m2 = _mixer(rng, 20, 3)
    net = m2 @ ops.relu() @ m1
    got = net(x, backend="cuda")
    want = net(x, backend="numpy")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_weights_from_global_memory_when_shared_is_too_small(rng, monkeypatch):
    x = random_image(rng, CF, np.uint16)
    m = _mixer(rng, CF[0], 4)
    staged = m.apply(x, channel_axis=0, backend="cuda")
    monkeypatch.setattr(config, "SHARED_BYTES", 0)
    np.testing.assert_array_equal(m.apply(x, channel_axis=0, backend="cuda"), staged)


def test_block_size_and_grid_are_launch_parameters(rng):
    x = random_image(rng, ZCYX, np.float32)
    m = _mixer(rng, ZCYX[1], 3)
    request = prepare((m,), x, channel_axis=1, dtype=None, nodata=None, out=None, tile_size=None)
    results = []
    for threads, blocks in ((1, 1), (3, 2), (32, None), (7, 5)):
        request.out[...] = -1
        gpu.run_cuda(request, threads_per_block=threads, max_blocks=blocks)
        results.append(request.out.copy())
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    assert_affine_close(results[0], m.apply(x, channel_axis=1, backend="numpy"), m, x, channel_axis=1)


def test_non_contiguous_image_and_out_stream_in_many_tiles(rng):
    base = random_image(rng, (CF[1], CF[2], CF[0] + 2), np.int16)
    x = np.moveaxis(base, -1, 0)[1:-1]  # channels first, not contiguous
    m = _mixer(rng, CF[0], 2)
    out = np.zeros((CF[1], CF[2], 2), np.float32)
    out_view = np.moveaxis(out, -1, 0)  # not contiguous either
    result = m.apply(x, channel_axis=0, out=out_view, backend="cuda", dtype=np.float32)
    assert result is out_view
    assert_affine_close(out_view, m.apply(x, channel_axis=0, backend="numpy"), m, x, channel_axis=0)


@pytest.mark.parametrize("sum_to_one", [False, True])
def test_constrained_unmixing_on_the_gpu(rng, sum_to_one):
    """NNLS / FCLS with the residual: the CUDA twin of the solver against the NumPy reference."""
    e = rng.random((3, CL[-1])) + 0.1
    x = rng.standard_normal(CL) + 1.0
    x[0, 0, 0] = np.nan
    u = pm.unmixer(e, nonneg=True, sum_to_one=sum_to_one, residual=True)
    got = u(x, backend="cuda")
    want = u(x, backend="numpy")
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert np.isnan(got[0, 0]).all() and (got[1:, :, :3] >= 0).all()


def test_device_arrays_stay_on_the_device(rng):
    x = random_image(rng, CF, np.uint16)
    m = _mixer(rng, CF[0], 3)
    want = m.apply(x, channel_axis=0, backend="numpy")
    d_x = cuda.to_device(x)
    for backend in ("cuda", "auto"):
        d_y = m.apply(d_x, channel_axis=0, backend=backend)
        assert gpu.is_device_array(d_y) and d_y.shape == want.shape
        assert_affine_close(d_y.copy_to_host(), want, m, x, channel_axis=0)
    d_out = cuda.device_array(want.shape, np.float32)
    assert m.apply(d_x, channel_axis=0, out=d_out) is d_out
    assert_affine_close(d_out.copy_to_host(), want, m, x, channel_axis=0)
    d_int = cuda.device_array(want.shape, np.int32)
    m.apply(d_x, channel_axis=0, out=d_int)
    assert np.abs(d_int.copy_to_host().astype(np.int64) - m.apply(x, channel_axis=0, dtype=np.int32, backend="numpy")).max() <= 1


def test_device_array_errors(rng):
    x = random_image(rng, CL, np.float32)
    m = _mixer(rng, CL[-1], 2)
    d_x = cuda.to_device(x)
    with pytest.raises(ValueError, match="backend='cpu' cannot read GPU arrays"):
        m.apply(d_x, backend="cpu")
    with pytest.raises(ValueError, match="non-contiguous GPU array"):
        m.apply(cuda.to_device(random_image(rng, CL[:2] + (6,), np.float32))[:, :, ::2])
    with pytest.raises(TypeError, match="out is ndarray"):
        m.apply(d_x, out=np.empty(CL[:2] + (2,), np.float32))
    with pytest.raises(TypeError, match="image is on the host"):
        m.apply(x, out=cuda.device_array(CL[:2] + (2,), np.float32))
    with pytest.raises(ValueError, match="expects 3"):
        pm.Mixer(np.ones((1, 3))).apply(cuda.to_device(np.ones((4, 2), np.float32)))
    d_same = cuda.to_device(np.zeros(CL[:2] + (3,), np.float32))
    with pytest.raises(ValueError, match="overlaps"):
        pm.Mixer(np.eye(3)).apply(d_same, out=d_same)


@pytest.mark.skipif(SIM, reason="CuPy and PyTorch CUDA arrays need a real GPU")
def test_cupy_and_torch_arrays_give_their_own_kind(rng):
    x = random_image(rng, CF, np.uint16)
    m = _mixer(rng, CF[0], 3)
    want = m.apply(x, channel_axis=0, backend="numpy")
    tried = 0
    try:
        import cupy
    except ImportError:
        pass
    else:
        y = m.apply(cupy.asarray(x), channel_axis=0)
        assert isinstance(y, cupy.ndarray)
        assert_affine_close(cupy.asnumpy(y), want, m, x, channel_axis=0)
        tried += 1
    try:
        import torch
    except ImportError:
        pass
    else:
        if torch.cuda.is_available():
            y = m.apply(torch.from_numpy(x.astype(np.int32)).cuda(), channel_axis=0)
            assert isinstance(y, torch.Tensor) and y.is_cuda
            assert_affine_close(y.cpu().numpy(), m.apply(x.astype(np.int32), channel_axis=0, backend="numpy"), m, x, channel_axis=0)
            tried += 1
    if not tried:
        pytest.skip("neither CuPy nor PyTorch with CUDA is installed")


def test_bench_suite_runs_its_implementations(capsys):
    from pixelmix.bench import cuda as suite

    shape = (3, 4, 5) if SIM else (8, 256, 256)
    cases = suite.build_cases(shape, 2)
    assert [c.name for c in cases] and all(c.impls for c in cases)
    for case in cases:
        for fn in case.impls.values():
            fn()
