"""The core mixing workloads of ``pixelmix bench``, against the strongest form of each other library.

=================================  ==========================================================
workload (full size)               compared with
=================================  ==========================================================
uint16 CYX 64x2048x2048 -> 8 f32   NumPy planar ``W @ X.reshape(C, -1).astype(float32) + b``
                                   (no ``moveaxis``: one BLAS call on the planes as they lie);
                                   PyTorch 1x1 ``conv2d`` on the (1, C, H, W) tensor
float32 YXC 512x512x224 -> 10      BLAS ``X.reshape(-1, C) @ W.T + b``; PyTorch 1x1
                                   ``conv2d`` on the channels-last tensor (no copy)
uint8 RGB 4096x4096 -> gray uint8  OpenCV ``cvtColor(RGB2GRAY)``
uint8 RGB -> YCbCr uint8           OpenCV ``transform`` (the same 3x3 matrix + bias, 8-bit
(3x3 + bias, JPEG full range)      out) and ``cvtColor(RGB2YCrCb)`` (its own fixed point);
                                   both 8-bit rows also into an output allocated once
                                   (pixelmix's ``out=``, OpenCV's ``dst=``), and pixelmix
                                   on one thread (``transform`` takes one): per core
pipeline                           a BLAS matmul alone and right after pixelmix; pixelmix
                                   alone and right after the matmul: the cost each
                                   library's idle threads leave for the other
=================================  ==========================================================

PyTorch's times include making a float32 tensor of the input (its conv2d
takes no integers) and a NumPy view of the result; the 8-bit rows have no
PyTorch entry (it has no rounding, saturating 8-bit output). The 8-bit
notes give how many of OpenCV's results differ from the exactly rounded
value (pixelmix's). ``quick`` and ``tiny`` shrink every image.
"""

from __future__ import annotations

import numpy as np

from . import Case, Impl, not_installed, optional, slowdown, speedup

# JPEG (full range, BT.601) YCbCr: the usual 3x3 + bias with 8-bit output.
YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
YCBCR_BIAS = np.array([0.0, 128.0, 128.0])
GRAY = np.array([[0.299, 0.587, 0.114]])

# The speed-ups over the strongest anchor that issue 14 asks for (the floors).
GOALS = {"cf": 5.0, "cl": 1.5, "gray": 1.0, "ycbcr": 1.0}

SIZES = {
    "full": {"cf": (64, 2048, 2048), "cl": (512, 512, 224), "rgb": 4096, "pipe": ((64, 1024, 1024), 1536)},
    "quick": {"cf": (16, 256, 256), "cl": (64, 64, 224), "rgb": 512, "pipe": ((16, 256, 256), 384)},
    "tiny": {"cf": (4, 32, 32), "cl": (8, 8, 24), "rgb": 32, "pipe": ((4, 32, 32), 32)},
}


def _random(rng, shape, dtype) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return rng.random(shape, dtype=np.float32).astype(dtype, copy=False)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)


def _planar(x, w32, b32):
    """NumPy's best on channels first: one (K, C) x (C, pixels) BLAS product on the planes."""
    c = x.shape[0]
    y = w32 @ x.reshape(c, -1).astype(np.float32, copy=False)
    y += b32[:, None]
    return y.reshape((len(w32),) + x.shape[1:])


def _blas_last(x, w32t, b32):
    """NumPy's best on channels last: one (pixels, C) x (C, K) BLAS product."""
    c = x.shape[-1]
    y = x.reshape(-1, c).astype(np.float32, copy=False) @ w32t
    y += b32
    return y.reshape(x.shape[:-1] + (w32t.shape[1],))


def _torch_impl(torch, x, w, b, axis) -> Impl:
    weight = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)[:, :, None, None])
    bias = torch.from_numpy(np.asarray(b, dtype=np.float32))
    if axis == 0:
        def mix():
            t = torch.from_numpy(x).float()[None]  # (1, C, H, W)
            with torch.no_grad():
                return torch.nn.functional.conv2d(t, weight, bias)[0].numpy()
    else:
        weight = weight.contiguous(memory_format=torch.channels_last)

        def mix():
            # (H, W, C) seen as a channels-last (1, C, H, W) tensor: no copy, and
            # oneDNN's channels-last 1x1 convolution (a GEMM on the pixels).
            t = torch.from_numpy(x).float().permute(2, 0, 1)[None]
            with torch.no_grad():
                return torch.nn.functional.conv2d(t, weight, bias)[0].permute(1, 2, 0).numpy()
    return Impl(mix, "torch")


