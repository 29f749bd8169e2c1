"""scikit-image's view of an input image, as steps of a pixelmix program.

scikit-image's colour functions first turn their input into floats with
``img_as_float`` (``_prepare_colorarray``): unsigned integers are multiplied
by ``1 / max``, signed integers too and then floored at -1, booleans become
0.0 / 1.0, float16 becomes float32, other floats stay as they are. The
result is float32 for float16 / float32 input and float64 for every other
dtype.

pixelmix reads integer images as they are and converts each value inside
the kernel, so here that conversion becomes the first steps of the
per-pixel program (:func:`to_float_steps`): a diagonal mixer for the scale,
which folds into the colour matrix that follows, and for signed integers a
clip on the raw values, which the engine turns into a lookup table. Nothing
is converted or copied before the kernel runs, except for the few dtypes
the kernel does not read (see :func:`engine_view`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import pixelmix as pm
from pixelmix import ops
from pixelmix.plan import KERNEL_DTYPES

# The dtypes pixelmix's kernel reads directly.
NATIVE = frozenset(KERNEL_DTYPES)
# Dtypes img_as_float accepts that the kernel does not read: converted first.
CONVERTED = frozenset(
    np.dtype(t) for t in ("bool", "int8", "uint32", "int64", "uint64", "float16")
)


@dataclass(frozen=True)
class Prepared:
    """An input image, ready for the engine, and what scikit-image would make of it."""

    image: np.ndarray  # what the kernel reads: a NATIVE dtype
    source: np.dtype  # the caller's dtype, which decides the scaling
    channel_axis: int  # normalised, non-negative
    float_dtype: np.dtype  # scikit-image's working float type for this input

    @property
    def is_integer(self) -> bool:
        return self.source.kind in "iu"

    @property
    def imax(self) -> int:
        """The largest value of the source integer dtype."""
        return int(np.iinfo(self.source).max)


def normalize_channel_axis(channel_axis) -> int:
    """Accept what scikit-image's ``channel_as_last_axis`` accepts: an int, a 1-tuple or None."""
    if channel_axis is None:
        # scikit-image's colour functions then read channels on the last axis.
        return -1
    if isinstance(channel_axis, (tuple, list)):
        if len(channel_axis) != 1:
            raise ValueError("only a single channel axis is currently supported")
        (channel_axis,) = channel_axis
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
        raise TypeError(f"channel_axis must be an integer, got {channel_axis!r}")
    return int(channel_axis)


def engine_view(x: np.ndarray) -> np.ndarray:
    """``x`` in a dtype the kernel reads, holding the same numbers (no copy if already so)."""
    dtype = x.dtype
    if dtype in NATIVE:
        return x
    if dtype == np.bool_:
        return x.view(np.uint8)  # same bytes, 0 and 1
    if dtype == np.int8:
        return x.astype(np.int16)
    if dtype == np.float16:
        return x.astype(np.float32)  # what img_as_float32 does
    # uint32, int64, uint64: img_as_float converts them to float64 before scaling.
    return x.astype(np.float64)


def prepare(image, *, channel_axis, n_channels: int | None) -> Prepared:
    """Check ``image`` as scikit-image does and return it ready for the engine.

    ``n_channels`` is the channel count the function needs (None: any); a
    wrong count raises scikit-image's ValueError, with its message.
    """
    x = np.asarray(image)
    axis = normalize_channel_axis(channel_axis)
    # The checks run in scikit-image's order, so the same call raises the same error.
    if not -x.ndim <= axis < x.ndim:
        raise np.exceptions.AxisError(axis, x.ndim, "source")
    axis %= x.ndim
    if n_channels is not None and x.shape[axis] != n_channels:
        # scikit-image moves the channels last before checking, and names that shape.
        moved = x.shape[:axis] + x.shape[axis + 1 :] + (x.shape[axis],)
        raise ValueError(
            f"the input array must have size {n_channels} along `channel_axis`, got {moved}"
        )
    if x.dtype.kind == "c":
        raise ValueError("complex valued input is not supported")
    if x.dtype not in NATIVE and x.dtype not in CONVERTED:
        raise ValueError(f"Cannot convert from {x.dtype} to float64.")
    float_dtype = np.dtype(np.float32) if x.dtype in (np.float16, np.float32) else np.dtype(np.float64)
    return Prepared(image=engine_view(x), source=x.dtype, channel_axis=axis, float_dtype=float_dtype)


def to_float_steps(prep: Prepared, n: int) -> list:
    """Steps that turn the raw values of ``n`` channels into what img_as_float gives.

    Applied to the raw integer values the kernel reads; empty for float and
    boolean input (booleans are read as 0 and 1 already).
    """
    if not prep.is_integer:
        return []
    imax = prep.imax
    scale = pm.Mixer(np.eye(n) * (1.0 / imax))  # img_as_float multiplies by 1 / max
    if prep.source.kind == "u":
        return [scale]
    # Signed: the most negative value maps to -1 (img_as_float floors at -1).
    # Clipping the raw value to -max gives exactly that, and as a leading
    # step on 8 / 16-bit input the engine turns it into a lookup table.
    return [ops.clip(-imax, imax), scale]


def log_steps(prep: Prepared, n: int, floor: float) -> list:
    """Steps computing ``log(max(img_as_float(x), floor))`` for ``n`` channels.

    For integer input the scale moves out of the logarithm:
    ``log(max(x / m, floor)) == log(max(x, floor * m)) - log(m)``, so the
    log becomes a leading step (a lookup table for 8 / 16-bit input) and
    ``-log(m)`` a bias that folds into the mixer after it. Signed input
    needs no clip at -1: negative values fall below the floor anyway.
    """
    if not prep.is_integer:
        return [ops.log(floor)]
    scale = 1.0 / prep.imax
    return [ops.log(floor / scale), pm.Mixer(np.eye(n), np.full(n, np.log(scale)))]


def run(prep: Prepared, steps: list, out_dtype) -> np.ndarray:
    """Run ``steps`` as one fused pass over ``prep.image``, returning ``out_dtype``."""
    program = pm.Program(steps)
    return program.apply(prep.image, channel_axis=prep.channel_axis, dtype=out_dtype)
