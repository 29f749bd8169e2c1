"""The elementwise steps of a per-pixel program, as one scalar function.

This module is plain Python on purpose: the CPU kernel compiles
:func:`apply_op` with ``numba.njit`` and the CUDA kernel with
``cuda.jit(device=True)``, so both backends share one body. Its exp, log
and pow are ``math``'s; the CPU kernel compiles the body with vectorisable
ones instead (:func:`with_math`, :mod:`pixelmix.kernels.vmath`). Every step keeps
NaN as NaN (comparisons with NaN are False, so NaN takes the "else" branch),
which is what lets a NaN pixel stay NaN through a whole program.
"""

import math
import types

# The math functions apply_op calls (see with_math).
_exp, _log, _pow = math.exp, math.log, math.pow

# Opcodes of a compiled program (see pixelmix.ops). AFFINE is handled by the
# kernels themselves; the others are elementwise and go through apply_op.
# UNMIX (constrained unmixing, kernels/unmix.py) is, like AFFINE, a step that
# mixes channels and is run by the kernels themselves: see MIXING.
AFFINE = 0
RELU = 1
CLIP = 2
EXP = 3
LOG = 4
SRGB_ENCODE = 5
SRGB_DECODE = 6
LEAKY_RELU = 7
SIGMOID = 8
TANH = 9
UNMIX = 10

# The opcodes that mix channels (n_in -> n_out), run by the kernels
# themselves; every other opcode is elementwise and goes through apply_op.
MIXING = (AFFINE, UNMIX)


def mixes(codes) -> bool:
    """Whether any of ``codes`` (Python ints: a few, checked on every call) mixes channels.

    >>> mixes([RELU, AFFINE]), mixes([EXP])
    (True, False)
    """
    return any(code in MIXING for code in codes)


def apply_op(code, v, p0, p1):
    """Return elementwise step ``code`` applied to ``v`` (parameters p0, p1).

    ``v``, ``p0`` and ``p1`` share one float type, and so does the result
    (with :func:`with_math`'s functions it may be wider; callers store it in ``v``'s type).
    """
    if code == RELU:
        return p0 if v < p0 else v  # p0 is a zero of v's type
    if code == CLIP:
        if v < p0:
            return p0
        if v > p1:
            return p1
        return v
    if code == EXP:
        return _exp(v)
    if code == LOG:
        return _log(p0 if v < p0 else v)
    if code == SRGB_ENCODE:
        # linear -> gamma-encoded sRGB, branch as in scikit-image's xyz2rgb
        if v > p0:
            return p1 * _pow(v, 1 / 2.4) - (p1 - 1)
        return v * 12.92
    if code == SRGB_DECODE:
        # gamma-encoded sRGB -> linear, branch as in scikit-image's rgb2xyz
        if v > p0:
            return _pow((v + (p1 - 1)) / p1, 2.4)
        return v / 12.92
    if code == LEAKY_RELU:
        return v * p0 if v < p1 else v  # p1 is a zero of v's type
    if code == SIGMOID:
        return p0 / (p0 + _exp(-v))  # p0 is a one of v's type
    if code == TANH:
        return math.tanh(v)
    return v


def with_math(exp, log, pow):  # noqa: A002 (math's names, on purpose)
    """:func:`apply_op` calling these ``exp``, ``log`` and ``pow`` in place of ``math``'s.

    The same code object (one body for every backend), with its globals
    changed. The functions may return a wider float than ``v``'s type; the
    caller stores the result in ``v``'s type.

    >>> op = with_math(lambda v: 2.0, math.log, math.pow)
    >>> op(EXP, 0.0, 0.0, 0.0), apply_op(EXP, 0.0, 0.0, 0.0)
    (2.0, 1.0)
    """
    names = {**apply_op.__globals__, "_exp": exp, "_log": log, "_pow": pow}
    return types.FunctionType(apply_op.__code__, names, apply_op.__name__)
