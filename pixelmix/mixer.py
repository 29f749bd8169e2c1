"""The Mixer: a per-pixel affine map from C input channels to K outputs.

Also its functional form :func:`mix`, composition and pseudo-inverse. Its
file format is :mod:`pixelmix.fileformat`; :func:`pixelmix.load` reads it.
Composition with elementwise steps and programs is theirs to do
(:mod:`pixelmix.ops` answers ``mixer @ step`` through ``__rmatmul__``).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .dispatch import apply_steps
from .fileformat import require, write_document
from .kernels.elementwise import AFFINE
from .lowering import Lowered, frozen

__all__ = ["Mixer", "mix"]


def _jsonable(value: Any, where: str) -> Any:
    """Return ``value`` as plain JSON types (arrays become lists), or raise."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"metadata keys must be strings, got {k!r} in {where}")
            out[k] = _jsonable(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist(), where)
    if isinstance(value, np.generic):
        return _jsonable(value.item(), where)
    if isinstance(value, float) and not np.isfinite(value):
        raise ValueError(
            f"metadata value {value} in {where} is not finite; JSON cannot store it "
            f"(use None for a missing value)"
        )
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"metadata value {value!r} in {where} is not JSON-serialisable; use numbers, "
        f"strings, lists, dicts or NumPy arrays"
    )


def _real(values, which: str) -> np.ndarray:
    """``values`` as a new float64 array; complex or non-numeric values are refused."""
    try:
        a = np.array(values)
    except ValueError as exc:  # ragged rows
        raise ValueError(f"{which} must be a rectangular array of numbers ({exc})") from exc
    if a.dtype.kind == "c":
        raise TypeError(f"{which} are complex; a mixer needs real numbers (take .real if the imaginary parts are 0)")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{which} must be numbers, got values of type {a.dtype}")
    return a.astype(np.float64)


def _names(names, n: int, which: str) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, str):
        raise TypeError(f"{which} must be a sequence of strings, not one string")
    names = tuple(str(s) for s in names)
    if len(names) != n:
        raise ValueError(f"{which} has {len(names)} names but there are {n} channels")
    return names


