"""The rules every per-file job follows, whatever it writes.

An input is refused, before any output exists, when the program cannot run
on it (:func:`check_input`: its dtype, its channel count, its channel names
against the mixer's); :func:`planned_output` says what the output will be;
a job reports a :class:`FileResult`, and an error as one line
(:func:`failure_reason`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..dispatch import BACKENDS
from ..io.names import shown
from ..io.space import is_full
from ..plan import dtype_problem, output_dtype
from .provenance import first_mixing_step, program_info, program_input_names


@dataclass
class FileResult:
    """What happened to one input."""

    src: Path
    dst: Path | None
    status: str  # "done", "skipped" or "failed"
    reason: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    traceback: str = ""
    held: int = 0  # pixels with an abundance held at 0 by a constrained unmixer (jobs.constraints)
    unmixed: int = 0  # pixels counted for ``held``


def failure_reason(exc: BaseException, path=None) -> str:
    """One line saying what went wrong (without ``path``, which the caller prints).

    Examples
    --------
    >>> from pixelmix.jobs.rules import failure_reason
    >>> failure_reason(ValueError("a.tif is not a readable TIFF file (bad header)"), "a.tif")
    'not a readable TIFF file (bad header)'
    """
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.strerror:
        # A full disk is about the disk, not the temporary entry that hit it.
        text = exc.strerror + (f": {shown(exc.filename)}" if exc.filename and not is_full(exc) else "")
    if not text or not isinstance(exc, (ValueError, TypeError, OSError, ImportError)):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if path is not None:
        for prefix in (f"{path}: ", f"{path} is ", f"{path} "):
            if text.startswith(prefix):
                text = text[len(prefix):]
                break
    return text.splitlines()[0] if text else text


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` both exist and are the same file (or directory)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _listed(names, limit: int = 16) -> str:
    shown_names = [repr(shown(n)) for n in names]
    if len(shown_names) > limit:
        shown_names = shown_names[:limit] + [f"... ({len(names)} in all)"]
    return "[" + ", ".join(shown_names) + "]"


def _check_names(program, stack) -> None:
    """Refuse a mixer made for channels named otherwise than the file's (in order and set).

    A preset's input names say what it expects in general (``R, G, B``, the
    wavelengths it was built for), not which file it came from: not checked.
    """
    metadata = getattr(first_mixing_step(program), "metadata", None) or {}
    while metadata.get("method") == "compose" and metadata.get("steps"):
        metadata = metadata["steps"][0] or {}  # the map applied first holds the input names
    if metadata.get("method") == "preset":
        return
    expected = program_input_names(program)
    found = stack.channel_names
    if expected is None or found is None or len(expected) != len(found) or list(expected) == list(found):
        return
    first = next(i for i, (a, b) in enumerate(zip(found, expected)) if a != b)
    how = "the same channels in another order" if sorted(expected) == sorted(found) else "other channels"
    raise ValueError(
        f"has channels {_listed(found)} but the mixer was made for {_listed(expected)} ({how}: "
        f"channel {first} is {shown(found[first])!r}, the mixer's is {shown(expected[first])!r}); "
        f"give it a file with the mixer's channels, or pass --ignore-channel-names "
        f"(check_names=False) to apply it by position anyway"
    )


def check_input(program, stack, check_names: bool) -> None:
    """Refuse an input the program cannot run on, before any output is created."""
    problem = dtype_problem(stack.dtype)
    if problem is not None:
        raise ValueError(problem)
    check_program(program, stack)
    if check_names:
        _check_names(program, stack)


def check_program(program, stack) -> None:
    """Refuse a stack whose channel count is not the program's, saying which axis might hold the channels."""
    n_in = program.n_inputs
    if n_in is not None and stack.n_channels != n_in:
        hint = ""
        matches = [ax for ax, n in enumerate(stack.shape) if n == n_in and ax != stack.channel_axis]
        if matches:
            hint = f"; pass --channel-axis {matches[0]} (channel_axis={matches[0]}) if that axis holds the channels"
        raise ValueError(
            f"has {stack.n_channels} channels on axis {stack.channel_axis} "
            f"(axes {stack.axes}, shape {stack.shape}) but the mixer expects {n_in}{hint}"
        )


def check_backend(backend: str) -> None:
    """Refuse a backend name that is not one of :data:`pixelmix.dispatch.BACKENDS`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {', '.join(map(repr, BACKENDS))}")


def planned_output(stack, program, dtype) -> tuple[np.dtype, int, list[str] | None]:
    """The output dtype, channel count and channel names of ``program`` on ``stack``."""
    out_dtype = output_dtype(stack.dtype, dtype)
    _, n_out, names = program_info(program)
    if n_out is None:  # an elementwise program keeps the channels
        n_out, names = stack.n_channels, stack.channel_names
    return out_dtype, n_out, names


def check_destination(src, dst, overwrite: bool, *, where: str) -> tuple[Path, Path]:
    """``(src, dst)`` as paths, once ``dst`` is known not to be the input nor, unless ``overwrite``, to exist.

    ``where`` names what the user should choose instead ("output directory").
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve() or same_file(src, dst):
        raise ValueError(f"refusing to overwrite the input {shown(src)}: choose another {where}")
    if os.path.lexists(dst) and not overwrite:
        raise FileExistsError(f"{shown(dst)} exists; pass --resume to skip finished outputs or --overwrite")
    return src, dst
