"""exp, log and pow that vectorise: the CPU kernels' transcendental functions.

Numba calls the C library for ``math.exp``, ``math.log`` and ``math.pow``,
one value at a time (the vector library SVML is only patched into the
llvmlite of conda-forge and Anaconda), so a program with an exponential,
a logarithm or the sRGB transfer function ran at scalar speed. These are
written in plain arithmetic and bit operations instead, with every special
case a selection rather than a branch, so that a loop over a row of values
compiles to vector instructions.

Each works in float64 (a float32 argument is widened first; the caller rounds
the result back once) and is accurate to a few units in the last place over
the whole range, subnormal results and arguments included:

- ``exp``: ``x = n ln2 + r`` with ``|r| <= ln2 / 2`` (Cody and Waite's two-part
  ln2, whose high part times ``n`` is exact), ``e**r`` by its Taylor series to
  degree 13 (remainder below 1e-17), scaled by ``2**n`` in two halves so that
  a subnormal result is rounded once.
- ``log``: ``x = m 2**e`` with ``m`` in ``(sqrt(1/2), sqrt(2)]``, and
  ``log(m) = 2 atanh(s)``, ``s = (m - 1) / (m + 1)``, by its series to ``s**21``.
- ``pow(x, y)``: ``exp(y log(x))`` for the positive ``x`` the sRGB curves give
  it (relative error ``|y log x|`` times that of the log: up to ~3e-15, a few
  more units in the last place than ``math.pow``'s one; not for x <= 0).

exp and log return what NumPy returns for NaN, infinities, zero and negative
arguments (``log(0) = -inf``, ``log(-1) = nan``, ``exp(-inf) = 0``). Called
from a function compiled with ``error_model="numpy"`` (as the kernels' are),
log's one division carries no zero check, and the loop vectorises. The CUDA
kernel keeps ``math``'s functions, which are native there.

>>> import math
>>> from numba import njit
>>> f = njit(lambda v: (exp(v), log(v), pow(v, 2.4)))
>>> [abs(a / b - 1) < 1e-15 for a, b in zip(f(0.7), (math.exp(0.7), math.log(0.7), 0.7 ** 2.4))]
[True, True, True]
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["exp", "log", "pow"]

_LOG2E = 1.4426950408889634
# fdlibm's ln2 in two parts: the high part has 32 significant bits, so n * _LN2_HI
# is exact for every n this exp meets (|n| < 1100).
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_SQRT2 = 1.4142135623730951
_TINY = 2.2250738585072014e-308  # the smallest normal float64
_TWO54 = 2.0**54
_INF = math.inf
# 1/k! for k = 2 ... 13 (written out below: a loop over a tuple does not vectorise)
_E2, _E3, _E4, _E5, _E6, _E7, _E8, _E9, _E10, _E11, _E12, _E13 = (1.0 / math.factorial(k) for k in range(2, 14))
# 1/(2k + 1) for k = 1 ... 10: 2 atanh(s) = 2s (1 + s**2/3 + s**4/5 + ...)
_A1, _A2, _A3, _A4, _A5, _A6, _A7, _A8, _A9, _A10 = (1.0 / (2 * k + 1) for k in range(1, 11))


@intrinsic
def _bits(typingctx, value):
    """The bits of a float64 as an int64."""
    if value != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _from_bits(typingctx, value):
    """The float64 with these bits."""
    if value != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@njit(cache=True, nogil=True, error_model="numpy", fastmath=False)
def _pow2(k):
    """2.0**k for an integer k of a normal result (-1022 <= k <= 1023)."""
    return _from_bits((k + 1023) << 52)


# Flags said explicitly on each: a function without them is compiled with its
# first caller's, and the cache keeps that copy for every later caller (a
# checked division would stop the loop vectorising; fastmath would drop the
# NaN tests). exp and log are plain functions: LLVM inlines them where they are
# called, into the loop that then vectorises (inlined by Numba into each copy of
# apply_op instead, they made the elementwise kernel take 30 s longer to
# compile). pow is a two-call wrapper that Numba does inline: LLVM would not
# inline its body.
@njit(cache=True, nogil=True, error_model="numpy", fastmath=False)
def exp(x):
    """e**x as float64 (see the module's notes)."""
    x = np.float64(x)
    t = x if x == x else 0.0  # NaN: any finite value; the result is chosen at the end
    t = -746.0 if t < -746.0 else (710.0 if t > 710.0 else t)  # beyond these: 0 or inf anyway
    n = np.rint(t * _LOG2E)
    r = (t - n * _LN2_HI) - n * _LN2_LO
    p = ((((((_E13 * r + _E12) * r + _E11) * r + _E10) * r + _E9) * r + _E8) * r + _E7) * r + _E6
    p = (((((p * r + _E5) * r + _E4) * r + _E3) * r + _E2) * r + 1.0) * r + 1.0
    k = np.int64(n)
    half = k >> 1
    y = p * _pow2(half) * _pow2(k - half)  # the first product is exact: one rounding
    return y if x == x else x


@njit(cache=True, nogil=True, error_model="numpy", fastmath=False)
def log(x):
    """The natural logarithm as float64 (see the module's notes)."""
    x = np.float64(x)
    small = x < _TINY
    scaled = x * _TWO54 if small else x  # subnormal: made normal, e corrected below
    bits = _bits(scaled)
    e = ((bits >> 52) & 0x7FF) - 1023 - (54 if small else 0)
    m = _from_bits((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)  # in [1, 2)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    e = e + 1 if big else e
    f = m - 1.0  # exact
    s = f / (2.0 + f)
    z = s * s
    q = ((((((((_A10 * z + _A9) * z + _A8) * z + _A7) * z + _A6) * z + _A5) * z + _A4) * z + _A3) * z + _A2) * z + _A1
    lg = 2.0 * s + 2.0 * s * (z * q)
    ef = np.float64(e)
    y = ef * _LN2_HI + (lg + ef * _LN2_LO)
    y = -_INF if x == 0.0 else y
    y = np.nan if x < 0.0 else y
    return y if x < _INF else x  # inf stays inf, NaN stays NaN


@njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath=False)
def pow(x, y):  # noqa: A001 (math's name, on purpose)
    """x**y for x > 0 as float64 (``exp(y log x)``); NaN for x < 0 and for 0**0."""
    return exp(np.float64(y) * log(x))
