"""The constrained unmixing step: per-pixel abundances of known endmember spectra.

An :class:`Unmixer` is a step of a per-pixel program like a Mixer: it
applies, saves, loads and composes the same way, and runs on every backend
(the NumPy reference, the Numba CPU kernel, the CUDA kernel, Dask blocks).
Unlike a Mixer it is not affine: with ``nonneg=True`` each pixel is an
exact non-negative least-squares solve (NNLS), with ``sum_to_one=True`` as
well a fully constrained one (FCLS), both by an active-set method compiled
into the kernels (:mod:`pixelmix.kernels.unmix`). ``residual=True`` appends
the root-mean-square residual over the input channels.

:func:`pixelmix.unmixer` builds one (or a plain Mixer when the map is
affine: unconstrained or sum-to-one only, without the residual).
"""

from __future__ import annotations

import itertools
import os
from typing import Any, Sequence

import numpy as np

from .dispatch import apply_steps
from .fileformat import require, write_document
from .kernels.elementwise import UNMIX
from .kernels.unmix_layout import check_endmembers, pack
from .lowering import Lowered, frozen

__all__ = ["Unmixer"]

# The NumPy reference enumerates the 2**K faces of the constraints.
REFERENCE_MAX_ENDMEMBERS = 12


class Unmixer:
    """Per-pixel abundances of K endmembers, least squares with optional constraints.

    Parameters
    ----------
    endmembers : array_like, shape (K, C)
        One endmember spectrum per row, linearly independent.
    nonneg : bool
        Abundances are non-negative (NNLS per pixel).
    sum_to_one : bool
        Abundances of each pixel sum to one (with ``nonneg``: FCLS).
    residual : bool
        Append one output channel: the per-pixel root-mean-square residual
        ``sqrt(mean_c (E^T a - x)_c^2)`` over the C input channels.
    names : sequence of str, optional
        Endmember names; outputs are "abundance:<name>" (default "em1", ...),
        and "residual".
    input_names : sequence of str, optional
        Names of the C input channels.
    metadata : dict, optional
        Anything JSON-serialisable.

    Examples
    --------
    >>> import numpy as np
    >>> import pixelmix as pm
    >>> E = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    >>> u = pm.unmixer(E, nonneg=True, names=["water", "soil"])
    >>> u.output_names
    ('abundance:water', 'abundance:soil')
    >>> u(np.array([[-1.0, 2.0, 1.0]]))
    array([[0. , 1.5]])
    """

    def __init__(
        self,
        endmembers,
        *,
        nonneg: bool = False,
        sum_to_one: bool = False,
        residual: bool = False,
        names: Sequence[str] | None = None,
        input_names: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        e, singular = check_endmembers(endmembers)
        k, c = e.shape
        self._endmembers = frozen(e)
        # Fixed at construction, like the endmembers: a lowered unmixer is cached per object.
        self._options = (bool(nonneg), bool(sum_to_one), bool(residual))
        names = [f"em{i + 1}" for i in range(k)] if names is None else [str(n) for n in names]
        if len(names) != k:
            raise ValueError(f"names has {len(names)} entries but there are {k} endmembers")
        self.names = tuple(names)
        self.input_names = None if input_names is None else tuple(str(n) for n in input_names)
        if self.input_names is not None and len(self.input_names) != c:
            raise ValueError(f"input_names has {len(self.input_names)} names but there are {c} channels")
        self.output_names = tuple(f"abundance:{n}" for n in names) + (("residual",) if residual else ())
        self.metadata = dict(metadata or {})
        self.metadata.setdefault("condition_number", float(singular[0] / singular[-1]))

    @property
    def endmembers(self) -> np.ndarray:
        """The (K, C) endmember spectra (read-only)."""
        return self._endmembers

    @property
    def nonneg(self) -> bool:
        """Whether abundances are held at zero or above (read-only)."""
        return self._options[0]

    @property
    def sum_to_one(self) -> bool:
        """Whether each pixel's abundances sum to one (read-only)."""
        return self._options[1]

    @property
    def residual(self) -> bool:
        """Whether the per-pixel RMSE follows the abundances as a last output (read-only)."""
        return self._options[2]

    @property
    def n_inputs(self) -> int:
        """C, the number of input channels."""
        return self._endmembers.shape[1]

    @property
    def n_outputs(self) -> int:
        """K abundances, plus one with the residual."""
        return self._endmembers.shape[0] + int(self.residual)

    def apply(self, image, *, channel_axis: int = -1, dtype=None, nodata=None, out=None,
              tile_size: int | None = None, backend: str = "auto"):
        """Unmix every pixel of ``image``; parameters as :meth:`pixelmix.Mixer.apply`."""
        return apply_steps(
            (self,), image, channel_axis=channel_axis, dtype=dtype, nodata=nodata, out=out,
            tile_size=tile_size, backend=backend,
        )

    __call__ = apply

    def __matmul__(self, other):
        raise TypeError(
            "compose an unmixer with other steps as a program: pm.Program([first, then]) "
            "runs first, then then, in one pass"
        )

    __rmatmul__ = __matmul__

    def __eq__(self, other) -> bool:
        return isinstance(other, Unmixer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        constraint = "FCLS" if self.nonneg and self.sum_to_one else "NNLS" if self.nonneg else (
            "sum-to-one" if self.sum_to_one else "LS")
        return f"Unmixer({self.n_inputs} -> {self.n_outputs}, {constraint})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (used by :meth:`save`)."""
        return {
            "kind": "unmixer",
            "endmembers": self._endmembers.tolist(),
            "nonneg": self.nonneg,
            "sum_to_one": self.sum_to_one,
            "residual": self.residual,
            "names": list(self.names),
            "input_names": None if self.input_names is None else list(self.input_names),
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Unmixer":
        """The unmixer described by ``d``; ValueError if malformed."""
        flags = {key: d.get(key, False) for key in ("nonneg", "sum_to_one", "residual")}
        for key, value in flags.items():
            if not isinstance(value, bool):
                raise ValueError(f"an unmixer: {key!r} must be true or false, got {value!r}")
        return cls(
            require(d, "endmembers", list, "an unmixer"),
            names=d.get("names"),
            input_names=d.get("input_names"),
            metadata=d.get("metadata"),
            **flags,
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the unmixer to a JSON file; read it back with :func:`pixelmix.load`."""
        write_document(path, self.to_dict())

    # -- the step protocol (pixelmix.lowering) ----------------------------------------

    def lower(self) -> Lowered:
        """This step as a kernel step: UNMIX with its packed matrices."""
        return Lowered(UNMIX, pack(self._endmembers, self.nonneg, self.sum_to_one, self.residual), False)

    def reference(self, v: np.ndarray) -> np.ndarray:
        """The exact solution on channels-first values ``v`` (C, ...), by enumerating faces.

        For each set of free abundances (the others held at zero), the
        least-squares (or sum-to-one) solution on that face; the answer is
        the feasible one with the smallest residual. Plain and obviously
        right, and exponential in K: refused beyond
        ``REFERENCE_MAX_ENDMEMBERS`` endmembers.
        """
        e = self._endmembers.astype(np.float64)
        k, c = e.shape
        if self.nonneg and k > REFERENCE_MAX_ENDMEMBERS:
            raise ValueError(
                f"the NumPy reference solves at most {REFERENCE_MAX_ENDMEMBERS} constrained endmembers "
                f"(it enumerates 2**K faces); use backend='cpu'"
            )
        y = v.reshape(c, -1).astype(np.float64)
        faces = [np.arange(k)]
        if self.nonneg:
            faces = [np.array(f) for r in range(1, k + 1) for f in itertools.combinations(range(k), r)]
        best = np.full(y.shape[1], np.inf)
        a = np.full((k, y.shape[1]), np.nan)
        if self.nonneg and not self.sum_to_one:  # the empty face: every abundance held at zero
            best, a = np.sum(y**2, axis=0), np.zeros_like(a)
        for face in faces:
            ef = e[face]
            gram_inv = np.linalg.inv(ef @ ef.T)
            x = gram_inv @ (ef @ y)
            if self.sum_to_one:
                g = gram_inv.sum(axis=1)
                x = x + np.outer(g / g.sum(), 1.0 - x.sum(axis=0))
            cost = np.sum((ef.T @ x - y) ** 2, axis=0)
            take = (cost < best) & (np.all(x >= 0, axis=0) if self.nonneg else True)
            best[take] = cost[take]
            a[:, take] = 0.0
            a[np.ix_(face, np.flatnonzero(take))] = x[:, take]
        out = [a]
        if self.residual:
            out.append(np.sqrt(np.sum((e.T @ a - y) ** 2, axis=0) / c)[None])
        result = np.concatenate(out).astype(v.dtype)
        return result.reshape((self.n_outputs,) + v.shape[1:])
