"""The CUDA kernel: a per-pixel program over the (A, C, B) view, one thread per pixel.

The image arrives as a device array ``x[a, c, b]`` and the result goes to
``out[a, k, b]`` (see :mod:`pixelmix.engine`). Thread ``p`` of a grid-stride
loop handles pixel ``(a, b) = divmod(p, B)``, so neighbouring threads read
neighbouring ``b``: in the channels-first layout (B > 1) every channel's
read is coalesced. Channels last (B == 1) gives each thread C consecutive
values; a warp's first read of a 32-byte sector serves the next few channels
from L1, which is cheaper here than staging tiles through shared memory.

The program runs fused, as on the CPU (:mod:`pixelmix.kernels.cpu`):

- The first affine step reads the image directly: each input value is
  converted to the accumulation type (integer inputs on the fly), run
  through the leading elementwise steps (or looked up in a per-channel table)
  and added to ``cap`` accumulators, ``acc[k] += w[k, c] * v`` for c = 0,
  1, ... in order. ``cap`` is a compile-time constant, so for small K the
  accumulators live in registers; its weights, padded with zero rows to
  ``cap`` outputs and stored channel-major, sit in shared memory when they
  fit (every thread of a warp reads the same weight: a broadcast).
- Later steps run on per-thread scratch rows in the same order as the CPU.
- Each term is one fused multiply-add (``cuda.fma``, one rounding), as in
  the CPU kernel, in the same channel order: the result agrees with the
  NumPy oracle (which rounds products and sums apart) to within the
  rounding of the partial sums. The simulator computes ``a * b + c`` with
  two roundings, which stays within the same bound.

The elementwise steps are :func:`pixelmix.kernels.elementwise.apply_op`,
the same body the CPU kernel compiles, here as a ``cuda.jit(device=True)``
function. Importing this module compiles nothing: kernels compile on first
launch, one per (scratch width, accumulation type) and argument types.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import cuda, float32, float64, int64

from . import elementwise as ew

_apply_op = cuda.jit(device=True)(ew.apply_op)

# Widest scratch a thread may hold; a program wider than this after its first
# affine step would spill kilobytes of local memory per thread.
MAX_SCRATCH = 4096


def simulated() -> bool:
    """True when Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) is active."""
    try:
        from numba.cuda.core import config
    except ImportError:  # Numba's own (deprecated) CUDA target
        from numba import config
    return bool(config.ENABLE_CUDASIM)


def scratch_width(table: np.ndarray) -> int:
    """The compile-time scratch width for a program: its widest affine output, bucketed.

    Exact up to 16 (the accumulators then stay in registers and no lane is
    wasted), powers of two above that, so few kernels get compiled.
    """
    affine = table[table[:, 0] == ew.AFFINE]
    if len(affine) == 0:
        return 1
    widest = int(affine[:, 2].max())
    if widest > MAX_SCRATCH:
        raise ValueError(
            f"the CUDA backend holds at most {MAX_SCRATCH} channels per pixel between "
            f"steps but this program produces {widest}; use backend='cpu'"
        )
    if widest <= 16:
        return widest
    return 1 << (widest - 1).bit_length()


def first_affine_weights(table: np.ndarray, params: np.ndarray, cap: int, first: int) -> np.ndarray:
    """The weights of step ``first`` (an affine step), channel-major, padded to ``cap`` outputs.

    ``w0[c * cap + k]`` is ``w[k, c]`` and ``w0[C * cap + k]`` the bias of
    output k; rows k >= K are zero and their results are never stored.
    ``first`` is the first affine step the kernel runs: steps before it may
    have gone into a lookup table, diagonal mixers included.
    """
    if first >= len(table):
        return np.zeros(1, dtype=params.dtype)
    _, n_in, n_out, offset = (int(v) for v in table[first])
    w = params[offset : offset + n_out * n_in].reshape(n_out, n_in)
    bias = params[offset + n_out * n_in : offset + n_out * n_in + n_out]
    padded = np.zeros((n_in + 1, cap), dtype=params.dtype)
    padded[:n_in, :n_out] = w.T
    padded[n_in, :n_out] = bias
    return padded.ravel()


@cuda.jit(device=True)
def _to_int(v, lo, hi, fill):
    """Round half to even and saturate to [lo, hi]; NaN gives ``fill``.

    Clipping first is exact (lo and hi are integers) and keeps infinities
    out of the rounding.
    """
    if v != v:
        return fill
    v = min(max(v, lo), hi)
    f = math.floor(v)
    d = v - f
    if d > 0.5:
        return f + 1.0
    if d == 0.5:
        half = f * 0.5
        if math.floor(half) != half:  # f is odd
            return f + 1.0
    return f * 1.0


@lru_cache(maxsize=None)
def program_kernel(cap: int, acc_name: str):
    """The kernel for scratch width ``cap`` and accumulation dtype ``acc_name``.

    Launch it as ``kernel[blocks, threads, stream, shared_bytes](x, out,
    table, params, w0, shared_w0, start, first, lut, lut_offset, use_lut,
    nodata, use_nodata, check_nan, is_int, lo, hi, fill)`` with
    ``shared_bytes = w0.nbytes`` when ``shared_w0``. The block size and the
    number of blocks are launch parameters, never compiled in.
    """
    acc = float32 if acc_name == "float32" else float64
    nan = math.nan

    @cuda.jit(device=True)
    def value(raw, c, lut, lut_offset, use_lut):
        """Input value ``raw`` of channel ``c`` in the accumulation type, or its table entry."""
        if use_lut:
            return lut[c, int64(raw) + lut_offset]
        return acc(raw)

    @cuda.jit
    def kernel(
        x, out, table, params, w0, shared_w0, start, first,
        lut, lut_offset, use_lut, nodata, use_nodata, check_nan, is_int, lo, hi, fill,
    ):
        C = x.shape[1]
        B = x.shape[2]
        K = out.shape[1]
        n_steps = table.shape[0]
        n_pixels = x.shape[0] * B

        staged = cuda.shared.array(0, acc)
        if shared_w0:
            i = cuda.threadIdx.x
            while i < w0.shape[0]:
                staged[i] = w0[i]
                i += cuda.blockDim.x
        cuda.syncthreads()
        W = w0
        if shared_w0:
            W = staged

        lanes = cuda.local.array(cap, acc)
        buf = cuda.local.array(cap, acc)
        spare = cuda.local.array(cap, acc)
        p = cuda.grid(1)
        stride = cuda.gridsize(1)
        while p < n_pixels:
            a = p // B
            b = p - a * B
            bad = False
            if first < n_steps:
                # The first affine step, fed straight from the image. Only
                # constant-trip loops touch `lanes`, so it lives in registers.
                for k in range(cap):
                    lanes[k] = W[C * cap + k]
                for c in range(C):
                    raw = x[a, c, b]
                    if use_nodata and raw == nodata:
                        bad = True
                    v = value(raw, c, lut, lut_offset, use_lut)
                    for s in range(start, first):
                        o = table[s, 3]
                        v = acc(_apply_op(table[s, 0], v, params[o], params[o + 1]))
                    base = c * cap
                    for k in range(cap):
                        lanes[k] = cuda.fma(W[base + k], v, lanes[k])
                for k in range(cap):
                    buf[k] = lanes[k]
                # The rest of the program, on the scratch rows.
                cur = buf
                nxt = spare
                for s in range(first + 1, n_steps):
                    code = table[s, 0]
                    n_in = table[s, 1]
                    o = table[s, 3]
                    if code == ew.AFFINE:
                        n_out = table[s, 2]
                        for k in range(n_out):
                            total = params[o + n_out * n_in + k]
                            row = o + k * n_in
                            for c in range(n_in):
                                total = cuda.fma(params[row + c], cur[c], total)
                            nxt[k] = total
                        cur, nxt = nxt, cur
                    else:
                        p0 = params[o]
                        p1 = params[o + 1]
                        for c in range(n_in):
                            cur[c] = acc(_apply_op(code, cur[c], p0, p1))
                for k in range(K):
                    v = cur[k]
                    if bad:
                        v = acc(nan)
                    if is_int:
                        out[a, k, b] = _to_int(v, lo, hi, fill)
                    else:
                        out[a, k, b] = v
            else:
                # Per-channel steps only (all of them may be in the lookup
                # table): channel by channel, after a first pass that finds
                # the pixels to blank (NaN cannot spread here).
                if use_nodata or check_nan:
                    for c in range(C):
                        raw = x[a, c, b]
                        if use_nodata and raw == nodata:
                            bad = True
                        if check_nan and raw != raw:
                            bad = True
                for c in range(C):
                    v = value(x[a, c, b], c, lut, lut_offset, use_lut)
                    for s in range(start, n_steps):
                        o = table[s, 3]
                        v = acc(_apply_op(table[s, 0], v, params[o], params[o + 1]))
                    if bad:
                        v = acc(nan)
                    if is_int:
                        out[a, c, b] = _to_int(v, lo, hi, fill)
                    else:
                        out[a, c, b] = v
            p += stride

    return kernel