def _float_case(name, shape, dtype, axis, k, rng, backend) -> Case:
    import pixelmix as pm

    x = _random(rng, shape, dtype)
    c = shape[axis]
    w = rng.standard_normal((k, c))
    b = rng.standard_normal(k)
    w32, b32 = w.astype(np.float32), b.astype(np.float32)
    m = pm.Mixer(w, b)
    impls = {f"pixelmix ({backend})": Impl(lambda: m.apply(x, channel_axis=axis, backend=backend), "pixelmix")}
    if axis == 0:
        impls["numpy (astype + matmul)"] = Impl(lambda: _planar(x, w32, b32), "numpy")
        form = "numpy: W @ X.reshape(C, -1).astype(float32) + b, planar (one BLAS call, no moveaxis)"
    else:
        w32t = np.ascontiguousarray(w32.T)
        impls["numpy (astype + matmul)"] = Impl(lambda: _blas_last(x, w32t, b32), "numpy")
        form = "numpy: X.reshape(-1, C) @ W.T + b (one BLAS call)"
    missing = {}
    ours = f"pixelmix ({backend})"
    goal = GOALS["cf" if axis == 0 else "cl"]
    summarize = lambda t: [speedup(t, ours, "numpy (astype + matmul)", goal)]  # noqa: E731
    torch = optional("PyTorch")
    if torch is None:
        missing["torch conv2d 1x1"] = not_installed("PyTorch")
    else:
        impls["torch conv2d 1x1"] = _torch_impl(torch, x, w, b, axis)
    out_bytes = x.size // c * k * 4
    return Case(name=name, impls=impls, bytes_moved=x.nbytes + out_bytes, notes=[form], missing=missing,
                summarize=summarize)


def _mismatch_note(label: str, theirs: np.ndarray, exact: np.ndarray) -> str:
    diff = np.abs(theirs.astype(np.int16) - exact.astype(np.int16))
    share = np.count_nonzero(diff) / diff.size
    return (f"{label} differs from the exactly rounded result on {share:.1%} of the values "
            f"(by up to {int(diff.max()) if diff.size else 0}); pixelmix's is exact")


