"""Many TIFF files through one program, in this process: the local batch loop.

:func:`run_local` expands the inputs (paths, directories, glob patterns;
:func:`expand_inputs`), plans the outputs (:func:`plan_batch`: one per
input, never over an input, stale temporaries of dead runs removed), runs
:func:`pixelmix.jobs.file.run_job` on each in turn with a progress bar, and
returns a :class:`Summary`. One bad file never stops the others.
"""

from __future__ import annotations

import glob
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..io.names import shown
from ..io.publish import clean_stale
from .file import FileResult, run_job
from .rules import same_file

__all__ = [
    "run_local",
    "expand_inputs",
    "output_path",
    "plan_batch",
    "progress_bar",
    "Summary",
    "TIFF_SUFFIXES",
    "make_output_dir",
]

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")


@dataclass
class Summary:
    """Results of a batch, in input order."""

    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        """How many inputs ended with ``status`` (``"done"``, ``"skipped"``, ``"failed"``)."""
        return sum(r.status == status for r in self.results)

    @property
    def ok(self) -> bool:
        """True when no input failed."""
        return self.count("failed") == 0

    def text(self) -> str:
        """A short human-readable report: counts, bytes, throughput, failures.

        One line per failure, ``  FAILED PATH: reason``; control characters
        in names are escaped (:func:`pixelmix.io.names.shown`), so a name
        holding a newline never splits its line.
        """
        done = [r for r in self.results if r.status == "done"]
        bytes_in = sum(r.bytes_in for r in done)
        bytes_out = sum(r.bytes_out for r in done)
        busy = sum(r.seconds for r in done)
        rate = bytes_in / busy / 1e6 if busy > 0 else 0.0
        lines = [
            f"{self.count('done')} done, {self.count('skipped')} skipped, "
            f"{self.count('failed')} failed in {self.seconds:.1f} s; read {_size(bytes_in)}, "
            f"wrote {_size(bytes_out)} ({rate:.0f} MB/s read)"
        ]
        unmixed = sum(r.unmixed for r in done)
        if unmixed:
            held = sum(r.held for r in done)
            lines.append(f"constrained unmixing: {held} of {unmixed} pixels ({100 * held / unmixed:.1f}%) "
                         f"have an abundance held at 0")
        for r in self.results:
            if r.status == "failed":
                lines.append(f"  FAILED {shown(r.src)}: {shown(r.reason)}")
        return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def output_path(src: str | os.PathLike, outdir: str | os.PathLike) -> Path:
    """``OUTDIR/<same name>`` for an input file.

    Examples
    --------
    >>> from pixelmix.jobs.batch import output_path
    >>> output_path("scans/a.ome.tif", "out").as_posix()
    'out/a.ome.tif'
    """
    return Path(outdir) / Path(src).name


def expand_inputs(items: Iterable[str | os.PathLike]) -> tuple[list[Path], list[FileResult]]:
    """Turn paths, directories (their TIFF files) and glob patterns into input files.

    Returns ``(files, missing)``: the files in order, without duplicates, and
    a failed result for each item that matched nothing.

    Examples
    --------
    >>> from pixelmix.jobs.batch import expand_inputs
    >>> files, missing = expand_inputs(["no-such-dir/*.tif"])
    >>> files, [m.reason for m in missing]
    ([], ['pattern matched no files'])
    """
    files: list[Path] = []
    missing: list[FileResult] = []
    seen: set[Path] = set()

    def add(p: Path):
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            files.append(p)

    for item in items:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".")
            )
            if not found:
                missing.append(FileResult(path, None, "failed", "directory holds no .tif/.tiff files"))
            for p in found:
                add(p)
        elif path.exists():
            add(path)
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
            if not found:
                missing.append(FileResult(path, None, "failed", "pattern matched no files"))
            for p in found:
                add(p)
        else:
            missing.append(FileResult(path, None, "failed", "no such file or directory"))
    return files, missing


def plan_batch(
    inputs: Iterable[str | os.PathLike],
    outdir: str | os.PathLike,
    *,
    output_name: Callable[[Path, Path], Path] = output_path,
    clean: Callable[[Path], Any] = clean_stale,
) -> tuple[list[tuple[Path, Path]], list[FileResult]]:
    """The ``(input, output)`` pairs of a batch, and failed results for what cannot be done.

    Refuses (``ValueError``) an output directory that holds an input, that
    is an existing file, or that cannot be created; creates it, removes
    stale temporaries with ``clean(outdir)``, and fails inputs whose outputs
    (``output_name(src, outdir)``) would collide.
    """
    outdir = Path(outdir)
    files, failed = expand_inputs(inputs)
    for f in files:
        if same_file(f.parent, outdir) or f.parent.resolve() == outdir.resolve():
            raise ValueError(
                f"the output directory {shown(outdir)} holds the input {shown(f)}: outputs keep their "
                f"input's name, so this would overwrite it; choose another output directory"
            )
    make_output_dir(outdir)
    clean(outdir)
    names: dict[str, Path] = {}
    todo: list[tuple[Path, Path]] = []
    for src in files:
        dst = output_name(src, outdir)
        if dst.name in names:
            failed.append(FileResult(
                src, dst, "failed", f"has the same name as {names[dst.name]}; both would write {dst}"))
            continue
        names[dst.name] = src
        todo.append((src, dst))
    return todo, failed


