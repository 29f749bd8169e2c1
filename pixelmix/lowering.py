"""Lowering: a sequence of steps becomes the tables the kernels run.

A step is any object with this small protocol (Mixer, the elementwise steps
of :mod:`pixelmix.ops`, constrained unmixers):

- ``n_inputs`` / ``n_outputs``: channel counts, None for an elementwise step
  (it keeps whatever channels it gets);
- ``lower() -> Lowered``: its opcode, its flat float64 parameters, and
  whether it treats each channel on its own;
- ``reference(v)``: the same step in plain NumPy on a channels-first array
  (the oracle of :mod:`pixelmix.backends.numpy`);
- ``to_dict()``: its JSON form (:mod:`pixelmix.fileformat`).

To add a step: write a class with that protocol among the user objects, give
it an opcode in :mod:`pixelmix.kernels.elementwise`, and teach the kernels
to run it. Nothing here knows the step classes.

Steps are immutable (a Mixer's weights and an unmixer's endmembers are
read-only copies, an elementwise step is a frozen dataclass), so a sequence
of step objects always lowers to the same program: :func:`compile_steps`
keeps the program of each sequence while its steps live, and each program
keeps what calls derive from it (its parameters in a dtype, a kernel's
choice, a lookup table). Repeated calls of one mixer, the common case, then
spend their time in the kernel, not in Python.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from typing import Any, Callable, Hashable, NamedTuple, Sequence

import numpy as np

from . import config
from .kernels.elementwise import AFFINE, mixes
from .plan import Request, working_dtype


def frozen(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` that can never be written: a step's arrays, whose lowering is kept.

    Not just ``writeable = False``: an array that owns its memory can be
    made writeable again, one backed by bytes cannot.

    >>> w = frozen(np.eye(2))
    >>> w.flags.writeable = True
    Traceback (most recent call last):
    ...
    ValueError: cannot set WRITEABLE flag to True of this array
    """
    return np.frombuffer(np.ascontiguousarray(a).tobytes(), dtype=a.dtype).reshape(a.shape)


class Lowered(NamedTuple):
    """One step as the kernels see it."""

    code: int  # opcode (kernels.elementwise)
    params: np.ndarray  # float64; an affine step: (n_out, n_in) weights row-major, then n_out biases
    per_channel: bool  # treats each channel on its own (elementwise, or a diagonal affine map)


