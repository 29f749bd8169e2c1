"""The program ``pixelmix apply`` runs: a mixer file, a preset, or a matrix on the command line."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np

from .. import presets
from ..fileformat import MixerFileError
from ..io.names import shown
from ..io.read import open_stack
from ..jobs.batch import expand_inputs
from ..mixer import Mixer
from ..ops import load
from .common import UsageError

__all__ = ["load_program"]


def load_program(args):
    """The Mixer or Program of ``--mixer``, ``--preset`` or ``--matrix`` (None for ``--preset list``)."""
    if args.mixer:
        return mixer_program(Path(args.mixer))
    if args.preset:
        return preset_program(args.preset, args.preset_option, args.files, args.channel_axis)
    return matrix_program(args.matrix, args.bias)


def mixer_program(path: Path):
    """The program of ``--mixer PATH``; any problem with the file is one UsageError line.

    The line is "cannot read mixer file PATH: what is wrong" (or "mixer
    file PATH does not exist"), never an internal exception name.
    """
    if not path.exists():
        raise UsageError(f"mixer file {shown(path)} does not exist")
    if path.is_dir():
        raise UsageError(f"cannot read mixer file {shown(path)}: it is a directory")
    try:
        return load(path)
    except MixerFileError as exc:
        raise UsageError(shown(exc)) from None
    except (ValueError, KeyError, TypeError, OSError, RecursionError, OverflowError) as exc:
        # pixelmix.load reports its problems as MixerFileError; this is a safety net
        raise UsageError(f"cannot read mixer file {shown(path)}: {shown(exc)}") from None


def _parse_numbers(text: str, what: str) -> np.ndarray:
    text = text.strip()
    try:
        if text.startswith("["):
            return np.array(json.loads(text), dtype=np.float64)
        rows = [r for r in text.split(";") if r.strip()]
        return np.array([[float(v) for v in r.replace(" ", ",").split(",") if v] for r in rows])
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise UsageError(
            f"cannot read {what} {text[:200]!r}: {shown(exc)}; write rows as 'a,b,c;d,e,f'"
        ) from None


def matrix_program(matrix: str, bias: str | None):
    """The mixer of ``--matrix`` (inline rows, a JSON list, a .csv/.json file) and ``--bias``."""
    path = Path(matrix)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json":
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except RecursionError:
                raise UsageError(f"cannot read the matrix in {shown(path)}: its JSON is nested too deep") from None
            except (ValueError, OSError) as exc:  # bad JSON, not UTF-8, unreadable
                raise UsageError(f"{shown(path)} is not valid JSON: {shown(exc)}") from None
            if isinstance(doc, dict) and doc.get("format") == "pixelmix":
                if bias is not None:
                    raise UsageError("--bias cannot be combined with a pixelmix mixer file")
                return mixer_program(path)
            if isinstance(doc, dict):
                weights, file_bias = doc.get("weights"), doc.get("bias")
                if weights is None:
                    raise UsageError(f"{shown(path)} holds no 'weights' entry")
            else:
                weights, file_bias = doc, None
            try:
                weights = np.array(weights, dtype=np.float64)
            except (ValueError, TypeError, OverflowError, RecursionError) as exc:
                raise UsageError(f"cannot read the matrix in {shown(path)}: {shown(exc)}") from None
        else:
            try:
                weights = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=2)
            except ValueError as exc:
                raise UsageError(f"cannot read the matrix in {path}: {exc}") from None
            file_bias = None
    else:
        weights, file_bias = _parse_numbers(matrix, "--matrix"), None
    if weights.ndim == 1:
        weights = weights[None, :]
    b = file_bias if bias is None else _parse_numbers(bias, "--bias").ravel()
    try:
        return Mixer(weights, b, metadata={"method": "matrix", "source": matrix})
    except (ValueError, TypeError, OverflowError) as exc:
        raise UsageError(f"bad --matrix: {shown(exc)}") from None


def preset_program(name: str, options: list[str], files: list[str], channel_axis):
    """The preset ``name`` built with ``--preset-option KEY=VALUE`` values.

    Presets that depend on the data (``wavelengths``, ``n_bands``) take them
    from the inputs, which must all agree.
    """
    names = list(presets.names())
    if name == "list":
        print("\n".join(names))
        return None
    if name not in names:
        raise UsageError(f"unknown preset {name!r}; choose from: {', '.join(names)}")
    kwargs = {}
    for option in options or []:
        key, sep, value = option.partition("=")
        if not sep:
            raise UsageError(f"--preset-option takes KEY=VALUE, got {option!r}")
        try:
            kwargs[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key.strip()] = value
    wanted = inspect.signature(presets._REGISTRY[name]).parameters
    needs = [k for k in ("wavelengths", "n_bands") if k in wanted and k not in kwargs]
    if needs:
        kwargs.update(_from_inputs(needs, files, channel_axis, name))
    try:
        return presets.get(name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{exc} (give options as --preset-option KEY=VALUE)") from None


def _from_inputs(keys: list[str], files: list[str], channel_axis, preset: str) -> dict:
    """``wavelengths`` / ``n_bands`` read from the input files (they must all agree)."""
    paths, _ = expand_inputs(files)
    found = None
    for path in paths:
        with open_stack(path, channel_axis=channel_axis) as stack:
            here = {"wavelengths": stack.wavelengths, "n_bands": stack.n_channels}
        if "wavelengths" in keys and here["wavelengths"] is None:
            raise UsageError(f"preset {preset!r} needs wavelengths, and {path} carries none; "
                             f"give them with --preset-option wavelengths=[...]")
        here = {k: here[k] for k in keys}
        if found is not None and here != found:
            raise UsageError(f"preset {preset!r}: {path} differs from the first input in {', '.join(keys)}; "
                             f"run such files separately")
        found = here
    if found is None:
        raise UsageError(f"preset {preset!r} takes {', '.join(keys)} from the inputs, but there are none")
    return found