def _exact_uint8(image: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The float64 mix rounded half to even and saturated: the exact 8-bit result."""
    y = image.reshape(-1, image.shape[-1]).astype(np.float64) @ w.T + b
    return np.clip(np.rint(y), 0, 255).astype(np.uint8).reshape(image.shape[:-1] + (len(w),))


def _uint8_cases(side: int, rng, backend) -> list[Case]:
    import pixelmix as pm

    image = _random(rng, (side, side, 3), np.uint8)
    label = f"uint8 RGB {side}x{side}"
    cv2 = optional("OpenCV")
    gray = pm.Mixer(GRAY)
    ycc = pm.Mixer(YCBCR, YCBCR_BIAS)

    gray_case = Case(
        name=f"{label} -> gray uint8 (0.299 R + 0.587 G + 0.114 B)",
        impls={f"pixelmix ({backend})": Impl(lambda: gray.apply(image, dtype=np.uint8, backend=backend), "pixelmix")},
        bytes_moved=image.nbytes + image.size // 3,
    )
    ycc_case = Case(
        name=f"{label} -> YCbCr uint8 (JPEG full range: 3x3 + bias)",
        impls={f"pixelmix ({backend})": Impl(lambda: ycc.apply(image, dtype=np.uint8, backend=backend), "pixelmix")},
        bytes_moved=2 * image.nbytes,
    )
    if cv2 is None:
        gray_case.missing["opencv cvtColor RGB2GRAY"] = not_installed("OpenCV")
        ycc_case.missing["opencv transform"] = not_installed("OpenCV")
        ycc_case.missing["opencv cvtColor RGB2YCrCb"] = not_installed("OpenCV")
        return [gray_case, ycc_case]
    ours = f"pixelmix ({backend})"
    ours_out, gray_dst, ycc_dst = f"{ours}, into out=", "opencv cvtColor RGB2GRAY, into dst=", "opencv transform, into dst="
    gray_case.summarize = lambda t: [speedup(t, ours, "opencv cvtColor RGB2GRAY", GOALS["gray"]),
                                     speedup(t, ours_out, gray_dst)]
    ours_one = f"{ours} on one thread, into out="
    ycc_case.summarize = lambda t: [speedup(t, ours, "opencv transform", GOALS["ycbcr"]),
                                    speedup(t, ours, "opencv cvtColor RGB2YCrCb"), speedup(t, ours_out, ycc_dst),
                                    *([speedup(t, ours_one, ycc_dst)] if ours_one in t else [])]
    matrix = np.hstack([YCBCR, YCBCR_BIAS[:, None]]).astype(np.float32)
    gray_case.impls["opencv cvtColor RGB2GRAY"] = Impl(lambda: cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), "opencv")
    ycc_case.impls["opencv transform"] = Impl(lambda: cv2.transform(image, matrix), "opencv")
    ycc_case.impls["opencv cvtColor RGB2YCrCb"] = Impl(lambda: cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb), "opencv")
    # The same calls into an output allocated once: the kernels alone, without the first
    # touch of a fresh output's pages (which, on a VM, now and then stalls for tens of ms).
    gray_out, ycc_out = np.empty(image.shape[:2] + (1,), np.uint8), np.empty_like(image)
    gray_case.impls[ours_out] = Impl(lambda: gray.apply(image, dtype=np.uint8, out=gray_out, backend=backend), "pixelmix")
    gray_case.impls[gray_dst] = Impl(lambda: cv2.cvtColor(image, cv2.COLOR_RGB2GRAY, dst=gray_out[..., 0]), "opencv")
    ycc_case.impls[ours_out] = Impl(lambda: ycc.apply(image, dtype=np.uint8, out=ycc_out, backend=backend), "pixelmix")
    ycc_case.impls[ycc_dst] = Impl(lambda: cv2.transform(image, matrix, dst=ycc_out), "opencv")
    if backend == "cpu":
        # transform runs on one thread whatever cv2.setNumThreads says, pixelmix on every core: per core
        # is what counts where the other cores are busy (or, on a VM, lent to other guests while idle).
        from ..backends.cpu import numba_threads

        def one_thread():
            with numba_threads(1):
                return ycc.apply(image, dtype=np.uint8, out=ycc_out, backend=backend)

        ycc_case.impls[ours_one] = Impl(one_thread, "pixelmix")
        ycc_case.notes.append("opencv transform runs on one thread: the row 'on one thread' compares the work per core")
    for case in (gray_case, ycc_case):
        case.notes.append("the rows 'into out=' and 'into dst=' write into an output allocated once "
                          "(no first touch of fresh pages); the goal is judged on the rows above them")
    gray_case.notes.append(_mismatch_note("cvtColor", cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None],
                                          _exact_uint8(image, GRAY, np.zeros(1))))
    exact = _exact_uint8(image, YCBCR, YCBCR_BIAS)
    ycc_case.notes.append(_mismatch_note("transform", cv2.transform(image, matrix), exact))
    ycc_case.notes.append(_mismatch_note("cvtColor (Y, Cr, Cb order)", cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)[..., [0, 2, 1]], exact))
    return [gray_case, ycc_case]


def pipeline_cases(cf_shape: tuple[int, int, int], n: int, rng, backend: str) -> list[Case]:
    """A BLAS matmul and a pixelmix call, each alone and right after the other."""
    import pixelmix as pm

    x = _random(rng, cf_shape, np.uint16)
    m = pm.Mixer(rng.standard_normal((8, cf_shape[0])), rng.standard_normal(8))
    a = rng.random((n, n), dtype=np.float32)

    def mix():
        return m.apply(x, channel_axis=0, backend=backend)

    def matmul():
        return a @ a

    px, blas = f"pixelmix ({backend})", f"numpy matmul {n}x{n} float32"
    shape = "x".join(map(str, cf_shape))
    blas_rows = (f"{blas}, after pixelmix", f"{blas}, alone")
    px_rows = (f"{px}, after numpy matmul", f"{px}, alone")
    return [
        Case(
            name=f"pipeline: {blas}, alone and right after pixelmix",
            impls={f"{blas}, alone": Impl(matmul, "numpy"),
                   f"{blas}, after pixelmix": Impl(matmul, "numpy", before=mix)},
            notes=[f"pixelmix call: uint16 CYX {shape} -> 8 float32; row 2 starts the moment pixelmix returns"],
            summarize=lambda t: [slowdown("a BLAS call right after pixelmix:", t[blas_rows[0]], t[blas_rows[1]],
                                          "goal: at most +10%")],
        ),
        Case(
            name=f"pipeline: {px} on uint16 CYX {shape} -> 8, alone and right after a matmul",
            impls={f"{px}, alone": Impl(mix, "pixelmix"),
                   f"{px}, after numpy matmul": Impl(mix, "pixelmix", before=matmul)},
            bytes_moved=x.nbytes + x.size // cf_shape[0] * 8 * 4,
            notes=[f"row 2 starts the moment a {n}x{n} float32 matmul returns (OpenBLAS's workers still spin)"],
            summarize=lambda t: [slowdown("pixelmix right after a BLAS call:", t[px_rows[0]], t[px_rows[1]],
                                          "as little as possible; OPENBLAS_THREAD_TIMEOUT is the user's lever")],
        ),
    ]


def cases(size: str, backend: str) -> list[Case]:
    rng = np.random.default_rng(0)
    s = SIZES[size]
    cf, cl = s["cf"], s["cl"]
    return [
        _float_case(f"uint16 CYX {'x'.join(map(str, cf))} -> 8 float32", cf, np.uint16, 0, 8, rng, backend),
        _float_case(f"float32 YXC {'x'.join(map(str, cl))} -> 10", cl, np.float32, -1, 10, rng, backend),
        *_uint8_cases(s["rgb"], rng, backend),
        *pipeline_cases(*s["pipe"], rng, backend),
    ]
