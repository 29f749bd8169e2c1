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
- An UNMIX step (constrained unmixing, :mod:`pixelmix.kernels.unmix`) takes
  the place of an affine step in both: as the first mixing step, its
  ``b = E y`` is accumulated from the image in ``lanes`` exactly as an
  affine step's outputs (the weights are ``E``, the bias zero), then the
  K x K solve runs on it; as a later step it reads the scratch rows. Its
  residual reads the pixel's inputs again (from the image, through the same
  leading steps, or from the scratch rows). The solve is
  :func:`pixelmix.kernels.unmix.solve`, the same body the CPU kernel
  compiles, in float64 local arrays sized at compile time (``unmix``).
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
from numba import cuda, float32, float64, int32, int64

from . import elementwise as ew
from . import unmix as um

_apply_op = cuda.jit(device=True)(ew.apply_op)
_unmix_solve = cuda.jit(device=True)(um.solve)

# Widest scratch a thread may hold; a program wider than this after its first
# affine step would spill kilobytes of local memory per thread.
MAX_SCRATCH = 4096
# Most endmembers of an UNMIX step: its solver holds a K x K float64
# factor per thread in local memory (8 KiB at 32).
MAX_UNMIX_ENDMEMBERS = 32


def simulated() -> bool:
    """True when Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) is active."""
    try:
        from numba.cuda.core import config
    except ImportError:  # Numba's own (deprecated) CUDA target
        from numba import config
    return bool(config.ENABLE_CUDASIM)


def scratch_width(table: np.ndarray) -> int:
    """The compile-time scratch width for a program: its widest mixing output, bucketed.

    Mixing steps are affine and UNMIX steps (an UNMIX step's output includes
    its residual channel). Exact up to 16 (the accumulators then stay in
    registers and no lane is wasted), powers of two above that, so few
    kernels get compiled.
    """
    mixing = table[np.isin(table[:, 0], ew.MIXING)]
    if len(mixing) == 0:
        return 1
    widest = int(mixing[:, 2].max())
    if widest > MAX_SCRATCH:
        raise ValueError(
            f"the CUDA backend holds at most {MAX_SCRATCH} channels per pixel between "
            f"steps but this program produces {widest}; use backend='cpu'"
        )
    if widest <= 16:
        return widest
    return 1 << (widest - 1).bit_length()


def unmix_width(table: np.ndarray, params: np.ndarray) -> int:
    """The compile-time size of the UNMIX solver's work arrays: the most endmembers, bucketed.

    0 for a program without an UNMIX step; exact up to 8, then 16 and 32.
    Pass it to :func:`program_kernel` as ``unmix``.

    Raises
    ------
    ValueError
        When a step has more than :data:`MAX_UNMIX_ENDMEMBERS` endmembers.
    """
    rows = table[table[:, 0] == ew.UNMIX]
    if len(rows) == 0:
        return 0
    most = max(int(params[int(offset)]) for offset in rows[:, 3])
    if most > MAX_UNMIX_ENDMEMBERS:
        raise ValueError(
            f"the CUDA backend unmixes at most {MAX_UNMIX_ENDMEMBERS} endmembers per pixel but "
            f"this program has {most}; use backend='cpu'"
        )
    if most <= 8:
        return most
    return 1 << (most - 1).bit_length()


def first_mixing_step(table: np.ndarray, start: int = 0) -> int:
    """Index of the first affine or UNMIX step at or after ``start`` (the step count if none).

    The ``first`` argument of the kernel: the step fed straight from the image.
    """
    rows = np.flatnonzero(np.isin(table[start:, 0], ew.MIXING))
    return start + int(rows[0]) if len(rows) else len(table)


