"""The ``cuda`` suite of ``pixelmix bench``: the CUDA backend on the GPU.

Workload: uint16 channels-first 64 x 2048 x 2048 -> 8 float32 (a multi-page
TIFF stack; ``quick``: 16 x 512 x 512; ``tiny``: 4 x 64 x 64), in two cases:

- On the device: the image and the result are GPU arrays. The notes give
  the kernel alone (CUDA events, no host work) as a fraction of the device's
  own copy bandwidth (a device-to-device copy of the same number of bytes):
  the kernel reads the image once and writes the result once, so a copy is
  its ceiling. The table times whole calls: pixelmix on device arrays, CuPy
  (``astype`` + ``matmul``) and PyTorch (1x1 ``conv2d``) when installed.
- End to end: a host array in, a host array out: pixelmix streaming through
  the GPU (pinned buffers, overlapped copies), pixelmix on the CPU, and
  PyTorch / CuPy copying to the GPU, mixing and copying back.

Without a usable GPU the suite prints ``no usable GPU: <reason>`` and
times nothing (the bench still exits 0).
"""

from __future__ import annotations

import statistics

import numpy as np

from . import Case


def _device_copy_bandwidth(nbytes: int, repeat: int = 5) -> float:
    """Bytes per second (read + written) of a device-to-device copy of ``nbytes / 2``."""
    from numba import cuda

    n = max(1, nbytes // 2)
    src = cuda.device_array(n, dtype=np.uint8)
    dst = cuda.device_array(n, dtype=np.uint8)
    dst.copy_to_device(src)
    begin, end = cuda.event(), cuda.event()
    times = []
    for _ in range(repeat):
        begin.record()
        dst.copy_to_device(src)
        end.record()
        end.synchronize()
        times.append(begin.elapsed_time(end) / 1e3)
    return 2 * n / min(times)


def _cupy_impls(x, w, b, on_device: bool):
    try:
        import cupy
    except ImportError:
        return {}
    wc, bc = cupy.asarray(w, dtype=cupy.float32), cupy.asarray(b, dtype=cupy.float32)[:, None]
    C = x.shape[0]

    def mix(xc):
        y = wc @ xc.reshape(C, -1).astype(cupy.float32) + bc
        return y.reshape((len(b),) + x.shape[1:])

    if on_device:
        xc = cupy.asarray(x)

        def run():
            y = mix(xc)
            cupy.cuda.Device().synchronize()
            return y

        return {"cupy astype + matmul": run}
    return {"cupy (to GPU, matmul, back)": lambda: cupy.asnumpy(mix(cupy.asarray(x)))}


def _torch_impls(x, w, b, on_device: bool):
    try:
        import torch
    except ImportError:
        return {}
    if not torch.cuda.is_available():
        return {}
    weight = torch.from_numpy(w.astype(np.float32)[:, :, None, None]).cuda()
    bias = torch.from_numpy(b.astype(np.float32)).cuda()

    def mix(t):
        with torch.no_grad():
            return torch.nn.functional.conv2d(t.float()[None], weight, bias)[0]

    # uint16 tensors support little more than conversion; int32 is the fallback
    # where even that is missing.
    try:
        host = torch.from_numpy(x)
        mix(host[:, :1, :1].cuda())
    except (TypeError, RuntimeError):
        host = torch.from_numpy(x.astype(np.int32))
    if on_device:
        t = host.cuda()

        def run():
            y = mix(t)
            torch.cuda.synchronize()
            return y

        return {"torch conv2d 1x1": run}
    return {"torch (to GPU, conv2d, back)": lambda: mix(host.cuda()).cpu().numpy()}


def build_cases(shape: tuple[int, int, int], k: int) -> list[Case]:
    """The suite's two cases for a uint16 (C, Y, X) image mixed to ``k`` float32 channels."""
    from numba import cuda

    import pixelmix as pm

    from ..backends import cuda as gpu
    from ..dispatch import prepare_device
    from ..kernels.cuda import simulated

    rng = np.random.default_rng(0)
    x = rng.integers(0, np.iinfo(np.uint16).max, size=shape, dtype=np.uint16)
    w = rng.standard_normal((k, shape[0]))
    b = rng.standard_normal(k)
    m = pm.Mixer(w, b)
    d_x = cuda.to_device(x)
    d_out = cuda.device_array((k,) + tuple(shape[1:]), dtype=np.float32)
    nbytes = x.nbytes + d_out.nbytes
    name = f"uint16 CYX {'x'.join(map(str, shape))} -> {k} float32"

    notes = []
    if not simulated():
        kernel = statistics.median(gpu.kernel_seconds(*prepare_device((m,), d_x, out=d_out, channel_axis=0)[:3], repeat=20))
        copy = _device_copy_bandwidth(nbytes)
        notes.append(
            f"kernel only: {kernel * 1e3:.3f} ms, {nbytes / kernel / 1e9:.0f} GB/s = "
            f"{(nbytes / copy) / kernel:.0%} of the device's copy bandwidth ({copy / 1e9:.0f} GB/s)"
        )
    notes.append("'of copy' compares with host memory; the device figure is above")

    on_device = {"pixelmix (device arrays)": lambda: m.apply(d_x, channel_axis=0, out=d_out)}
    on_device.update(_cupy_impls(x, w, b, on_device=True))
    on_device.update(_torch_impls(x, w, b, on_device=True))
    end_to_end = {
        "pixelmix cuda (host->host)": lambda: m.apply(x, channel_axis=0, backend="cuda"),
        "pixelmix cpu": lambda: m.apply(x, channel_axis=0, backend="cpu"),
    }
    end_to_end.update(_cupy_impls(x, w, b, on_device=False))
    end_to_end.update(_torch_impls(x, w, b, on_device=False))
    return [
        Case(name=f"{name}, on the GPU", impls=on_device, bytes_moved=nbytes, notes=notes),
        Case(name=f"{name}, end to end with transfers", impls=end_to_end, bytes_moved=nbytes),
    ]


SHAPES = {"full": (64, 2048, 2048), "quick": (16, 512, 512), "tiny": (4, 64, 64)}


def cases(size: str, backend: str) -> list[Case]:
    from ..backends import cuda as gpu

    reason = gpu.unusable_reason()
    if reason is None:
        from ..kernels.cuda import simulated

        if simulated():
            reason = "only Numba's CUDA simulator is active (NUMBA_ENABLE_CUDASIM=1): it is for tests, not timings"
    if reason is not None:
        print(f"no usable GPU: {reason}")
        return []
    return build_cases(SHAPES[size], 8)