@dataclass(frozen=True)
class CompiledProgram:
    """A program lowered to arrays for the kernels.

    ``table`` has one row per step: ``(opcode, n_in, n_out, offset)``, where
    ``offset`` indexes ``params``.
    """

    table: np.ndarray  # (n_steps, 4) int64
    params: np.ndarray  # float64
    n_in: int
    n_out: int
    width: int  # most channels alive at any point: the scratch rows needed
    n_per_channel: int  # leading steps that treat each channel on its own
    largest: float  # the largest magnitude in params (NaN if one is): what must fit the type the sums run in
    _derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def derived(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per ``key`` for this program and kept.

        For values that depend only on the program and on the ``key`` (a
        dtype, a backend's name): they must never be changed by their users.
        Two threads may both compute a missing value; either result is kept.
        """
        try:
            return self._derived[key]
        except KeyError:
            value = self._derived[key] = make()
            return value

    @property
    def has_mixing(self) -> bool:
        """Whether a step mixes channels (affine or unmixing): such a step spreads NaN to every output."""
        return self.derived("has_mixing", lambda: mixes(self.table[:, 0].tolist()))

    def params_as(self, dtype: np.dtype) -> np.ndarray:
        """``params`` in ``dtype`` (kept: do not write to it)."""
        return self.derived(("params", np.dtype(dtype)), lambda: self.params.astype(dtype, copy=False))


def n_inputs(steps: Sequence[Any]) -> int | None:
    """Channels a sequence of steps expects (None: any number, only elementwise steps)."""
    return next((s.n_inputs for s in steps if s.n_inputs is not None), None)


def n_outputs(steps: Sequence[Any]) -> int | None:
    """Channels a sequence of steps produces (None: as many as it is given)."""
    return next((s.n_outputs for s in reversed(steps) if s.n_outputs is not None), None)


# Programs of live step sequences: (ids of the steps, n_in) -> (weak references to the steps, program).
# An entry goes when one of its steps is collected, so the cache never keeps a mixer alive.
_programs: dict[tuple[tuple[int, ...], int], tuple[tuple[weakref.ref, ...], "CompiledProgram"]] = {}


def compile_steps(steps: Sequence[Any], n_in: int) -> CompiledProgram:
    """Lower ``steps`` (already validated and folded) for an input of ``n_in`` channels.

    Work and memory are linear in the number of steps. The same step
    objects give the same program object for as long as they live (by
    identity, not equality: a Mixer is not hashable, and comparing weights
    would cost what the cache saves).

    Examples
    --------
    >>> import pixelmix as pm
    >>> m = pm.Mixer([[0.5, 0.5]])
    >>> program = compile_steps((m,), 2)
    >>> program.n_out, program.table.tolist()
    (1, [[0, 2, 1, 0]])
    >>> compile_steps((m,), 2) is program
    True
    """
    steps = tuple(steps)
    key = (tuple(map(id, steps)), n_in)
    entry = _programs.get(key)
    # A dead step's id can be reused by a new object: the references must still lead to these steps.
    if entry is not None and all(ref() is step for ref, step in zip(entry[0], steps)):
        return entry[1]
    program = _lower(steps, n_in)
    try:
        refs = tuple(weakref.ref(step, partial(_forget, key)) for step in steps)
    except TypeError:  # a step type without weak references: lowered on every call
        return program
    _programs[key] = (refs, program)
    return program


def _forget(key, _ref) -> None:
    _programs.pop(key, None)


def _lower(steps: tuple[Any, ...], n_in: int) -> CompiledProgram:
    rows, params = [], []
    width = channels = n_in
    offset = 0
    # Leading steps that treat each channel on its own: elementwise steps, and
    # diagonal mixers ahead of them. (A diagonal mixer after an elementwise
    # step is not per-channel: its zero weights meet the other channels'
    # values, and 0 * inf from one channel is NaN in all of them.)
    per_channel, leading, seen_elementwise = 0, True, False
    for step in steps:
        low = step.lower()
        elementwise = step.n_outputs is None
        n_out = channels if elementwise else step.n_outputs
        rows.append((low.code, channels, n_out, offset))
        params.append(low.params)
        offset += len(low.params)
        if leading and low.per_channel and (elementwise or not seen_elementwise):
            per_channel += 1
            seen_elementwise |= elementwise
        else:
            leading = False
        channels = n_out
        width = max(width, channels)
    table = np.array(rows, dtype=np.int64).reshape(-1, 4)
    flat = np.concatenate(params) if params else np.zeros(0)
    return CompiledProgram(
        table=table, params=flat, n_in=n_in, n_out=channels, width=width, n_per_channel=per_channel,
        largest=float(np.abs(flat).max(initial=0.0)),
    )


def kernel_args(request: Request, lut: np.ndarray, lut_offset: int, start: int) -> dict[str, Any]:
    """The scalar and table arguments shared by the CPU and GPU kernels."""
    program = request.program
    out_dtype = request.out_dtype
    if out_dtype.kind in "iu":
        lo, hi = _int_range(out_dtype)
        fill = 0.0 if request.nodata is None else float(np.clip(np.rint(request.nodata), lo, hi))
    else:
        lo = hi = fill = 0.0
    return dict(
        table=program.table,
        params=program.params_as(request.acc_dtype),
        start=start,
        width=program.width,
        tile=request.tile,
        lut=lut,
        lut_offset=lut_offset,
        use_lut=start > 0,
        nodata=0.0 if request.nodata is None else request.nodata,
        use_nodata=request.nodata is not None,
        # NaN spreads through a mixing step to every output on its own;
        # only a program without one needs the per-pixel check.
        check_nan=request.image.dtype.kind == "f" and not program.has_mixing,
        is_int=out_dtype.kind in "iu",
        lo=lo,
        hi=hi,
        fill=fill,
    )


@lru_cache(maxsize=None)
def _int_range(dtype: np.dtype) -> tuple[float, float]:
    info = np.iinfo(dtype)
    return float(info.min), float(info.max)


def no_table(request: Request) -> tuple[np.ndarray, int, int]:
    """``(lut, offset, start)`` meaning "no lookup table"."""
    return np.zeros((1, 1), dtype=request.acc_dtype), 0, 0


def lookup_table(request: Request, run, backend: str) -> tuple[np.ndarray, int, int]:
    """A per-channel table of the program's leading per-channel steps, when it pays.

    Integer input of at most 16 bits has few distinct values, so the steps
    that treat each channel on its own (elementwise steps, diagonal maps such
    as a 1/255 scale) can be looked up instead of computed per pixel.
    Returns ``(lut, offset, start)``: ``lut[c, v + offset]`` is channel c's
    value v after the first ``start`` steps (``start == 0``: no table). The
    table is computed by the backend's own kernel (``run(x3, out3, request,
    lut, offset, start)``), so it holds exactly what the direct path computes.
    An 8-bit table is kept with the program, per ``backend`` (its name) and
    dtype: computing it is a launch, more work than a small image's own.
    Larger tables are computed again on each call: they pay only on images
    larger still, and kept they would hold megabytes for as long as their
    mixer lives.
    """
    program = request.program
    dtype = request.image.dtype.newbyteorder("=")
    lead = program.n_per_channel
    # A lone affine step gains nothing from a table: the kernel mixes on the fly.
    only_affine = lead == 1 and program.table[0, 0] == AFFINE
    if lead == 0 or only_affine or dtype.kind not in "iu" or dtype.itemsize > 2:
        return no_table(request)
    info = np.iinfo(dtype)
    n_values = int(info.max) - int(info.min) + 1
    # Only when the table is smaller than the image, and small enough to stay in cache.
    if n_values * program.n_in > min(config.LUT_MAX_VALUES, request.image.size):
        return no_table(request)

    def compute() -> np.ndarray:
        # In the kernel dtype the pieces are converted to (int8 is read as int16).
        values = np.arange(info.min, info.max + 1).astype(working_dtype(dtype))
        grid = np.ascontiguousarray(np.broadcast_to(values, (1, program.n_in, n_values)))
        table = np.empty((1, program.n_in, n_values), dtype=request.acc_dtype)
        head = replace(program, table=program.table[:lead], n_out=program.n_in, width=program.n_in, n_per_channel=lead)
        sub = Request(grid, table, 1, head, request.acc_dtype, request.acc_dtype, None, request.tile)
        run(grid, table, sub, *no_table(request))
        return table[0]

    if n_values > 256:
        return compute(), -int(info.min), lead
    return program.derived(("lookup table", backend, dtype, request.acc_dtype), compute), -int(info.min), lead
