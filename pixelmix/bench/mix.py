"""The core mixing workloads of ``pixelmix bench``.

- uint16 channels-first 64 x 2048 x 2048 -> 8 float32 (a multi-page TIFF stack)
- float32 channels-last 512 x 512 x 224 -> 10 (a hyperspectral cube)
- uint8 RGB 4096 x 4096 -> 1 float32 (gray)

NumPy does what a NumPy user would write: convert to float32, then
``matmul`` (BLAS) and add the bias. PyTorch, when installed, runs a 1x1
``conv2d`` on an NCHW float32 tensor (conversion included in its time).
"""

from __future__ import annotations

import numpy as np

from . import Case


def _numpy_mix(x, w, b, axis):
    xf = np.moveaxis(x, axis, -1).astype(np.float32, copy=False)
    y = xf @ w.T.astype(np.float32)
    y += b.astype(np.float32)
    return np.moveaxis(y, -1, axis)


def _torch_mix(torch, x, w, b, axis):
    t = torch.from_numpy(np.ascontiguousarray(x))
    nchw = t.movedim(axis, 0).unsqueeze(0).float()  # (1, C, H, W)
    weight = torch.from_numpy(w.astype(np.float32)[:, :, None, None])
    bias = torch.from_numpy(b.astype(np.float32))
    with torch.no_grad():
        y = torch.nn.functional.conv2d(nchw, weight, bias)
    return y[0].movedim(0, axis).numpy()


def _workload(name, shape, dtype, axis, k, rng, backend):
    import pixelmix as pm

    c = shape[axis]
    if np.dtype(dtype).kind == "f":
        x = rng.random(shape, dtype=np.float32).astype(dtype, copy=False)
    else:
        x = rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    w = rng.standard_normal((k, c))
    b = rng.standard_normal(k)
    m = pm.Mixer(w, b)
    out_shape = list(shape)
    out_shape[axis] = k
    out_bytes = int(np.prod(out_shape)) * 4
    impls = {
        f"pixelmix ({backend})": lambda: m.apply(x, channel_axis=axis, backend=backend),
        "numpy (astype + matmul)": lambda: _numpy_mix(x, w, b, axis),
    }
    try:
        import torch
    except ImportError:
        pass
    else:
        impls["torch conv2d 1x1"] = lambda: _torch_mix(torch, x, w, b, axis)
    return Case(name=name, impls=impls, bytes_moved=x.nbytes + out_bytes)


def cases(quick: bool, backend: str) -> list[Case]:
    rng = np.random.default_rng(0)
    if quick:
        specs = [
            ("uint16 CYX 16x256x256 -> 8 float32", (16, 256, 256), np.uint16, 0, 8),
            ("float32 YXC 64x64x224 -> 10", (64, 64, 224), np.float32, -1, 10),
            ("uint8 RGB 512x512 -> gray", (512, 512, 3), np.uint8, -1, 1),
        ]
    else:
        specs = [
            ("uint16 CYX 64x2048x2048 -> 8 float32", (64, 2048, 2048), np.uint16, 0, 8),
            ("float32 YXC 512x512x224 -> 10", (512, 512, 224), np.float32, -1, 10),
            ("uint8 RGB 4096x4096 -> gray", (4096, 4096, 3), np.uint8, -1, 1),
        ]
    return [_workload(*spec, rng, backend) for spec in specs]
