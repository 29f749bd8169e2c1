"""Many TIFF files through one program: atomic, resumable, one bad file never stops the rest.

Two layers, kept apart so a scheduler (a thread pool, a dask.distributed
cluster) can send whole files to workers under the same rules:

- :func:`process_file`: one input to one output. Reads the input in slabs,
  mixes each slab into the output, and writes a temporary file beside the
  output that is renamed into place only when complete and flushed to disk.
  A crash or SIGKILL leaves at most a temporary file, never a partial output
  under the final name; :func:`clean_stale` removes such leftovers.
- :func:`run_batch`: the loop over many inputs (paths, directories, globs),
  with ``resume``, per-file errors, a progress bar and a :class:`Summary`.
"""

from __future__ import annotations

import glob
import json
import os
import re
import secrets
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .tiff import DEFAULT_SLAB_BYTES

__all__ = [
    "process_file",
    "run_batch",
    "expand_inputs",
    "output_path",
    "is_complete",
    "clean_stale",
    "FileResult",
    "Summary",
    "TIFF_SUFFIXES",
]

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
# Temporary outputs: ".<name>.pixelmix-<pid>-<token>.tmp" beside the final file.
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.pixelmix-(?P<pid>\d+)-[0-9a-f]+\.(tmp|spill)$")
# Provenance embeds the program only up to this many numbers (else a digest).
_PROVENANCE_MAX_PARAMS = 100_000


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


@dataclass
class Summary:
    """Results of a batch, in input order."""

    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def ok(self) -> bool:
        """True when no input failed."""
        return self.count("failed") == 0

    def text(self) -> str:
        """A short human-readable report: counts, bytes, throughput, failures."""
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
        for r in self.results:
            if r.status == "failed":
                lines.append(f"  FAILED {r.src}: {r.reason}")
        return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _program_info(program) -> tuple[int | None, int | None, list[str] | None]:
    """(n_inputs, n_outputs, output names) of a Mixer or Program."""
    from .ops import Program

    names = None
    if isinstance(program, Program):
        for step in reversed(program.steps):
            if hasattr(step, "output_names"):
                names = step.output_names
                break
    else:
        names = program.output_names
    return program.n_inputs, program.n_outputs, None if names is None else list(names)


