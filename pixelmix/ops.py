"""Elementwise steps and per-pixel programs ("Network in Network").

A :class:`Program` is a short chain of steps applied to every pixel: affine
maps (:class:`~pixelmix.Mixer`) and elementwise functions (:func:`relu`,
:func:`clip`, :func:`log`, ...). Consecutive affine maps fold into one, so a
program is never longer than it has to be, and the whole chain runs as one
pass over the data with no intermediate image.

Steps compose like functions, right to left, as ``m2 @ m1`` does for mixers::

    >>> import numpy as np
    >>> import pixelmix as pm
    >>> from pixelmix import ops
    >>> m1 = pm.Mixer(np.ones((2, 3)))
    >>> m2 = pm.Mixer([[1.0, -1.0]])
    >>> net = m2 @ ops.relu() @ m1          # m1, then relu, then m2
    >>> net
    Program([Mixer(3 -> 2), relu(), Mixer(2 -> 1)])
    >>> net(np.ones((4, 4, 3))).shape
    (4, 4, 1)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from .dispatch import apply_steps
from .fileformat import MixerFileError, read_document, require, write_document
from . import lowering
from .kernels import elementwise as ew
from .lowering import Lowered
from .mixer import Mixer
from .unmixer import Unmixer

__all__ = [
    "Elementwise",
    "Program",
    "relu",
    "clip",
    "exp",
    "log",
    "srgb_encode",
    "srgb_decode",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "load",
]


@dataclass(frozen=True)
class Elementwise:
    """An elementwise step: the same scalar function on every channel value.

    Build one with the functions of this module (:func:`relu`, :func:`clip`,
    ...) rather than directly. Each keeps NaN as NaN.
    """

    name: str
    params: tuple[float, ...] = ()
    # Elementwise steps keep whatever channels they get.
    n_inputs = None
    n_outputs = None

    def __post_init__(self):
        # A tuple whatever was passed: the step's lowering is kept, so its parameters must not change.
        object.__setattr__(self, "params", tuple(self.params))

    @property
    def code(self) -> int:
        return _CODES[self.name]

    def lower(self) -> Lowered:
        """This step as a kernel step: its opcode and two scalar parameters."""
        return Lowered(self.code, np.array(self.kernel_params(), dtype=np.float64), True)

    def kernel_params(self) -> tuple[float, float]:
        """The two scalar parameters the kernels receive for this step."""
        if self.name in ("relu",):
            return 0.0, 0.0
        if self.name == "clip":
            return self.params[0], self.params[1]
        if self.name == "log":
            return self.params[0], 0.0
        if self.name == "srgb_encode":
            return 0.0031308, 1.055
        if self.name == "srgb_decode":
            return 0.04045, 1.055
        if self.name == "leaky_relu":
            return self.params[0], 0.0
        if self.name == "sigmoid":
            return 1.0, 0.0
        return 0.0, 0.0

    def reference(self, v: np.ndarray) -> np.ndarray:
        """NumPy version of this step (used by the oracle), in ``v.dtype``."""
        t = v.dtype.type
        if self.name == "relu":
            return np.where(v < 0, t(0), v)
        if self.name == "clip":
            lo, hi = t(self.params[0]), t(self.params[1])
            return np.where(v < lo, lo, np.where(v > hi, hi, v))
        if self.name == "exp":
            return np.exp(v)
        if self.name == "log":
            floor = t(self.params[0])
            return np.log(np.where(v < floor, floor, v))
        if self.name == "srgb_encode":
            out = v * t(12.92)
            hi = v > t(0.0031308)
            with np.errstate(invalid="ignore"):
                out[hi] = t(1.055) * np.power(v[hi], t(1 / 2.4)) - t(0.055)
            return out
        if self.name == "srgb_decode":
            out = v / t(12.92)
            hi = v > t(0.04045)
            out[hi] = np.power((v[hi] + t(0.055)) / t(1.055), t(2.4))
            return out
        if self.name == "leaky_relu":
            return np.where(v < 0, v * t(self.params[0]), v)
        if self.name == "sigmoid":
            return t(1) / (t(1) + np.exp(-v))
        if self.name == "tanh":
            return np.tanh(v)
        raise AssertionError(self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.name, "params": list(self.params)}

    def __repr__(self) -> str:
        args = ", ".join(repr(p) for p in self.params)
        return f"{self.name}({args})"

    def __matmul__(self, other):
        return Program([other, self]) if _is_step(other) else NotImplemented

    def __rmatmul__(self, other):
        return Program([self, other]) if _is_step(other) else NotImplemented

    def __call__(self, image, **kwargs):
        """Apply this step alone; see :meth:`Program.apply`."""
        return Program([self]).apply(image, **kwargs)


def _is_step(obj) -> bool:
    return isinstance(obj, (Mixer, Unmixer, Elementwise, Program))


_CODES = {
    "relu": ew.RELU,
    "clip": ew.CLIP,
    "exp": ew.EXP,
    "log": ew.LOG,
    "srgb_encode": ew.SRGB_ENCODE,
    "srgb_decode": ew.SRGB_DECODE,
    "leaky_relu": ew.LEAKY_RELU,
    "sigmoid": ew.SIGMOID,
    "tanh": ew.TANH,
}


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


def relu() -> Elementwise:
    """``max(v, 0)``, keeping NaN."""
    return Elementwise("relu")


def clip(lo: float, hi: float) -> Elementwise:
    """Clip values to ``[lo, hi]``, keeping NaN.

    Examples
    --------
    >>> from pixelmix import ops
    >>> ops.clip(0, 1)
    clip(0.0, 1.0)
    """
    lo, hi = _finite("clip lo", lo), _finite("clip hi", hi)
    if lo > hi:
        raise ValueError(f"clip needs lo <= hi, got lo={lo}, hi={hi}")
    return Elementwise("clip", (lo, hi))


def exp() -> Elementwise:
    """``exp(v)``."""
    return Elementwise("exp")


def log(floor: float = 1e-6) -> Elementwise:
    """``log(max(v, floor))``: values below ``floor`` (zeros too) give ``log(floor)``.

    Parameters
    ----------
    floor : float
        Smallest value passed to the logarithm; must be positive.
    """
    floor = _finite("log floor", floor)
    if floor <= 0:
        raise ValueError(f"log floor must be positive, got {floor}")
    return Elementwise("log", (floor,))


def srgb_encode() -> Elementwise:
    """Linear light to gamma-encoded sRGB (IEC 61966-2-1 transfer function)."""
    return Elementwise("srgb_encode")


def srgb_decode() -> Elementwise:
    """Gamma-encoded sRGB to linear light (inverse of :func:`srgb_encode`)."""
    return Elementwise("srgb_decode")


def leaky_relu(slope: float = 0.01) -> Elementwise:
    """``v if v >= 0 else slope * v``."""
    return Elementwise("leaky_relu", (_finite("leaky_relu slope", slope),))


def sigmoid() -> Elementwise:
    """The logistic function ``1 / (1 + exp(-v))``."""
    return Elementwise("sigmoid")


def tanh() -> Elementwise:
    """Hyperbolic tangent."""
    return Elementwise("tanh")


def _step_from_dict(d: dict[str, Any]) -> Elementwise:
    """Rebuild a saved step through its factory, so its parameters are checked again."""
    name = d.get("op")
    if name not in _CODES:
        raise ValueError(f"unknown elementwise step {name!r}; known: {sorted(_CODES)}")
    params = d.get("params", [])
    if not isinstance(params, list) or not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in params):
        raise ValueError(f"step {name!r} has bad parameters {params!r}: they must be a list of numbers")
    try:
        return globals()[name](*params)
    except TypeError as exc:
        raise ValueError(f"step {name!r} has bad parameters {params!r}: {exc}") from exc


class Program:
    """A per-pixel program: affine maps and elementwise steps, applied in order.

    Parameters
    ----------
    steps : iterable of Mixer, Elementwise or Program
        Applied first to last. Nested programs are flattened and consecutive
        mixers are folded into one affine map.

    Examples
    --------
    >>> import numpy as np
    >>> import pixelmix as pm
    >>> from pixelmix import ops
    >>> to_od = pm.Program([ops.log(1e-6), pm.Mixer(-np.eye(3))])
    >>> to_od(np.full((2, 2, 3), np.e))[0, 0]
    array([-1., -1., -1.])
    """

    def __init__(self, steps: Iterable[Any]):
        flat: list[Any] = []
        for step in steps:
            if isinstance(step, Program):
                flat.extend(step.steps)
            elif isinstance(step, (Mixer, Unmixer, Elementwise)):
                flat.append(step)
            else:
                raise TypeError(
                    f"a Program step must be a Mixer, an Unmixer, an elementwise step from "
                    f"pixelmix.ops or a Program, not {type(step).__name__}"
                )
        folded: list[Any] = []
        for step in flat:
            if isinstance(step, Mixer) and folded and isinstance(folded[-1], Mixer):
                folded[-1] = step @ folded[-1]
            else:
                folded.append(step)
        width = None
        for step in folded:
            if step.n_inputs is not None:
                if width is not None and step.n_inputs != width:
                    raise ValueError(
                        f"a mixer expecting {step.n_inputs} channels follows a step "
                        f"that produces {width}"
                    )
                width = step.n_outputs
        if not folded:
            raise ValueError("a Program needs at least one step")
        self.steps: tuple[Any, ...] = tuple(folded)

    @property
    def n_inputs(self) -> int | None:
        """Channels the program expects (None: any number, no mixer inside)."""
        return lowering.n_inputs(self.steps)

    @property
    def n_outputs(self) -> int | None:
        """Channels the program produces (None: as many as it is given)."""
        return lowering.n_outputs(self.steps)

    def apply(
        self,
        image,
        *,
        channel_axis: int = -1,
        dtype=None,
        nodata=None,
        out=None,
        tile_size: int | None = None,
        backend: str = "auto",
    ):
        """Run the program on every pixel of ``image``; see :meth:`pixelmix.Mixer.apply`."""
        return apply_steps(
            self.steps,
            image,
            channel_axis=channel_axis,
            dtype=dtype,
            nodata=nodata,
            out=out,
            tile_size=tile_size,
            backend=backend,
        )

    __call__ = apply

    def __matmul__(self, other):
        return Program([other, self]) if _is_step(other) else NotImplemented

    def __rmatmul__(self, other):
        return Program([self, other]) if _is_step(other) else NotImplemented

    def __len__(self) -> int:
        return len(self.steps)

    def __eq__(self, other) -> bool:
        return isinstance(other, Program) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Program([{', '.join(repr(s) for s in self.steps)}])"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (used by :meth:`save`)."""
        return {"kind": "program", "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Program":
        """The program described by ``d`` (as :meth:`to_dict` writes it); ValueError if malformed."""
        steps = []
        for i, step in enumerate(require(d, "steps", list, "a program")):
            if not isinstance(step, dict):
                raise ValueError(f"step {i} is not a JSON object")
            try:
                steps.append(_from_dict(step) if "kind" in step else _step_from_dict(step))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"step {i}: {exc}") from exc
        return cls(steps)

    def save(self, path) -> None:
        """Write the program to a JSON file; read it back with :func:`pixelmix.load`."""
        write_document(path, self.to_dict())


_KINDS = {"mixer": Mixer, "unmixer": Unmixer, "program": Program}


def _from_dict(d: dict[str, Any]):
    kind = d.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"unknown kind {kind!r} (expected one of {', '.join(_KINDS)})")
    return _KINDS[kind].from_dict(d)


def load(path: str | os.PathLike):
    """Read a mixer or program saved with ``save``.

    Raises :class:`pixelmix.fileformat.MixerFileError` (a ValueError) that
    names the file and what is wrong when it is not a readable mixer file.

    Examples
    --------
    >>> import tempfile, os
    >>> import pixelmix as pm
    >>> m = pm.Mixer([[0.5, 0.5]], output_names=["mean"])
    >>> path = os.path.join(tempfile.mkdtemp(), "mean.json")
    >>> m.save(path)
    >>> pm.load(path) == m
    True
    """
    doc = read_document(path)
    try:
        return _from_dict(doc)
    except (TypeError, ValueError) as exc:
        raise MixerFileError(path, str(exc)) from exc
