"""The UNMIX step (kernels/unmix.py) against outside oracles, through the CPU and CUDA kernels.

Oracles: ``scipy.optimize.nnls`` for NNLS, an exact FCLS that enumerates
every face (set of free abundances) and keeps the best feasible face
minimiser, and the closed forms of plain and sum-to-one least squares.
The kernels are driven directly with a hand-built program table (one row
``(UNMIX, C, K + residual, offset)``), as the lowering will build it.
The CUDA twin runs in a child process under Numba's CUDA simulator (and on
a real GPU with ``PIXELMIX_TEST_GPU=1``), against the CPU kernel and the
oracles.
"""

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import nnls

from pixelmix.backends.cpu import raw_output
from pixelmix.kernels import cpu, cpu_pixels, unmix
from pixelmix.kernels import elementwise as ew

ROOT = Path(__file__).resolve().parent.parent
MODES = {"ls": (False, False), "sto": (False, True), "nnls": (True, False), "fcls": (True, True)}


# -- oracles ---------------------------------------------------------------------


def face_solutions(E, Y, P, sum_to_one):
    """Minimisers of ||E^T a - y||^2 with a_i = 0 off the face P (and sum(a) = 1): (N, K)."""
    K = E.shape[0]
    G = E @ E.T
    B = Y @ E.T  # (N, K)
    m = len(P)
    out = np.zeros((len(Y), K))
    if m == 0:
        return out
    Gp = G[np.ix_(P, P)]
    if sum_to_one:
        M = np.zeros((m + 1, m + 1))
        M[:m, :m] = Gp
        M[:m, m] = M[m, :m] = 1.0
        rhs = np.concatenate([B[:, P], np.ones((len(Y), 1))], axis=1)
        out[:, P] = np.linalg.solve(M, rhs.T).T[:, :m]
    else:
        out[:, P] = np.linalg.solve(Gp, B[:, P].T).T
    return out


def exact_constrained(E, Y, sum_to_one):
    """Exact NNLS or FCLS by enumerating faces: the best objective among feasible face minimisers.

    The optimum is the minimiser of its own face and feasible, and every
    feasible point's objective is at least the optimum's, so this is exact
    (up to the conditioning of the face systems).
    """
    K = E.shape[0]
    best = np.full(len(Y), np.inf)
    result = np.full((len(Y), K), np.nan)
    for m in range(0 if not sum_to_one else 1, K + 1):
        for P in itertools.combinations(range(K), m):
            a = face_solutions(E, Y, list(P), sum_to_one)
            scale = np.abs(a).max(axis=1) + 1.0
            ok = (a >= -1e-10 * scale[:, None]).all(axis=1)
            a = np.maximum(a, 0.0)
            f = ((a @ E - Y) ** 2).sum(axis=1)
            take = ok & (f < best)
            best[take] = f[take]
            result[take] = a[take]
    return result


def oracle(E, Y, mode):
    nonneg, sum_to_one = MODES[mode]
    if mode == "nnls":
        return np.array([nnls(E.T, y)[0] for y in Y])
    if nonneg:
        return exact_constrained(E, Y, sum_to_one)
    return face_solutions(E, Y, list(range(E.shape[0])), sum_to_one)


def rms_residual(E, Y, A):
    return np.sqrt(((A @ E - Y) ** 2).mean(axis=1))


# -- driving the CPU kernel ------------------------------------------------------


def run_cpu(x3, table, params, acc, n_out, tile=64, start=0, lut=None, check_nan=False):
    """``cpu.run_program`` on ``x3`` (A, C, B) with a float output of dtype ``acc``."""
    A, C, B = x3.shape
    out = np.empty((A, n_out, B), dtype=acc)
    width = int(max(C, table[:, 2].max()))
    use_lut = lut is not None
    lut = np.zeros((1, 1), acc) if lut is None else lut
    x3 = x3.view()
    x3.flags.writeable = False  # the driver's view type: no specialisation of its own
    out_bytes, out_code = raw_output(out)
    params = params.astype(acc)
    cpu.run_program(
        x3, out_bytes, out_code, table, params, start, width, tile,
        lut, 0, use_lut, 0.0, False, check_nan, False, 0.0, 0.0, 0.0, 4, cpu.finish_address(params, table, out_bytes),
    )
    return out