def make_output_dir(outdir: Path) -> None:
    """Create ``outdir`` (and its parents), or raise a ValueError saying why it cannot be.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from pixelmix.jobs.batch import make_output_dir
    >>> f = Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = f.write_text("")
    >>> make_output_dir(f)
    Traceback (most recent call last):
    ...
    ValueError: the output directory .../a.txt is an existing file; choose a directory
    """
    if outdir.exists() and not outdir.is_dir():
        raise ValueError(f"the output directory {shown(outdir)} is an existing file; choose a directory")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(
            f"cannot create the output directory {shown(outdir)}: {exc.strerror or exc}"
        ) from None


def file_size(path: Path) -> int:
    """Size of ``path`` in bytes, 0 when it cannot be read."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def progress_bar(total: int, *, quiet: bool, stream=None):
    """A tqdm bar of ``total`` bytes on ``stream`` (stderr), shown only on a terminal."""
    from tqdm import tqdm  # tens of milliseconds to import: only when a batch runs

    stream = sys.stderr if stream is None else stream
    show = not quiet and hasattr(stream, "isatty") and stream.isatty()
    return tqdm(total=total, unit="B", unit_scale=True, disable=not show, file=stream,
                desc="pixelmix", dynamic_ncols=True)


def run_local(
    inputs: Iterable[str | os.PathLike],
    outdir: str | os.PathLike,
    program,
    *,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    debug: bool = False,
    stream=None,
    **options: Any,
) -> Summary:
    """Mix many TIFF files into ``outdir``, one after another in this process.

    Parameters
    ----------
    inputs : iterable of path-like or str
        Files, directories (their ``.tif``/``.tiff`` files) or glob patterns.
    outdir : path-like
        Created if needed. Each output is ``outdir/<input name>``. Refused
        (``ValueError``) when it would overwrite an input.
    program : Mixer or Program
    resume : bool
        Skip inputs whose output is already complete (same shape and dtype)
        and made by the same program (SHA-256 in its provenance), dtype and
        nodata; redo the others.
    overwrite : bool
        Redo and replace existing outputs. Without it (or ``resume``) an
        existing output fails its input and is kept, also one that another
        run, writing the same directory, publishes meanwhile.
    quiet : bool
        No progress bar (there is none anyway when stderr is not a terminal).
    debug : bool
        Keep each failure's traceback in its result.
    stream : file, optional
        Where the progress bar goes (default ``sys.stderr``).
    **options
        Passed to :func:`pixelmix.jobs.to_tiff.process_file` (``channel_axis``,
        ``dtype``, ``nodata``, ``compression``, ``backend``, ``tile``,
        ``max_bytes``, ``max_ratio``).

    Returns
    -------
    Summary
        One :class:`~pixelmix.jobs.file.FileResult` per input; ``summary.ok``
        is False when any failed.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile
    >>> import pixelmix as pm
    >>> from pixelmix.jobs.batch import run_local
    >>> d = tempfile.mkdtemp()
    >>> for name in ("a.tif", "b.tif"):
    ...     tifffile.imwrite(os.path.join(d, name), np.ones((2, 16, 16), np.uint16),
    ...                      photometric="minisblack")
    >>> s = run_local([d], os.path.join(d, "out"), pm.Mixer([[1.0, -1.0]]), quiet=True)
    >>> s.count("done"), s.ok
    (2, True)
    """
    t0 = time.perf_counter()
    todo, failed = plan_batch(inputs, outdir)
    summary = Summary(results=failed)
    sizes = {src: file_size(src) for src, _ in todo}
    bar = progress_bar(sum(sizes.values()), quiet=quiet, stream=stream)
    try:
        for src, dst in todo:
            bar.set_postfix_str(src.name, refresh=False)
            summary.results.append(
                run_job(src, dst, program, resume=resume, overwrite=overwrite, debug=debug, options=options,
                        bar=bar, size=sizes[src])
            )
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary
