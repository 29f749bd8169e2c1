"""The mixer file format: one place for its version, writing and reading.

A UTF-8 JSON object (version 1)::

    {"format": "pixelmix", "version": 1, "kind": "mixer",
     "weights": [[...], ...],        # K rows of C floats
     "bias": [...],                  # K floats
     "input_names": [...] or null, "output_names": [...] or null,
     "metadata": {...}}              # any JSON object

A program has ``"kind": "program"`` and ``"steps"``: a list of step objects
(mixers as above without ``format`` and ``version``; elementwise steps
``{"op": "relu", "params": []}``; unmixers ``{"kind": "unmixer", ...}``).
Floats are written with Python's shortest round-trip repr, so a save/load
round trip is exact. No pickle is involved: the files are safe to share.

Reading checks the file before anything is built from it: a file that is
not this format, too large, nested too deep, or with numbers that do not
fit a float raises :class:`MixerFileError`, whose message starts with
"cannot read mixer file NAME:" and says what is wrong. Building the objects
(:func:`pixelmix.load`) reports its own problems the same way.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
# Files larger than this are refused before parsing (a 1000 x 1000 mixer is 20 MB).
MAX_FILE_BYTES = 256 * 2**20
# Programs longer than this are refused: a real per-pixel network has tens of steps.
MAX_STEPS = 10_000
# JSON nesting deeper than this is refused (metadata of nested fits is a few levels).
MAX_DEPTH = 64
KINDS = ("mixer", "program", "unmixer")


class MixerFileError(ValueError):
    """A mixer file that cannot be read; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        super().__init__(f"cannot read mixer file {os.fspath(path)}: {problem}")
        self.path, self.problem = path, problem


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_document(path: str | os.PathLike, body: dict[str, Any]) -> None:
    """Write a mixer or program file atomically (temporary file, then rename).

    The file gets the permissions of a file created normally (``0o666`` less
    the umask), so other users and cluster workers can read it.
    """
    path = Path(path)
    doc = {"format": "pixelmix", "version": FORMAT_VERSION, **body}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, iteratively (no recursion to exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def _reject_big_int(text: str):
    value = int(text)
    if abs(value) > 2**64:
        raise ValueError(f"the integer {text[:20]}... is too large")
    return value


def read_document(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a mixer file's JSON document; raise :class:`MixerFileError` if it is not one.

    Examples
    --------
    >>> import os, tempfile
    >>> from pixelmix.fileformat import MixerFileError, read_document
    >>> path = os.path.join(tempfile.mkdtemp(), "bad.json")
    >>> _ = open(path, "w").write('{"format": "pixelmix", "version": 1, "kind": "program", "steps": [5]}')
    >>> try:
    ...     read_document(path)
    ... except MixerFileError as exc:
    ...     print(exc.problem)
    step 0 is 5, not a JSON object
    """
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise MixerFileError(path, f"it is {size / 2**20:.0f} MB; mixer files over {MAX_FILE_BYTES // 2**20} MB are refused")
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise MixerFileError(path, exc.strerror or str(exc)) from exc
    try:
        doc = json.loads(raw.decode("utf-8"), parse_int=_reject_big_int, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise MixerFileError(path, "it is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise MixerFileError(path, f"it is not JSON ({exc})") from exc
    except RecursionError as exc:
        raise MixerFileError(path, f"its JSON is nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:  # big integers, NaN / Infinity
        raise MixerFileError(path, f"it holds a number pixelmix cannot use: {exc}") from exc
    if _depth(doc, MAX_DEPTH) > MAX_DEPTH:
        raise MixerFileError(path, f"its JSON is nested deeper than {MAX_DEPTH} levels")
    if not isinstance(doc, dict) or doc.get("format") != "pixelmix":
        raise MixerFileError(path, "it is not a pixelmix mixer file (no 'format': 'pixelmix')")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise MixerFileError(
            path, f"it has format version {version!r}; this pixelmix reads up to {FORMAT_VERSION}: upgrade pixelmix"
        )
    kind = doc.get("kind")
    if kind not in KINDS:
        raise MixerFileError(path, f"it holds an unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    if kind == "program":
        steps = doc.get("steps")
        if not isinstance(steps, list) or not steps:
            raise MixerFileError(path, "a program needs a non-empty list 'steps'")
        if len(steps) > MAX_STEPS:
            raise MixerFileError(path, f"the program has {len(steps)} steps; at most {MAX_STEPS} are accepted")
        for i, step in enumerate(steps):
            if not isinstance(step, dict):
                raise MixerFileError(path, f"step {i} is {json.dumps(step)[:40]}, not a JSON object")
    return doc


def _no_constant(name: str):
    raise ValueError(f"{name} is not a finite number")


def require(d: dict[str, Any], key: str, types, what: str):
    """``d[key]`` if present and of ``types``, else a ValueError naming ``what``."""
    if key not in d:
        raise ValueError(f"{what} has no {key!r}")
    value = d[key]
    if not isinstance(value, types) or isinstance(value, bool):
        raise ValueError(f"{what}: {key!r} must be {_type_names(types)}, got {type(value).__name__}")
    return value


def _type_names(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    names = {list: "a list", dict: "an object", str: "a string", int: "a number", float: "a number"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))