def unmix_cpu(E, Y, mode, dtype=np.float64, residual=False, tile=64, channels_first=False):
    """Abundances (and residual) of the pixels ``Y`` (N, C) through the CPU kernel: (N, K[+1])."""
    nonneg, sum_to_one = MODES[mode]
    K, C = E.shape
    params = unmix.pack(E, nonneg, sum_to_one, residual)
    n_out = unmix.n_outputs(params)
    table = np.array([[ew.UNMIX, C, n_out, 0]], dtype=np.int64)
    Y = np.asarray(Y, dtype=dtype)
    if channels_first:
        out = run_cpu(np.ascontiguousarray(Y.T)[None], table, params, dtype, n_out, tile)
        return out[0].T
    return run_cpu(np.ascontiguousarray(Y)[:, :, None], table, params, dtype, n_out, tile)[:, :, 0]


def endmembers(rng, K, C, conditioned):
    """Positive spectra; ill-conditioned ones have singular values down to 1e-3 of the largest."""
    E = rng.random((K, C)) + 0.1
    if conditioned == "ill":
        u, _, vt = np.linalg.svd(E, full_matrices=False)
        E = (u * np.logspace(0, -3, K)) @ vt * 10
    return E


def pixels(rng, E, n, noise=0.1):
    """Mixed pixels: Dirichlet abundances, some on the faces (zeros), plus noise."""
    K, C = E.shape
    A = rng.dirichlet(np.full(K, 0.7), n)
    A[: n // 3, rng.integers(0, K)] = 0.0
    A /= A.sum(axis=1, keepdims=True)
    return A @ E + noise * np.abs(E).mean() * rng.standard_normal((n, C))


CASES = [(2, 4), (3, 7), (4, 32), (5, 12), (6, 40), (6, 6)]


# -- tests -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("conditioned", ["well", "ill"])
@pytest.mark.parametrize("K,C", CASES)
def test_float64_equals_the_exact_solver(mode, conditioned, K, C):
    rng = np.random.default_rng([K, C, len(mode), len(conditioned)])
    E = endmembers(rng, K, C, conditioned)
    Y = pixels(rng, E, 60)
    got = unmix_cpu(E, Y, mode)
    want = oracle(E, Y, mode)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * max(1.0, np.abs(want).max()))
    nonneg, sum_to_one = MODES[mode]
    if nonneg:
        assert (got >= 0).all()
        # the constrained problems were really constrained: some abundances are held at zero
        assert (got == 0).any()
    if sum_to_one:
        np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=0, atol=1e-9)


@pytest.mark.parametrize("mode", ["nnls", "fcls", "sto"])
@pytest.mark.parametrize("conditioned", ["well", "ill"])
def test_float32_keeps_the_constraints_within_float32_rounding(mode, conditioned):
    rng = np.random.default_rng(7 + len(conditioned))
    eps = np.finfo(np.float32).eps
    for K, C in CASES:
        E = endmembers(rng, K, C, conditioned)
        Y = pixels(rng, E, 80)
        got = unmix_cpu(E, Y, mode, dtype=np.float32)
        assert got.dtype == np.float32
        nonneg, sum_to_one = MODES[mode]
        if nonneg:
            assert (got >= 0).all()
        if sum_to_one:
            total = got.astype(np.float64).sum(axis=1)
            np.testing.assert_allclose(total, 1.0, rtol=0, atol=2 * K * eps)
        if conditioned == "well":
            want = oracle(E, Y.astype(np.float32).astype(np.float64), mode)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_residual_is_the_rms_over_the_input_channels(dtype):
    rng = np.random.default_rng(3)
    E = endmembers(rng, 4, 32, "well")
    Y = pixels(rng, E, 200)
    for mode in MODES:
        got = unmix_cpu(E, Y, mode, dtype=dtype, residual=True)
        assert got.shape == (200, 5)
        want = rms_residual(E, Y, got[:, :4].astype(np.float64))
        rtol = 1e-12 if dtype == np.float64 else 1e-4
        np.testing.assert_allclose(got[:, 4], want, rtol=rtol, atol=rtol * np.abs(Y).max())
    # a pixel that is exactly a mix has no residual
    exact = unmix_cpu(E, rng.dirichlet(np.ones(4), 5) @ E, "fcls", residual=True)
    np.testing.assert_allclose(exact[:, 4], 0.0, atol=1e-12)


