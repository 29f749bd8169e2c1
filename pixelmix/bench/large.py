"""``pixelmix bench --suite large``: a 2 GiB TIFF stack through the command line.

Writes a uint16 channels-first stack of 64 x 4096 x 4096 (2 GiB; ``quick``:
64 x 512 x 512; ``tiny``: 64 x 32 x 32) and runs ``pixelmix apply`` on it in a subprocess, mixing
its channels into 16 float32 ones (a 1 GiB output), while sampling the
subprocess's private resident memory (``RssAnon`` in ``/proc/PID/status``;
the file pages of the memory-mapped input and output are page cache and do
not count). Its peak is printed as a note: the goal is under 600 MB.

The comparison is what the disk and the kernel allow: reading the input
and writing as many bytes as the output, in 64 MB pieces, then ``fsync``
(``pixelmix apply`` flushes its output too before renaming it into place).
The subprocess's start (imports, loading the cached kernel) is part of its
time, as it is for a user. Files go to ``$PIXELMIX_BENCH_DIR`` or the
temporary directory, and are removed at exit.

Run it alone and with few rounds: ``pixelmix bench --suite large --repeat 1``.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from . import Case, Impl

PIECE = 64 * 2**20


def _make_input(path: Path, shape: tuple[int, int, int]) -> None:
    """A uint16 CYX OME-TIFF with cheap, varied values, written plane by plane."""
    from ..io.write import create_stack

    c, y, x = shape
    out = create_stack(path, shape=shape, dtype=np.uint16, axes="CYX")
    i = np.arange(y * x, dtype=np.uint64)
    base = ((i * np.uint64(2654435761)) >> np.uint64(13)) & np.uint64(0x3FFF)
    base = base.astype(np.uint16).reshape(y, x)
    for k in range(c):
        out[k] = base + np.uint16(97 * k)
    out.flush()
    del out


def _rss_anon_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_cli(args: list[str], interval: float = 0.01) -> tuple[float, int | None]:
    """Run ``python -m pixelmix ARGS``; return (seconds, peak RssAnon in kB or None)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pixelmix", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [None]

    def sample():
        while proc.poll() is None:
            kb = _rss_anon_kb(proc.pid)
            if kb is not None:
                peak[0] = kb if peak[0] is None else max(peak[0], kb)
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    sampler.join()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"pixelmix apply failed ({proc.returncode}): {err.decode(errors='replace')}")
    return seconds, peak[0]


def _io_only(src: Path, out_bytes: int, dst: Path) -> None:
    """Read ``src`` and write ``out_bytes`` to ``dst`` in 64 MB pieces, then fsync."""
    buf = bytearray(PIECE)
    view = memoryview(buf)
    with open(src, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    with open(dst, "wb", buffering=0) as f:
        left = out_bytes
        while left > 0:
            n = min(left, PIECE)
            f.write(view[:n])
            left -= n
        os.fsync(f.fileno())


SHAPES = {"full": (64, 4096, 4096), "quick": (64, 512, 512), "tiny": (64, 32, 32)}


def cases(size: str, backend: str) -> list[Case]:
    shape = SHAPES[size]
    k = 16
    work = Path(tempfile.mkdtemp(prefix="pixelmix-bench-large-", dir=os.environ.get("PIXELMIX_BENCH_DIR")))
    atexit.register(shutil.rmtree, work, True)
    src = work / "stack.ome.tif"
    _make_input(src, shape)
    rng = np.random.default_rng(0)
    matrix = work / "matrix.json"
    matrix.write_text(json.dumps({"weights": rng.standard_normal((k, shape[0])).tolist(),
                                  "bias": rng.standard_normal(k).tolist()}))
    outdir = work / "out"
    out_bytes = k * shape[1] * shape[2] * 4
    in_bytes = src.stat().st_size
    args = ["apply", str(src), "--matrix", str(matrix), "-o", str(outdir), "--overwrite", "--quiet",
            "--backend", "cpu" if backend == "cpu" else backend]
    peaks: list[int] = []
    times: list[float] = []

    def cli():
        seconds, peak = run_cli(args)
        times.append(seconds)
        if peak is not None:
            peaks.append(peak)
            case.notes[:] = [
                f"input {in_bytes / 2**30:.2f} GiB uint16 {shape}, output {out_bytes / 2**30:.2f} GiB float32",
                f"pixelmix apply subprocess: peak RssAnon {max(peaks) / 1024:.0f} MB over "
                f"{len(peaks)} runs (goal < 600 MB); throughput {in_bytes / min(times) / 1e9:.2f} GB/s "
                f"of input at best",
                "'peak MB' counts this process only; the CLI's own private memory is the line above",
            ]

    case = Case(
        name=f"TIFF uint16 CYX {'x'.join(map(str, shape))} -> {k} float32, pixelmix apply (CLI)",
        impls={
            "pixelmix apply (CLI)": Impl(cli, "subprocess"),
            "read input + write output (I/O)": Impl(lambda: _io_only(src, out_bytes, work / "io.bin"), "python"),
        },
        bytes_moved=in_bytes + out_bytes,
    )
    return [case]
