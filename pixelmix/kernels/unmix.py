"""The constrained unmixing step: per-pixel least squares with an exact active-set solver.

Each pixel ``y`` (C values) is modelled as ``E^T a``, a mix of the K
endmember spectra (rows of ``E``) with abundances ``a``. The step minimises
``||E^T a - y||^2`` subject to

- nothing (plain least squares),
- ``a >= 0`` (NNLS),
- ``sum(a) = 1`` (closed form, Settle and Drake 1993),
- ``a >= 0`` and ``sum(a) = 1`` (FCLS),

and can append one more output: the root-mean-square residual
``sqrt(mean_c (E^T a - y)_c^2)`` over the C input channels.

How it is fast
--------------
The problem only sees ``y`` through ``b = E y`` (K values, computed over
whole rows of pixels, vectorised) and the K x K Gram matrix ``G = E E^T``,
so a pixel costs O(K C) for ``b`` and O(K^2) per solve after that. ``G``,
its inverse, ``G^-1 1`` and ``1 / (1^T G^-1 1)`` are computed once, in
float64, by :func:`pack`. A pixel first takes the unconstrained (or
sum-to-one) solution on all K endmembers, one K x K product; only when that
has a negative abundance does the active-set loop run.

The active-set loop (:func:`solve`) is the primal active-set method: a
feasible point ``x``, a passive set P (the free abundances; the others are
held at exactly zero) and, each iteration, the minimiser ``s`` of the
objective on the face P (Cholesky of ``G_PP``, with the sum-to-one
constraint eliminated by its Lagrange multiplier). A feasible ``s`` becomes
``x`` and the most negative multiplier of the held abundances frees one of
them; an infeasible ``s`` is approached up to the first abundance reaching
zero, which is then held. Without the sum-to-one constraint and started at
``x = 0`` this is Lawson and Hanson's NNLS (in the Gram form of Bro and de
Jong's FNNLS); here it starts from the sign pattern of the first solution,
which is usually the answer or one step from it. The solution is exact up to
rounding: the constraints hold exactly (held abundances are 0.0, a
sum-to-one result is divided by its sum at the end). Because held
abundances are exactly zero, "this pixel hit a constraint" is "some output
abundance is 0.0".

The K x K work is done in float64 whatever the accumulation type (its cost
does not depend on the type on a CPU, and it keeps float32 pixels from
ill-conditioned factorisations); ``b`` and the residual are accumulated in
the accumulation type, like an affine step.

The per-pixel body :func:`solve` is plain Python so that the CPU kernel
compiles it with ``numba.njit`` and the CUDA kernel with
``cuda.jit(device=True)``: one body for both backends.

Parameters of the step (:func:`pack`), at ``offset`` in the program's params
----------------------------------------------------------------------------
==========================  ===========================================
``[0]``                     K, the number of endmembers
``[1]``                     C, the number of input channels
``[2]``                     1.0 for ``a >= 0`` (else 0.0)
``[3]``                     1.0 for ``sum(a) = 1`` (else 0.0)
``[4]``                     1.0 to append the RMS residual (else 0.0)
``[5 : 5+KC]``              E, row-major (K, C)
next K*K                    G = E E^T, row-major
next K*K                    G^-1, row-major
next K                      G^-1 1
next 1                      1 / (1^T G^-1 1)
==========================  ===========================================

The program table row of the step is ``(UNMIX, C, K + residual, offset)``.
:func:`pack` builds the parameters (in :mod:`pixelmix.kernels.unmix_layout`,
which imports no Numba).

Examples
--------
>>> import numpy as np
>>> from pixelmix.kernels import unmix
>>> p = unmix.pack(np.eye(2, 3), nonneg=True, sum_to_one=False, residual=True)
>>> unmix.n_outputs(p), len(p) == unmix.n_params(2, 3)
(3, True)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# The parameter layout, in plain NumPy (no Numba): what the user objects build steps with.
from .unmix_layout import HEADER, n_outputs, n_params, pack  # noqa: F401 (re-exported)

# Face solves per pixel before the active-set loop stops (Lawson and Hanson
# bound their loop by 3 K; each iteration here is one face solve).
MAX_ITER_PER_K = 4
MAX_ITER_EXTRA = 8
# Multipliers above -TOL * (|b| + diag(G) * |a|) count as non-negative.
TOL = 1e-12
# A Cholesky pivot below this fraction of its diagonal is floored there (only
# rounding makes a pivot of a full-rank G that small).
PIVOT_FLOOR = 1e-14


def solve(p, o, b, x, s, w, v, L, idx, passive):
    """Solve one pixel: abundances ``x[:K]`` from ``b = E y`` in ``b[:K]``; returns the face solves.

    ``p[o:]`` holds the step's parameters (:func:`pack`). Work arrays of at
    least K values: ``s``, ``w``, ``v`` (float64), ``idx``, ``passive``
    (integers); ``L`` holds K * K float64. A non-finite ``b`` (a NaN or
    infinite input value) gives NaN abundances and returns -1. Returns 0
    when the first solution already satisfies the constraints.
    """
    K = int(p[o])
    C = int(p[o + 1])
    nonneg = p[o + 2] != 0
    eq = p[o + 3] != 0
    g = o + HEADER + K * C
    gi = g + K * K
    u = gi + K * K
    inv_sum = p[u + K] * 1.0
    bmax = 0.0
    for i in range(K):
        bi = b[i]
        if bi - bi != 0.0:  # NaN or +-Inf
            for k in range(K):
                x[k] = math.nan
            return -1
        bmax = max(bmax, abs(bi))
    # The solution on all K endmembers: G^-1 b (and the sum-to-one correction).
    total = 0.0
    for i in range(K):
        acc = 0.0
        for j in range(K):
            acc += p[gi + i * K + j] * b[j]
        s[i] = acc
        total += acc
    if eq:
        shift = (1.0 - total) * inv_sum
        for i in range(K):
            s[i] += p[u + i] * shift
    feasible = True
    if nonneg:
        for i in range(K):
            if not s[i] > 0.0:
                feasible = False
    if feasible:
        # With sum-to-one, divide by the sum: the float32 rounding of G^-1 1
        # and its sum (a float32 program's parameters) would otherwise leave
        # sum(x) - 1 at the condition number times float32's epsilon.
        total = 0.0
        for i in range(K):
            total += s[i]
        for i in range(K):
            x[i] = s[i] / total if eq else s[i]
        return 0

    # Active set, started from the sign pattern of that solution.
    gmax = 0.0
    xsum = 0.0
    positive = 0.0
    for i in range(K):
        gmax = max(gmax, p[g + i * K + i] * 1.0)
        xsum += abs(s[i])
        if s[i] > 0.0:
            passive[i] = 1
            positive += s[i]
        else:
            passive[i] = 0
    tol = TOL * (bmax + gmax * max(xsum, 1.0))
    for i in range(K):
        if passive[i] == 0:
            x[i] = 0.0
        elif eq:
            x[i] = s[i] / positive
        else:
            x[i] = s[i]
    added = -1
    solves = 0
    max_iter = MAX_ITER_PER_K * K + MAX_ITER_EXTRA
    while solves < max_iter:
        m = 0
        for i in range(K):
            if passive[i] != 0:
                idx[m] = i
                m += 1
        if eq and m == 0:
            # Rounding emptied the face: restart from the best vertex.
            best = math.inf
            j = 0
            for i in range(K):
                f = 0.5 * p[g + i * K + i] - b[i]
                if f < best:
                    best = f
                    j = i
            for i in range(K):
                x[i] = 0.0
            x[j] = 1.0
            passive[j] = 1
            continue
        # The minimiser s on the face idx[:m] (the others held at 0):
        # Cholesky of G_PP into L (row stride K), then w = G_PP^-1 b_P and,
        # with the sum-to-one constraint, v = G_PP^-1 1 and
        # s_P = w + v (1 - sum w) / sum v.
        for r in range(m):
            ir = idx[r]
            for c in range(r + 1):
                acc = p[g + ir * K + idx[c]] * 1.0
                for t in range(c):
                    acc -= L[r * K + t] * L[c * K + t]
                if r == c:
                    floor = p[g + ir * K + ir] * PIVOT_FLOOR
                    if not acc > floor:  # also catches NaN
                        acc = floor
                    L[r * K + r] = math.sqrt(acc)
                else:
                    L[r * K + c] = acc / L[c * K + c]
        for r in range(m):
            acc = b[idx[r]] * 1.0
            acc1 = 1.0
            for t in range(r):
                acc -= L[r * K + t] * w[t]
                acc1 -= L[r * K + t] * v[t]
            w[r] = acc / L[r * K + r]
            v[r] = acc1 / L[r * K + r]
        for r in range(m - 1, -1, -1):
            acc = w[r]
            acc1 = v[r]
            for t in range(r + 1, m):
                acc -= L[t * K + r] * w[t]
                acc1 -= L[t * K + r] * v[t]
            w[r] = acc / L[r * K + r]
            v[r] = acc1 / L[r * K + r]
        for i in range(K):
            s[i] = 0.0
        if eq:
            sw = 0.0
            sv = 0.0
            for r in range(m):
                sw += w[r]
                sv += v[r]
            shift = (1.0 - sw) / sv
            for r in range(m):
                s[idx[r]] = w[r] + v[r] * shift
        else:
            for r in range(m):
                s[idx[r]] = w[r]
        solves += 1
        alpha = 2.0
        block = -1
        for r in range(m):
            i = idx[r]
            if not s[i] > 0.0:
                d = x[i] - s[i]
                a = x[i] / d if d > 0.0 else 0.0
                if a < alpha:
                    alpha = a
                    block = i
        if block < 0:
            # s is feasible: move there, then free the held abundance whose
            # multiplier is most negative (the optimum when there is none).
            for i in range(K):
                x[i] = s[i]
            mu = 0.0
            if eq:
                for r in range(m):
                    i = idx[r]
                    acc = -b[i]
                    for k in range(K):
                        acc += p[g + i * K + k] * x[k]
                    mu -= acc
                mu /= m
            best = -tol
            j = -1
            for i in range(K):
                if passive[i] == 0:
                    acc = mu - b[i]
                    for k in range(K):
                        acc += p[g + i * K + k] * x[k]
                    if acc < best:
                        best = acc
                        j = i
            if j < 0:
                break
            passive[j] = 1
            added = j
        else:
            if block == added and alpha <= 0.0:
                # The abundance just freed cannot grow: its multiplier was
                # only rounding away from zero, and x is optimal.
                passive[block] = 0
                break
            for r in range(m):
                i = idx[r]
                x[i] += alpha * (s[i] - x[i])
            x[block] = 0.0
            passive[block] = 0
            for r in range(m):
                i = idx[r]
                if not x[i] > 0.0:
                    x[i] = 0.0
                    passive[i] = 0
            added = -1
    if eq:
        total = 0.0
        for i in range(K):
            total += x[i]
        for i in range(K):
            x[i] = x[i] / total
    return solves


# The CPU twin (the CUDA kernel compiles the same function with cuda.jit).
solve_cpu = njit(cache=True, nogil=True)(solve)


# Pixels per sweep of ``b = E y``: the K output rows stay in L1 across all channels.
SWEEP = 1024


@njit(cache=True, nogil=True, fastmath={"contract"})
def unmix_rows(src, dst, n, n_in, n_out, params, offset):
    """The UNMIX step on scratch rows: ``src[0, c, j]`` (c < n_in) to ``dst[k, j]`` (k < n_out), j < n.

    ``dst`` gets the abundances in rows 0..K-1 and, with the residual, the
    RMS residual in row K. ``src`` and ``dst`` have the accumulation dtype;
    ``b = E y`` and the residual are accumulated in it, channel by channel
    in order (the same for every tile), the solve runs in float64.
    """
    K = int(params[offset])
    with_residual = params[offset + 4] != 0
    e0 = offset + HEADER
    cast = dst.dtype.type
    # b = E y, K rows at a time over a sweep of pixels.
    for j0 in range(0, n, SWEEP):
        m = min(n - j0, SWEEP)
        for k in range(K):
            row = dst[k, j0 : j0 + m]
            for j in range(m):
                row[j] = 0
            for c in range(n_in):
                wk = params[e0 + k * n_in + c]
                col = src[0, c, j0 : j0 + m]
                for j in range(m):
                    row[j] = row[j] + wk * cast(col[j])
    b = np.empty(K)
    x = np.empty(K)
    s = np.empty(K)
    w = np.empty(K)
    v = np.empty(K)
    L = np.empty(K * K)
    idx = np.empty(K, dtype=np.int64)
    passive = np.empty(K, dtype=np.int64)
    for j in range(n):
        for k in range(K):
            b[k] = dst[k, j]
        solve_cpu(params, offset, b, x, s, w, v, L, idx, passive)
        for k in range(K):
            dst[k, j] = x[k]
    if with_residual:
        res = dst[K, :n]
        for j in range(n):
            res[j] = 0
        diff = np.empty(min(n, SWEEP), dtype=dst.dtype)
        for j0 in range(0, n, SWEEP):
            m = min(n - j0, SWEEP)
            out = res[j0 : j0 + m]
            for c in range(n_in):
                col = src[0, c, j0 : j0 + m]
                for j in range(m):
                    diff[j] = -cast(col[j])
                for k in range(K):
                    wk = params[e0 + k * n_in + c]
                    a = dst[k, j0 : j0 + m]
                    for j in range(m):
                        diff[j] = diff[j] + wk * a[j]
                for j in range(m):
                    out[j] = out[j] + diff[j] * diff[j]
        scale = 1.0 / n_in
        for j in range(n):
            res[j] = math.sqrt(res[j] * scale)