def test_nan_and_inf_pixels_give_nan_in_every_output():
    rng = np.random.default_rng(4)
    E = endmembers(rng, 3, 8, "well")
    Y = pixels(rng, E, 20)
    Y[2, 5] = np.nan
    Y[7, 0] = np.inf
    Y[9, 3] = -np.inf
    for dtype in (np.float64, np.float32):
        for mode in MODES:
            got = unmix_cpu(E, Y, mode, dtype=dtype, residual=True)
            bad = np.zeros(20, bool)
            bad[[2, 7, 9]] = True
            assert np.isnan(got[bad]).all()
            assert np.isfinite(got[~bad]).all()


def test_same_result_for_every_layout_and_tile_size():
    rng = np.random.default_rng(5)
    E = endmembers(rng, 5, 17, "well")
    Y = pixels(rng, E, 3000)
    want = unmix_cpu(E, Y, "fcls", residual=True, tile=4096)
    for tile in (1, 7, 64, 2048):
        np.testing.assert_array_equal(unmix_cpu(E, Y, "fcls", residual=True, tile=tile), want)
        np.testing.assert_array_equal(
            unmix_cpu(E, Y, "fcls", residual=True, tile=tile, channels_first=True), want
        )


def test_after_an_affine_step_and_before_an_elementwise_one():
    """Background subtraction (an affine map), then FCLS with residual, then a clip: one pass."""
    rng = np.random.default_rng(6)
    K, C = 3, 9
    E = endmembers(rng, K, C, "well")
    Y = pixels(rng, E, 300)
    background = rng.random(C)
    raw = Y + background
    affine = np.concatenate([np.eye(C).ravel(), -background])
    step = unmix.pack(E, True, True, True)
    params = np.concatenate([affine, step, [0.0, 0.3]])
    table = np.array(
        [
            [ew.AFFINE, C, C, 0],
            [ew.UNMIX, C, K + 1, len(affine)],
            [ew.CLIP, K + 1, K + 1, len(affine) + len(step)],
        ],
        dtype=np.int64,
    )
    got = run_cpu(np.ascontiguousarray(raw)[:, :, None], table, params, np.float64, K + 1)[:, :, 0]
    a = oracle(E, Y, "fcls")
    want = np.clip(np.concatenate([a, rms_residual(E, Y, a)[:, None]], axis=1), 0.0, 0.3)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_rgb_pixel_kernel_leaves_unmixing_to_the_general_kernel():
    """kernels/cpu_pixels.py runs an affine step then elementwise steps only; never an UNMIX step."""
    # an RGB background subtraction (3 -> 3), then 2 endmembers
    rgb_table = np.array([[ew.AFFINE, 3, 3, 0], [ew.UNMIX, 3, 2, 12]], dtype=np.int64)
    assert not cpu_pixels.takes(rgb_table, 0, True, False, False, False)
    assert not cpu_pixels.takes(rgb_table[1:], 0, True, False, False, False)


def test_solver_terminates_well_within_its_iteration_bound():
    rng = np.random.default_rng(8)
    worst = 0
    for K in range(2, 9):
        E = endmembers(rng, K, 3 * K, "ill" if K % 2 else "well")
        p = unmix.pack(E, True, True, False)
        work = [np.empty(K) for _ in range(5)] + [np.empty(K * K), np.empty(K, np.int64), np.empty(K, np.int64)]
        b, x, s, w, v, L, idx, passive = work
        for y in pixels(rng, E, 200, noise=0.5):
            b[:] = E @ y
            worst = max(worst, unmix.solve_cpu(p, 0, b, x, s, w, v, L, idx, passive) / K)
    assert worst < unmix.MAX_ITER_PER_K