class Mixer:
    """A per-pixel affine map: ``out[k] = sum_c weights[k, c] * x[c] + bias[k]``.

    Parameters
    ----------
    weights : array_like, shape (K, C)
        One row per output channel, one column per input channel. Must be finite.
    bias : array_like, shape (K,), optional
        Added to each output channel; zeros by default.
    input_names, output_names : sequence of str, optional
        Channel names, kept through composition, saving and TIFF output.
    metadata : dict, optional
        Anything JSON-serialisable (NumPy arrays are stored as lists): the
        fitting method, its statistics, provenance.

    Examples
    --------
    >>> import numpy as np
    >>> import pixelmix as pm
    >>> gray = pm.Mixer([[0.2125, 0.7154, 0.0721]], output_names=["gray"])
    >>> gray.n_inputs, gray.n_outputs
    (3, 1)
    >>> rgb = np.full((2, 2, 3), 200, dtype=np.uint8)
    >>> gray(rgb)[..., 0].round(3)
    array([[200., 200.],
           [200., 200.]], dtype=float32)
    >>> planes = np.ones((3, 2, 2), dtype=np.uint16)  # channels first
    >>> gray.apply(planes, channel_axis=0).shape
    (1, 2, 2)
    """

    def __init__(
        self,
        weights,
        bias=None,
        *,
        input_names: Sequence[str] | None = None,
        output_names: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        w = _real(weights, "weights")
        if w.ndim != 2 or 0 in w.shape:
            raise ValueError(
                f"weights must be a non-empty 2-D array (K outputs, C inputs), got shape {w.shape}"
            )
        if not np.all(np.isfinite(w)):
            raise ValueError("weights contain NaN or Inf; every weight must be finite")
        k, c = w.shape
        if bias is None:
            b = np.zeros(k)
        else:
            b = _real(bias, "bias")
            if b.ndim == 0:
                b = np.full(k, float(b))
            if b.shape != (k,):
                raise ValueError(f"bias must have {k} value{'s' if k != 1 else ''} (one per output), got shape {b.shape}")
            if not np.all(np.isfinite(b)):
                raise ValueError("bias contains NaN or Inf; every value must be finite")
        self._weights = frozen(w)
        self._bias = frozen(b)
        self.input_names = _names(input_names, c, "input_names")
        self.output_names = _names(output_names, k, "output_names")
        self.metadata: dict[str, Any] = _jsonable(dict(metadata or {}), "metadata")

    @property
    def weights(self) -> np.ndarray:
        """The (K, C) weight matrix (read-only)."""
        return self._weights

    @property
    def bias(self) -> np.ndarray:
        """The (K,) bias (read-only)."""
        return self._bias

    @property
    def n_inputs(self) -> int:
        """C, the number of input channels."""
        return self._weights.shape[1]

    @property
    def n_outputs(self) -> int:
        """K, the number of output channels."""
        return self._weights.shape[0]

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
        """Mix the channels of every pixel of ``image``.

        Parameters
        ----------
        image : array_like
            Any number of dimensions, C channels on ``channel_axis``. dtype
            uint8, uint16, int16, int32, float32 or float64; views, read-only
            and memory-mapped arrays are read in place, never copied whole.
        channel_axis : int
            The axis holding the channels; negative values count from the end.
        dtype : dtype, optional
            Output dtype. Default float32, or float64 for float64 input. An
            integer dtype rounds half to even and saturates to its range.
        nodata : number, optional
            Pixels where any channel equals this value are treated as missing,
            like pixels with NaN: NaN in every output channel (integer output
            gets ``nodata`` clipped to its range, or 0 for NaN pixels).
        out : ndarray, optional
            Array to write the result into (right shape and dtype); returned.
        tile_size : int, optional
            Most pixels processed per tile; by default sized to the CPU cache.
            Results are bitwise identical for every tile size.
        backend : {"auto", "cpu", "cuda", "numpy"}
            ``"cpu"``: Numba kernels; ``"cuda"``: an NVIDIA GPU (arrays already
            on the GPU stay there); ``"auto"``: the GPU for large images when
            one is usable, else the CPU; ``"numpy"``: the plain NumPy
            reference implementation. A Dask array gives a lazy Dask array.

        Returns
        -------
        ndarray
            The image's shape with C replaced by K on ``channel_axis``.
        """
        return apply_steps(
            (self,),
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
        """``self @ other``: apply ``other`` first, then ``self``, folded into one map."""
        if isinstance(other, Mixer):
            if self.n_inputs != other.n_outputs:
                raise ValueError(
                    f"cannot compose: the left mixer expects {self.n_inputs} channels but "
                    f"the right one produces {other.n_outputs}"
                )
            return Mixer(
                self.weights @ other.weights,
                self.weights @ other.bias + self.bias,
                input_names=other.input_names,
                output_names=self.output_names,
                metadata={"method": "compose", "steps": [other.metadata, self.metadata]},
            )
        # Elementwise steps and programs compose through their __rmatmul__.
        return NotImplemented

    def pinv(self, center=None) -> "Mixer":
        """The pseudo-inverse map: from outputs back to the input channels.

        For ``y = W x + b`` it returns ``x = center + pinv(W) (y - b - W center)``:
        of all inputs that explain ``y`` best (least squares), the one closest
        to ``center``. So ``m.pinv() @ m`` projects each pixel onto the
        subspace the mixer keeps, through ``center``: with a PCA mixer that is
        "project and reconstruct" denoising, in one pass.

        When ``metadata["inverse"]`` holds a (C, K) matrix, it is used instead
        of ``pinv(W)``: a fit whose projection is not orthogonal stores its
        own reconstruction there (MNF does, so ``m.pinv() @ m`` is the MNF
        denoiser).

        Parameters
        ----------
        center : array_like, shape (C,), optional
            Default: ``metadata["mean"]`` when the mixer has one (fitted
            mixers do), else the origin.

        Examples
        --------
        >>> import numpy as np
        >>> import pixelmix as pm
        >>> m = pm.Mixer([[1.0, 1.0]], bias=[2.0])
        >>> m.pinv().weights
        array([[0.5],
               [0.5]])
        >>> (m.pinv() @ m)(np.array([3.0, 1.0]))
        array([2., 2.])
        """
        if center is None:
            center = self.metadata.get("mean")
        c = np.zeros(self.n_inputs) if center is None else np.asarray(center, dtype=np.float64)
        if c.shape != (self.n_inputs,):
            raise ValueError(f"center must have {self.n_inputs} values, got shape {c.shape}")
        inverse = self.metadata.get("inverse")
        if inverse is None:
            p = np.linalg.pinv(self.weights)
        else:
            p = np.asarray(inverse, dtype=np.float64)
            if p.shape != (self.n_inputs, self.n_outputs):
                raise ValueError(
                    f'metadata["inverse"] has shape {p.shape}, expected '
                    f"({self.n_inputs}, {self.n_outputs}); remove it to use the pseudo-inverse"
                )
        return Mixer(
            p,
            c - p @ (self.bias + self.weights @ c),
            input_names=self.output_names,
            output_names=self.input_names,
            metadata={"method": "pinv", "of": self.metadata},
        )

    def __eq__(self, other) -> bool:
        return isinstance(other, Mixer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Mixer({self.n_inputs} -> {self.n_outputs})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (used by :meth:`save`)."""
        return {
            "kind": "mixer",
            "weights": self.weights.tolist(),
            "bias": self.bias.tolist(),
            "input_names": None if self.input_names is None else list(self.input_names),
            "output_names": None if self.output_names is None else list(self.output_names),
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Mixer":
        """The mixer described by ``d`` (as :meth:`to_dict` writes it); ValueError if malformed."""
        return cls(
            require(d, "weights", list, "a mixer"),
            require(d, "bias", list, "a mixer"),
            input_names=d.get("input_names"),
            output_names=d.get("output_names"),
            metadata=d.get("metadata"),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the mixer to a JSON file (:mod:`pixelmix.fileformat`); read it with :func:`pixelmix.load`."""
        write_document(path, self.to_dict())

    # -- the step protocol (pixelmix.lowering) ----------------------------------------

    def lower(self) -> Lowered:
        """This map as a kernel step: AFFINE, weights row-major then the biases."""
        w = self.weights
        diagonal = w.shape[0] == w.shape[1] and not np.any(w - np.diag(np.diag(w)))
        return Lowered(AFFINE, np.concatenate([w.ravel(), self.bias]), diagonal)

    def reference(self, v: np.ndarray) -> np.ndarray:
        """The map on channels-first values ``v`` (C, ...), in ``v.dtype``: bias, then each term in channel order."""
        w = self.weights.astype(v.dtype)
        acc = np.empty((self.n_outputs,) + v.shape[1:], dtype=v.dtype)
        acc[...] = self.bias.astype(v.dtype).reshape((-1,) + (1,) * (v.ndim - 1))
        for c in range(self.n_inputs):
            for k in range(self.n_outputs):
                acc[k] += w[k, c] * v[c]
        return acc


def mix(
    image,
    weights,
    bias=None,
    *,
    channel_axis: int = -1,
    dtype=None,
    nodata=None,
    out=None,
    tile_size: int | None = None,
    backend: str = "auto",
):
    """Mix channels with a weight matrix: ``Mixer(weights, bias).apply(image, ...)``.

    See :meth:`Mixer.apply` for the parameters.

    Examples
    --------
    >>> import numpy as np
    >>> import pixelmix as pm
    >>> pm.mix(np.array([[1, 2, 3]], dtype=np.uint8), [[1, 1, 1], [1, 0, -1]])
    array([[ 6., -2.]], dtype=float32)
    """
    return Mixer(weights, bias).apply(
        image,
        channel_axis=channel_axis,
        dtype=dtype,
        nodata=nodata,
        out=out,
        tile_size=tile_size,
        backend=backend,
    )
