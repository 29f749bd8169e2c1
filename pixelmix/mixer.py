"""The Mixer: a per-pixel affine map from C input channels to K outputs.

Also its functional form :func:`mix`, composition, pseudo-inverse, and the
JSON file format read by :func:`load`.

File format (version 1)
-----------------------
A UTF-8 JSON object::

    {"format": "pixelmix", "version": 1, "kind": "mixer",
     "weights": [[...], ...],        # K rows of C floats
     "bias": [...],                  # K floats
     "input_names": [...] or null, "output_names": [...] or null,
     "metadata": {...}}              # any JSON object

A program (:class:`pixelmix.ops.Program`) has ``"kind": "program"`` and
``"steps"``: a list of mixer objects (as above, without the ``format`` and
``version`` keys) and elementwise steps ``{"op": "relu", "params": []}``.
Floats are written with Python's shortest round-trip repr, so a save/load
round trip is exact. No pickle is involved: the files are safe to share.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["Mixer", "mix", "load", "FORMAT_VERSION"]

FORMAT_VERSION = 1


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
        w = np.array(weights, dtype=np.float64)
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
            b = np.array(bias, dtype=np.float64)
            if b.ndim == 0:
                b = np.full(k, float(b))
            if b.shape != (k,):
                raise ValueError(f"bias must have {k} value{'s' if k != 1 else ''} (one per output), got shape {b.shape}")
            if not np.all(np.isfinite(b)):
                raise ValueError("bias contains NaN or Inf; every value must be finite")
        w.flags.writeable = False
        b.flags.writeable = False
        self._weights = w
        self._bias = b
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
        from .engine import apply_steps

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
        from .ops import Elementwise, Program

        if isinstance(other, (Elementwise, Program)):
            return Program([other, self])
        return NotImplemented

    def __rmatmul__(self, other):
        from .ops import Elementwise, Program

        if isinstance(other, (Elementwise, Program)):
            return Program([self, other])
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
        return cls(
            d["weights"],
            d["bias"],
            input_names=d.get("input_names"),
            output_names=d.get("output_names"),
            metadata=d.get("metadata"),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the mixer to a JSON file (format above); read it with :func:`load`."""
        write_json(path, self.to_dict())


def write_json(path: str | os.PathLike, body: dict[str, Any]) -> None:
    """Write a mixer or program file atomically (temporary file, then rename)."""
    import tempfile

    path = Path(path)
    doc = {"format": "pixelmix", "version": FORMAT_VERSION, **body}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(path: str | os.PathLike):
    """Read a mixer or program saved with ``save``.

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
    from .ops import Program

    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a pixelmix file (not JSON: {exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != "pixelmix":
        raise ValueError(f"{path} is not a pixelmix mixer file (no 'format': 'pixelmix')")
    version = doc.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {version!r}; this pixelmix reads up to "
            f"{FORMAT_VERSION}: upgrade pixelmix"
        )
    kind = doc.get("kind")
    if kind == "mixer":
        return Mixer.from_dict(doc)
    if kind == "program":
        return Program.from_dict(doc)
    raise ValueError(f"{path} holds an unknown kind {kind!r} (expected 'mixer' or 'program')")


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
