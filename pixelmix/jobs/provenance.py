"""What an output records of how it was made, and the facts about a program that record uses.

- :func:`provenance`: the record every output carries: the program's
  SHA-256 (:func:`program_sha256`), the program itself when its JSON is at
  most :data:`PROVENANCE_MAX_BYTES` (else a bounded summary), the source,
  the output dtype, nodata and the time.
- :func:`same_origin` and :func:`is_complete`: whether an existing output
  was made by this program, dtype and nodata (what ``resume`` asks).
- :func:`program_info`, :func:`program_input_names`, :func:`keeps_channels`:
  a Mixer's or Program's channel counts and names.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..io.read import open_stack
from ..ops import Program

# Provenance embeds the program whole only when its JSON is at most this many
# bytes; a larger one (a huge matrix, a hostile metadata string) is recorded
# by its SHA-256 and a summary of at most about 8 KB, so every output carries
# a bounded record.
PROVENANCE_MAX_BYTES = 2**20
# Bounds of the summary of a program too large to embed.
_SUMMARY_NAMES = 32
_SUMMARY_TEXT = 2048


def program_info(program) -> tuple[int | None, int | None, list[str] | None]:
    """(n_inputs, n_outputs, output names) of a Mixer or Program.

    Examples
    --------
    >>> import pixelmix as pm
    >>> from pixelmix.jobs.provenance import program_info
    >>> program_info(pm.Mixer([[1.0, 0.0], [0.0, 1.0]], output_names=["a", "b"]))
    (2, 2, ['a', 'b'])
    """
    names = None
    if isinstance(program, Program):
        for step in reversed(program.steps):
            if hasattr(step, "output_names"):
                names = step.output_names
                break
    else:
        names = program.output_names
    return program.n_inputs, program.n_outputs, None if names is None else list(names)


def program_input_names(program) -> list[str] | None:
    """The channel names a Mixer or Program was made for (its first mixer's input names), or None.

    Examples
    --------
    >>> import pixelmix as pm
    >>> from pixelmix import ops
    >>> from pixelmix.jobs.provenance import program_input_names
    >>> program_input_names(pm.Program([ops.relu(), pm.Mixer([[1.0, 1.0]], input_names=["a", "b"])]))
    ['a', 'b']
    """
    step = first_mixing_step(program)
    names = getattr(step, "input_names", None)
    return None if names is None else list(names)


def first_mixing_step(program):
    """The first step of ``program`` that mixes channels (its inputs are the file's channels), or None."""
    steps = program.steps if isinstance(program, Program) else (program,)
    # elementwise steps before it keep the channels: its inputs are the file's
    return next((step for step in steps if step.n_inputs is not None), None)


def keeps_channels(program) -> bool:
    """Whether output channel i of ``program`` is its input channel i.

    True for an elementwise program, and for a map whose output names are
    its input names (a denoiser such as ``pca.pinv() @ pca``): what the
    input says of its channels (wavelengths) then still holds.

    Examples
    --------
    >>> import numpy as np
    >>> import pixelmix as pm
    >>> from pixelmix.jobs.provenance import keeps_channels
    >>> pca = pm.Mixer(np.eye(2, 3), input_names=["a", "b", "c"], output_names=["PC1", "PC2"])
    >>> keeps_channels(pca), keeps_channels(pca.pinv() @ pca)
    (False, True)
    """
    _, n_out, out_names = program_info(program)
    if n_out is None:
        return True
    in_names = program_input_names(program)
    return in_names is not None and out_names is not None and list(in_names) == list(out_names)


def _program_text(program) -> tuple[dict[str, Any], str]:
    body = program.to_dict()
    return body, json.dumps(body, sort_keys=True)


def program_sha256(program) -> str:
    """SHA-256 of the program's canonical JSON: what provenance records and ``resume`` compares.

    Examples
    --------
    >>> import pixelmix as pm
    >>> from pixelmix.jobs.provenance import program_sha256
    >>> program_sha256(pm.Mixer([[1.0, 2.0]])) == program_sha256(pm.Mixer([[1.0, 2.0]]))
    True
    >>> program_sha256(pm.Mixer([[1.0, 2.0]])) == program_sha256(pm.Mixer([[2.0, 1.0]]))
    False
    """
    return hashlib.sha256(_program_text(program)[1].encode()).hexdigest()


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary(body: dict[str, Any], program, n_bytes: int) -> dict[str, Any]:
    """What a program too large to embed leaves in provenance: kind, sizes, a few names."""
    n_in, n_out, names = program_info(program)
    summary: dict[str, Any] = {
        "kind": body.get("kind"),
        "n_inputs": n_in,
        "n_outputs": n_out,
        "json_bytes": n_bytes,
        "note": f"the program's JSON is over {PROVENANCE_MAX_BYTES} bytes: only this summary is kept",
    }
    if isinstance(body.get("steps"), list):
        summary["n_steps"] = len(body["steps"])
    if names:
        summary["output_names"] = [_cut(str(n), 64) for n in names[:_SUMMARY_NAMES]]
    metadata = body.get("metadata")
    if metadata:
        summary["metadata"] = _cut(json.dumps(metadata, sort_keys=True), _SUMMARY_TEXT)
    return summary


def provenance(program, src: Path, dtype: np.dtype, nodata) -> dict[str, Any]:
    """The record of how an output was made, JSON-ready and bounded in size.

    It holds the program's SHA-256 (:func:`program_sha256`), and the
    program itself when its JSON is at most :data:`PROVENANCE_MAX_BYTES`,
    else a summary of a few KB (kind, sizes, the first output names, the
    start of the metadata).

    Examples
    --------
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import pixelmix as pm
    >>> from pixelmix.jobs.provenance import provenance
    >>> huge = pm.Mixer([[1.0]], metadata={"note": "x" * 10**7})
    >>> record = provenance(huge, Path("a.tif"), np.dtype("float32"), None)
    >>> "program" in record, len(str(record)) < 8000, record["program_summary"]["n_outputs"]
    (False, True, 1)
    """
    body, text = _program_text(program)
    record: dict[str, Any] = {
        "software": f"pixelmix {__version__}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": _cut(src.name, 512),
        "dtype": dtype.name,
        "nodata": nodata,
        "program_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    if len(text) <= PROVENANCE_MAX_BYTES:  # ASCII: json.dumps escapes the rest
        record["program"] = body
    else:
        record["program_summary"] = _summary(body, program, len(text))
    return record


def same_origin(record: dict[str, Any] | None, sha256: str, dtype, nodata) -> bool:
    """Whether a provenance ``record`` says its output was made by this program, dtype and nodata.

    Examples
    --------
    >>> from pixelmix.jobs.provenance import same_origin
    >>> record = {"program_sha256": "ab12", "dtype": "float32", "nodata": None}
    >>> same_origin(record, "ab12", "float32", None), same_origin(record, "cd34", "float32", None)
    (True, False)
    """
    if not isinstance(record, dict) or record.get("dtype") is None:
        return False
    try:
        return (
            record.get("program_sha256") == sha256
            and np.dtype(record.get("dtype")) == np.dtype(dtype)
            and record.get("nodata") == nodata
        )
    except TypeError:
        return False


def is_complete(
    dst: str | os.PathLike,
    shape: tuple[int, ...] | None = None,
    dtype=None,
    *,
    sha256: str | None = None,
    nodata=None,
) -> bool:
    """Whether ``dst`` is a whole, readable TIFF (of ``shape`` and ``dtype`` if given).

    With ``sha256`` it must also have been made by that program (its
    provenance records the SHA-256, see :func:`program_sha256`) with the
    same ``dtype`` and ``nodata``.
    """
    try:
        with open_stack(dst) as stack:
            # TIFF readers drop axes of length 1 (one output channel of an OME or ImageJ file)
            if shape is not None and [n for n in stack.shape if n != 1] != [n for n in shape if n != 1]:
                return False
            if dtype is not None and stack.dtype != np.dtype(dtype):
                return False
            if sha256 is not None and not same_origin(stack.provenance, sha256, stack.dtype, nodata):
                return False
    except Exception:
        return False
    return True