def test_pack_refuses_what_cannot_be_unmixed():
    with pytest.raises(ValueError, match="transposed"):
        unmix.pack(np.ones((5, 3)), True, True, False)
    with pytest.raises(ValueError, match="linearly dependent"):
        unmix.pack(np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]]), True, False, False)
    with pytest.raises(ValueError, match="NaN or Inf"):
        unmix.pack(np.array([[1.0, np.nan, 3.0]]), True, False, False)
    with pytest.raises(ValueError, match="shape"):
        unmix.pack(np.ones(3), True, False, False)
    p = unmix.pack(np.eye(2, 4), False, True, True)
    assert unmix.n_outputs(p) == 3 and len(p) == unmix.n_params(2, 4)


# -- the CUDA twin ---------------------------------------------------------------


def cuda_cases(simulated: bool) -> None:
    """The CUDA kernel against the CPU kernel and the oracles; run in a child process.

    Cases: UNMIX fed from the image (channels last and first, float64 and
    float32, with the residual, NaN and nodata pixels), after a leading
    elementwise step (the residual reads the inputs through it again), fed
    through a lookup table, and after an affine step (from the scratch rows)
    followed by an elementwise step.
    """
    from numba import cuda

    from pixelmix.kernels import cuda as kc

    assert kc.simulated() == simulated
    rng = np.random.default_rng(11)
    n = 150 if simulated else 200_000
    threads, blocks = (8, 5) if simulated else (64, 40)

    def launch(x3, table, params, acc, n_out, start=0, lut=None, nodata=None):
        params = params.astype(acc)
        cap = kc.scratch_width(table)
        first = kc.first_mixing_step(table, start)
        kernel = kc.program_kernel(cap, np.dtype(acc).name, kc.unmix_width(table, params))
        w0 = kc.first_affine_weights(table, params, cap, first)
        out = np.zeros((x3.shape[0], n_out, x3.shape[2]), dtype=acc)
        d_out = cuda.to_device(out)
        use_lut = lut is not None
        lut = np.zeros((1, 1), acc) if lut is None else lut
        kernel[blocks, threads, 0, w0.nbytes](
            cuda.to_device(np.ascontiguousarray(x3)), d_out, cuda.to_device(table), cuda.to_device(params),
            cuda.to_device(w0), True, start, first, cuda.to_device(lut), 0, use_lut,
            0.0 if nodata is None else float(nodata), nodata is not None, False, False, 0.0, 0.0, 0.0,
        )
        return d_out.copy_to_host()

    for acc, tol in ((np.float64, 1e-9), (np.float32, 2e-4)):
        for mode, (nonneg, sum_to_one) in MODES.items():
            K, C = (4, 32) if mode in ("fcls", "nnls") else (3, 7)
            E = endmembers(rng, K, C, "well")
            Y = pixels(rng, E, n)
            Y[5, 1] = np.nan
            Y[9, 3] = 0.25  # the nodata value below, exact in float32
            params = unmix.pack(E, nonneg, sum_to_one, True)
            table = np.array([[ew.UNMIX, C, K + 1, 0]], dtype=np.int64)
            last = Y.astype(acc)[:, :, None]  # (N, C, 1)
            first = np.ascontiguousarray(Y.T.astype(acc))[None]  # (1, C, N)
            got = launch(last, table, params, acc, K + 1)[:, :, 0]
            np.testing.assert_allclose(got, run_cpu(last, table, params, acc, K + 1)[:, :, 0], rtol=tol, atol=tol * 10)
            got_first = launch(first, table, params, acc, K + 1)[0].T
            np.testing.assert_allclose(got_first, got, rtol=tol, atol=tol * 10)
            assert np.isnan(got[5]).all() and np.isnan(got_first[5]).all()
            ok = np.isfinite(got).all(axis=1)
            assert ok.sum() == n - 1
            if nonneg:
                assert (got[ok, :K] >= 0).all()
            if sum_to_one:
                total = got[ok, :K].astype(np.float64).sum(axis=1)
                np.testing.assert_allclose(total, 1.0, atol=2 * K * np.finfo(acc).eps)
            if acc == np.float64:
                some = np.flatnonzero(ok)[:100]
                np.testing.assert_allclose(got[some, :K], oracle(E, Y[some], mode), atol=1e-6)
            # nodata marks a pixel missing in every output
            got = launch(last, table, params, acc, K + 1, nodata=0.25)[:, :, 0]
            assert np.isnan(got[9]).all() and np.isfinite(got[10]).all()

    # A leading elementwise step (relu) before UNMIX: b and the residual both see relu(y).
    K, C = 3, 6
    E = endmembers(rng, K, C, "well")
    Y = pixels(rng, E, n, noise=0.5)
    step = unmix.pack(E, True, True, True)
    table = np.array([[ew.RELU, C, C, 0], [ew.UNMIX, C, K + 1, 2]], dtype=np.int64)
    params = np.concatenate([[0.0, 0.0], step])
    got = launch(Y[:, :, None], table, params, np.float64, K + 1)
    want = run_cpu(Y[:, :, None], table, params, np.float64, K + 1)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got[:50, :, 0], unmix_cpu(E, np.maximum(Y[:50], 0), "fcls", residual=True), atol=1e-9)

    # Through a lookup table (uint8 input, the relu folded into the table: start = 1).
    x8 = rng.integers(0, 256, size=(n, C, 1), dtype=np.uint8)
    lut = np.ascontiguousarray(np.broadcast_to(np.arange(256, dtype=np.float64), (C, 256)))
    got = launch(x8, table, params, np.float64, K + 1, start=1, lut=lut)
    want = unmix_cpu(E, x8[:, :, 0].astype(np.float64), "fcls", residual=True)
    np.testing.assert_allclose(got[:, :, 0], want, rtol=1e-9, atol=1e-9)

    # After an affine step (UNMIX reads the scratch rows), then a clip.
    background = rng.random(C)
    affine = np.concatenate([np.eye(C).ravel(), -background])
    params = np.concatenate([affine, step, [0.0, 0.3]])
    table = np.array(
        [[ew.AFFINE, C, C, 0], [ew.UNMIX, C, K + 1, len(affine)], [ew.CLIP, K + 1, K + 1, len(affine) + len(step)]],
        dtype=np.int64,
    )
    raw = Y + background
    for acc, tol in ((np.float64, 1e-9), (np.float32, 2e-4)):
        x3 = raw.astype(acc)[:, :, None]
        got = launch(x3, table, params, acc, K + 1)
        np.testing.assert_allclose(got, run_cpu(x3, table, params, acc, K + 1), rtol=tol, atol=tol)

    # More endmembers than the compiled work arrays: NaN, never an overrun.
    E = endmembers(rng, 5, 8, "well")
    params = unmix.pack(E, True, False, False)
    table = np.array([[ew.UNMIX, 8, 5, 0]], dtype=np.int64)
    kernel = kc.program_kernel(kc.scratch_width(table), "float64", 2)
    w0 = kc.first_affine_weights(table, params, kc.scratch_width(table), 0)
    out = cuda.to_device(np.zeros((4, 5, 1)))
    kernel[1, 4, 0, w0.nbytes](
        cuda.to_device(pixels(rng, E, 4)[:, :, None]), out, cuda.to_device(table), cuda.to_device(params),
        cuda.to_device(w0), True, 0, 0, cuda.to_device(np.zeros((1, 1))), 0, False, 0.0, False, False, False,
        0.0, 0.0, 0.0,
    )
    assert np.isnan(out.copy_to_host()).all()
    with pytest.raises(ValueError, match="at most 32 endmembers"):
        big = np.array([[ew.UNMIX, 40, 33, 0]], dtype=np.int64)
        kc.unmix_width(big, unmix.pack(np.eye(33, 40), True, False, False))


def _run_cuda_cases(simulator: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    code = f"from tests.test_unmix_solver import cuda_cases; cuda_cases({simulator}); print('cuda cases ok')"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "cuda cases ok" in output, output[-6000:]


def test_cuda_twin_under_the_simulator():
    pytest.importorskip("numba.cuda")
    _run_cuda_cases(simulator=True)


@pytest.mark.skipif(
    os.environ.get("PIXELMIX_TEST_GPU") != "1",
    reason="real-GPU tests are opt-in: set PIXELMIX_TEST_GPU=1 on a machine with an NVIDIA GPU",
)
def test_cuda_twin_on_a_real_gpu():
    _run_cuda_cases(simulator=False)