def _provenance(program, src: Path, dtype: np.dtype, nodata) -> dict[str, Any]:
    import hashlib

    from . import __version__

    body = program.to_dict()
    text = json.dumps(body, sort_keys=True)
    record: dict[str, Any] = {
        "software": f"pixelmix {__version__}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": src.name,
        "dtype": dtype.name,
        "nodata": nodata,
        "program_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    n_params = text.count(",")
    if n_params <= _PROVENANCE_MAX_PARAMS:
        record["program"] = body
    return record


def output_path(src: str | os.PathLike, outdir: str | os.PathLike) -> Path:
    """``OUTDIR/<same name>`` for an input file."""
    return Path(outdir) / Path(src).name


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _temp_name(dst: Path, kind: str = "tmp") -> Path:
    return dst.with_name(f".{dst.name}.pixelmix-{os.getpid()}-{secrets.token_hex(4)}.{kind}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(outdir: str | os.PathLike, *, dirs: bool = False) -> list[Path]:
    """Remove temporaries left in ``outdir`` by pixelmix runs that died; return them.

    Only entries named like pixelmix's own temporaries and made by a process
    that no longer runs are removed: files, or with ``dirs`` directories
    (the temporary groups of Zarr output).
    """
    import shutil

    removed = []
    try:
        entries = list(os.scandir(outdir))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if not m or not (entry.is_dir() if dirs else entry.is_file()) or _pid_alive(int(m["pid"])):
            continue
        try:
            shutil.rmtree(entry.path) if dirs else os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def _fsync_path(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return  # some platforms cannot open directories; the rename still happened
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def is_complete(dst: str | os.PathLike, shape: tuple[int, ...] | None = None, dtype=None) -> bool:
    """Whether ``dst`` is a whole, readable TIFF (of ``shape`` and ``dtype`` if given)."""
    from .tiff import open_stack

    try:
        with open_stack(dst) as stack:
            if shape is not None and tuple(stack.shape) != tuple(shape):
                return False
            if dtype is not None and stack.dtype != np.dtype(dtype):
                return False
    except Exception:
        return False
    return True


def _check_program(program, stack) -> None:
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


def process_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    program,
    *,
    channel_axis: int | None = None,
    dtype=None,
    nodata=None,
    compression: str | None = None,
    backend: str = "auto",
    tile: tuple[int, int] = (256, 256),
    max_bytes: int = DEFAULT_SLAB_BYTES,
    overwrite: bool = False,
    progress: Callable[[int], Any] | None = None,
) -> FileResult:
    """Mix one TIFF stack into a new TIFF file, slab by slab, atomically.

    Parameters
    ----------
    src, dst : path-like
        Input TIFF and output path. ``dst`` must not be ``src``.
    program : Mixer or Program
        Applied to every pixel (``pixelmix.load`` reads both).
    channel_axis : int, optional
        Overrides the channel axis read from the file's axes.
    dtype : dtype, optional
        Output dtype (default float32; float64 for float64 input). Integer
        types round half to even and saturate.
    nodata : number, optional
        Input value marking missing pixels (see ``Mixer.apply``).
    compression : {None, "zlib", "zstd", "lzw"}
        None writes an uncompressed, contiguous, memory-mappable file
        (fastest); otherwise a tiled, compressed one.
    backend : {"auto", "cpu", "numpy"}
        Passed to ``apply``.
    tile : (int, int)
        Tile size of compressed outputs.
    max_bytes : int
        Size of the input slabs read at once; bounds the memory used.
    overwrite : bool
        Replace an existing ``dst`` (it is replaced atomically, at the end).
    progress : callable, optional
        Called with the number of input bytes after each slab.

    Returns
    -------
    FileResult
        ``status="done"``, sizes and time. Errors are raised (``run_batch``
        turns them into failed results); ``dst`` is then untouched.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile
    >>> import pixelmix as pm
    >>> from pixelmix.batch import process_file
    >>> d = tempfile.mkdtemp()
    >>> tifffile.imwrite(os.path.join(d, "in.tif"), np.ones((3, 32, 32), np.uint16),
    ...                  photometric="minisblack")
    >>> r = process_file(os.path.join(d, "in.tif"), os.path.join(d, "out.tif"),
    ...                  pm.Mixer([[1.0, 1.0, 1.0]]))
    >>> r.status, tifffile.imread(os.path.join(d, "out.tif")).max()
    ('done', np.float32(3.0))
    """
    from .engine import BACKENDS, output_dtype
    from .tiff import open_stack

    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {', '.join(map(repr, BACKENDS))}")
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve() or _same_file(src, dst):
        raise ValueError(f"refusing to overwrite the input {src}: choose another output directory")
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} exists; pass --resume to skip finished outputs or --overwrite")
    t0 = time.perf_counter()
    with open_stack(src, channel_axis=channel_axis) as stack:
        _check_program(program, stack)
        out_dtype = output_dtype(stack.dtype, dtype)
        n_in, n_out, names = _program_info(program)
        if n_out is None:
            n_out = stack.n_channels
            names = stack.channel_names
        provenance = _provenance(program, src, out_dtype, nodata)
        tmp = _temp_name(dst)
        try:
            _write_output(
                stack, tmp, program, n_out=n_out, names=names, out_dtype=out_dtype, nodata=nodata,
                compression=compression, backend=backend, tile=tile, max_bytes=max_bytes,
                provenance=provenance, progress=progress,
            )
            _fsync_path(tmp)
            os.replace(tmp, dst)
        finally:
            if tmp.exists():
                tmp.unlink()
        _fsync_path(dst.parent, directory=True)
        bytes_in = stack.nbytes
    return FileResult(
        src=src, dst=dst, status="done", bytes_in=bytes_in,
        bytes_out=dst.stat().st_size, seconds=time.perf_counter() - t0,
    )


def _write_output(
    stack, tmp: Path, program, *, n_out, names, out_dtype, nodata, compression, backend,
    tile, max_bytes, provenance, progress,
) -> None:
    """Mix ``stack`` into the new file ``tmp`` (uncompressed memory map, or tiles)."""
    from .tiff import create_stack, in_file_order, output_layout, page_tiles, plan_slabs, write_stack
    from .tiff import _page_ndim

    shape, axes = output_layout(stack, n_out)
    meta = dict(channel_names=names, provenance=provenance, calibration=stack.calibration)
    axis = stack.channel_axis

    def mix(slab, out):
        program.apply(slab, channel_axis=axis, dtype=out_dtype, nodata=nodata, out=out, backend=backend)
        if progress is not None:
            progress(slab.nbytes)

    if compression is None:
        out = create_stack(tmp, shape=shape, dtype=out_dtype, axes=axes, **meta)
        try:
            whole = stack.mapped()
            if whole is not None and out.flags.c_contiguous:
                # Both files map contiguously: the kernel runs from map to map,
                # through the page cache (no private copy of either, and no slab
                # copies: a row band of every channel is not contiguous). Pieces
                # along the first axis, when it is not the channels, stay
                # contiguous and give progress.
                step = whole.shape[0] if axis == 0 else max(1, max_bytes * whole.shape[0] // max(whole.nbytes, 1))
                for i in range(0, whole.shape[0], step):
                    mix(whole[i : i + step], out[i : i + step])
            else:
                for index, slab in stack.iter_slabs(max_bytes):
                    mix(slab, out[index])
            out.flush()
        finally:
            del out
        return

    page_ndim = _page_ndim(shape, axes)
    tile = tuple(int(t) for t in tile)
    plan = plan_slabs(stack.shape, axis, stack.dtype.itemsize, max_bytes, _tile_grain(stack, tile, page_ndim))
    if in_file_order(shape, page_ndim, plan, tile[0]):
        # Stream: each slab's output is cut into tiles as tifffile asks for them.
        def tiles():
            for index, slab in stack.iter_slabs(max_bytes):
                out_shape = tuple(s.stop - s.start for s in index)
                out_shape = out_shape[:axis] + (n_out,) + out_shape[axis + 1 :]
                block = np.empty(out_shape, out_dtype)
                mix(slab, block)
                yield from page_tiles(block, tile, page_ndim)

        write_stack(tmp, tiles(), shape=shape, dtype=out_dtype, axes=axes, tile=tile,
                    compression=compression, **meta)
        return

    # The slabs cut across pages (e.g. row bands of every channel plane):
    # mix into an uncompressed spill file first, then compress it page by page.
    spill_path = tmp.with_name(tmp.name[: -len(".tmp")] + ".spill")
    try:
        spill = np.lib.format.open_memmap(spill_path, mode="w+", dtype=out_dtype, shape=shape)
        for index, slab in stack.iter_slabs(max_bytes):
            mix(slab, spill[index])
        spill.flush()
        write_stack(tmp, page_tiles(spill, tile, page_ndim), shape=shape, dtype=out_dtype,
                    axes=axes, tile=tile, compression=compression, **meta)
        del spill
    finally:
        if spill_path.exists():
            spill_path.unlink()


def _tile_grain(stack, tile, page_ndim) -> tuple[int, ...]:
    """Chunk sizes for slab planning: the input's chunks, with output tile rows on Y."""
    grain = list(stack.chunk_shape())
    y = stack.ndim - page_ndim
    if 0 <= y < stack.ndim:
        grain[y] = int(np.lcm(max(1, grain[y]), tile[0]))
    return tuple(grain)


def expand_inputs(items: Iterable[str | os.PathLike]) -> tuple[list[Path], list[FileResult]]:
    """Turn paths, directories (their TIFF files) and glob patterns into input files.

    Returns ``(files, missing)``: the files in order, without duplicates, and
    a failed result for each item that matched nothing.
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


def failure_reason(exc: BaseException, path=None) -> str:
    """One line saying what went wrong (without ``path``, which the caller prints)."""
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    if not text or not isinstance(exc, (ValueError, TypeError, OSError, ImportError)):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if path is not None:
        for prefix in (f"{path}: ", f"{path} is ", f"{path} "):
            if text.startswith(prefix):
                text = text[len(prefix):]
                break
    return text.splitlines()[0] if text else text


def run_batch(
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
    """Run :func:`process_file` over many inputs into ``outdir``.

    Parameters
    ----------
    inputs : iterable of path-like or str
        Files, directories (their ``.tif``/``.tiff`` files) or glob patterns.
    outdir : path-like
        Created if needed. Each output is ``outdir/<input name>``. Refused
        (``ValueError``) when it would overwrite an input.
    program : Mixer or Program
    resume : bool
        Skip inputs whose output is already complete (same shape and dtype).
    overwrite : bool
        Redo and replace existing outputs.
    quiet : bool
        No progress bar (there is none anyway when stderr is not a terminal).
    debug : bool
        Keep each failure's traceback in its result.
    stream : file, optional
        Where the progress bar goes (default ``sys.stderr``).
    **options
        Passed to :func:`process_file` (``channel_axis``, ``dtype``,
        ``nodata``, ``compression``, ``backend``, ``tile``, ``max_bytes``).

    Returns
    -------
    Summary
        One :class:`FileResult` per input; ``summary.ok`` is False when any failed.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile
    >>> import pixelmix as pm
    >>> from pixelmix.batch import run_batch
    >>> d = tempfile.mkdtemp()
    >>> for name in ("a.tif", "b.tif"):
    ...     tifffile.imwrite(os.path.join(d, name), np.ones((2, 16, 16), np.uint16),
    ...                      photometric="minisblack")
    >>> s = run_batch([d], os.path.join(d, "out"), pm.Mixer([[1.0, -1.0]]), quiet=True)
    >>> s.count("done"), s.ok
    (2, True)
    """
    t0 = time.perf_counter()
    todo, failed = plan(inputs, outdir)
    summary = Summary(results=failed)
    sizes = {src: _file_size(src) for src, _ in todo}
    bar = progress_bar(sum(sizes.values()), quiet=quiet, stream=stream)
    try:
        for src, dst in todo:
            bar.set_postfix_str(src.name, refresh=False)
            summary.results.append(
                process_one(src, dst, program, bar, sizes[src], resume=resume, overwrite=overwrite,
                            debug=debug, options=options)
            )
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def plan(
    inputs: Iterable[str | os.PathLike],
    outdir: str | os.PathLike,
    *,
    output_name=output_path,
    clean=clean_stale,
) -> tuple[list[tuple[Path, Path]], list[FileResult]]:
    """The ``(input, output)`` pairs of a batch, and failed results for what cannot be done.

    Refuses (``ValueError``) an output directory that holds an input, creates
    it, removes stale temporaries with ``clean(outdir)``, and fails inputs
    whose outputs (``output_name(src, outdir)``) would collide.
    """
    outdir = Path(outdir)
    files, failed = expand_inputs(inputs)
    for f in files:
        if _same_file(f.parent, outdir) or f.parent.resolve() == outdir.resolve():
            raise ValueError(
                f"the output directory {outdir} holds the input {f}: outputs keep their "
                f"input's name, so this would overwrite it; choose another output directory"
            )
    outdir.mkdir(parents=True, exist_ok=True)
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


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def progress_bar(total: int, *, quiet: bool, stream=None):
    """A tqdm bar of ``total`` bytes on ``stream`` (stderr), shown only on a terminal."""
    from tqdm import tqdm

    stream = sys.stderr if stream is None else stream
    show = not quiet and hasattr(stream, "isatty") and stream.isatty()
    return tqdm(total=total, unit="B", unit_scale=True, disable=not show, file=stream,
                desc="pixelmix", dynamic_ncols=True)


def process_one(src, dst, program, bar, size, *, resume, overwrite, debug, options) -> FileResult:
    """Process one file for a batch (skip if resumable), turning any error into a failed result.

    ``bar`` is advanced by ``size`` in all (in proportion to the pixels mixed).
    """
    seen = 0
    total_pixels = [0]

    def progress(nbytes):
        nonlocal seen
        total_pixels[0] += nbytes
        # the bar counts file bytes; advance it in proportion to pixels mixed
        step = int(size * total_pixels[0] / max(expected[0], 1)) - seen
        if step > 0:
            bar.update(step)
            seen += step

    expected = [1]
    try:
        if dst.exists() and resume and _resumable(src, dst, program, options):
            return FileResult(src, dst, "skipped", "output already complete")
        from .tiff import open_stack

        with open_stack(src, options.get("channel_axis")) as stack:
            expected[0] = stack.nbytes
        return process_file(src, dst, program, overwrite=overwrite or resume, progress=progress, **options)
    except Exception as exc:
        reason = failure_reason(exc, src)
        return FileResult(
            src, dst, "failed", reason,
            traceback=traceback.format_exc() if debug else "",
        )
    finally:
        if size - seen > 0:
            bar.update(size - seen)


def _resumable(src: Path, dst: Path, program, options) -> bool:
    """Whether ``dst`` already holds the complete output for ``src``."""
    from .engine import output_dtype
    from .tiff import open_stack, output_layout

    try:
        with open_stack(src, options.get("channel_axis")) as stack:
            n_out = program.n_outputs or stack.n_channels
            shape, _ = output_layout(stack, n_out)
            dtype = output_dtype(stack.dtype, options.get("dtype"))
    except Exception:
        return False
    return is_complete(dst, shape, dtype)