def first_affine_weights(table: np.ndarray, params: np.ndarray, cap: int, first: int) -> np.ndarray:
    """The weights of step ``first`` (a mixing step), channel-major, padded to ``cap`` outputs.

    ``w0[c * cap + k]`` is ``w[k, c]`` and ``w0[C * cap + k]`` the bias of
    output k; rows k >= K are zero and their results are never stored.
    ``first`` is the first mixing step the kernel runs (see
    :func:`first_mixing_step`): steps before it may have gone into a lookup
    table, diagonal mixers included. For an UNMIX step the weights are the
    endmembers ``E`` (K outputs: ``b = E y``) and the bias is zero.
    """
    if first >= len(table):
        return np.zeros(1, dtype=params.dtype)
    code, n_in, n_out, offset = (int(v) for v in table[first])
    if code == ew.UNMIX:
        n_out = int(params[offset])
        start = offset + um.HEADER
        w = params[start : start + n_out * n_in].reshape(n_out, n_in)
        bias = np.zeros(n_out, dtype=params.dtype)
    else:
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
def program_kernel(cap: int, acc_name: str, unmix: int = 0):
    """The kernel for scratch width ``cap``, accumulation dtype ``acc_name`` and UNMIX width ``unmix``.

    Launch it as ``kernel[blocks, threads, stream, shared_bytes](x, out,
    table, params, w0, shared_w0, start, first, lut, lut_offset, use_lut,
    nodata, use_nodata, check_nan, is_int, lo, hi, fill)`` with
    ``shared_bytes = w0.nbytes`` when ``shared_w0``. The block size and the
    number of blocks are launch parameters, never compiled in. ``first`` is
    :func:`first_mixing_step`; ``unmix`` is :func:`unmix_width` (0 for a
    program without an UNMIX step: no solver work arrays). An UNMIX step
    with more endmembers than ``unmix`` gives NaN rather than overrun them.
    """
    acc = float32 if acc_name == "float32" else float64
    nan = math.nan
    uk = max(unmix, 1)

    @cuda.jit(device=True)
    def solve_into(params, o, K, bb, xs, s, w, v, L, idx, passive, dest):
        """``dest[:K]`` = the abundances of the UNMIX step at ``o`` for ``b`` in ``bb`` (float64)."""
        if K > uk:
            for k in range(K):
                dest[k] = acc(nan)
            return
        _unmix_solve(params, o, bb, xs, s, w, v, L, idx, passive)
        for k in range(K):
            dest[k] = acc(xs[k])

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
        # The UNMIX solver's work arrays (see kernels/unmix.py).
        bb = cuda.local.array(uk, float64)
        xs = cuda.local.array(uk, float64)
        s1 = cuda.local.array(uk, float64)
        s2 = cuda.local.array(uk, float64)
        s3 = cuda.local.array(uk, float64)
        fac = cuda.local.array(uk * uk, float64)
        idx = cuda.local.array(uk, int32)
        passive = cuda.local.array(uk, int32)
        p = cuda.grid(1)
        stride = cuda.gridsize(1)
        while p < n_pixels:
            a = p // B
            b = p - a * B
            bad = False
            if first < n_steps:
                # The first mixing step (affine, or an UNMIX step's b = E y),
                # fed straight from the image. Only constant-trip loops touch
                # `lanes`, so it lives in registers.
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
                cur = buf
                nxt = spare
                if table[first, 0] == ew.UNMIX:
                    # lanes hold b = E y: solve, then the residual from the
                    # inputs read again (W holds E channel-major).
                    o = table[first, 3]
                    ke = int64(params[o])
                    for k in range(min(ke, uk)):
                        bb[k] = lanes[k]
                    solve_into(params, o, ke, bb, xs, s1, s2, s3, fac, idx, passive, nxt)
                    if params[o + 4] != 0:
                        total = acc(0)
                        for c in range(C):
                            v = value(x[a, c, b], c, lut, lut_offset, use_lut)
                            for s in range(start, first):
                                o2 = table[s, 3]
                                v = acc(_apply_op(table[s, 0], v, params[o2], params[o2 + 1]))
                            r = -v
                            base = c * cap
                            for k in range(ke):
                                r = cuda.fma(W[base + k], nxt[k], r)
                            total = cuda.fma(r, r, total)
                        nxt[ke] = acc(math.sqrt(float64(total) / C))
                    cur, nxt = nxt, cur
                # The rest of the program, on the scratch rows.
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
                    elif code == ew.UNMIX:
                        ke = int64(params[o])
                        e0 = o + um.HEADER
                        for k in range(min(ke, uk)):
                            total = acc(0)
                            row = e0 + k * n_in
                            for c in range(n_in):
                                total = cuda.fma(params[row + c], cur[c], total)
                            bb[k] = total
                        solve_into(params, o, ke, bb, xs, s1, s2, s3, fac, idx, passive, nxt)
                        if params[o + 4] != 0:
                            total = acc(0)
                            for c in range(n_in):
                                r = -cur[c]
                                for k in range(ke):
                                    r = cuda.fma(params[e0 + k * n_in + c], nxt[k], r)
                                total = cuda.fma(r, r, total)
                            nxt[ke] = acc(math.sqrt(float64(total) / n_in))
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
