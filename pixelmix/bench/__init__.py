"""``pixelmix bench``: pixelmix side by side with NumPy and the other libraries installed.

A benchmark *suite* is a module of this package with a function
``cases(quick: bool, backend: str) -> list[Case]``. Each :class:`Case` holds
one workload and the implementations to compare on it; they run alternately
in one process (so a noisy neighbour hurts all of them alike) and the report
gives medians, the ratio of each to pixelmix, effective bandwidth, how close
each comes to a plain memory copy of the same bytes, and peak extra memory.
"""

from __future__ import annotations

import gc
import importlib
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# suite name -> module (relative to this package); each module documents its workloads.
SUITES = {
    "mix": ".mix",
    "cuda": ".cuda",
    "large": ".large",
    "skimage": ".skimage",
    "dask": ".dask",
    "fit": ".fit",
}


@dataclass
class Case:
    """One workload: implementations keyed by name, the first one is pixelmix's."""

    name: str
    impls: dict[str, Callable[[], object]]
    bytes_moved: int = 0  # bytes read + written by an ideal implementation
    notes: list[str] = field(default_factory=list)


def _rss_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_extra_mb(fn: Callable[[], object]) -> float | None:
    """Peak resident memory added while ``fn`` runs, in MB (Linux; None elsewhere).

    Resets the kernel's high-water mark (``/proc/self/clear_refs``), runs
    ``fn`` and reads ``VmHWM`` back against the resident size before the call.
    """
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    before = _rss_kb("VmRSS")
    result = fn()
    peak = _rss_kb("VmHWM")
    del result
    if before is None or peak is None:
        return None
    return max(0.0, (peak - before) / 1024)


def copy_bandwidth(nbytes: int = 256 * 2**20, repeat: int = 5) -> float:
    """Bytes per second moved (read + written) by ``np.copyto`` on ``nbytes`` of memory."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return 2 * src.nbytes / min(times)


def time_case(case: Case, repeat: int) -> dict[str, list[float]]:
    """Run every implementation once to warm up, then ``repeat`` rounds alternating."""
    for fn in case.impls.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in case.impls}
    for _ in range(repeat):
        for name, fn in case.impls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def _fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:8.2f} s "
    return f"{seconds * 1e3:8.1f} ms"


def report(case: Case, times: dict[str, list[float]], bandwidth: float, memory: dict[str, float | None], out=None):
    out = out or sys.stdout
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    first = next(iter(medians))
    print(f"\n{case.name}", file=out)
    for note in case.notes:
        print(f"  ({note})", file=out)
    header = f"  {'implementation':<26}{'median':>11}  {'vs pixelmix':>12}  {'GB/s':>6}  {'of copy':>7}  {'peak MB':>8}"
    print(header, file=out)
    for name, med in medians.items():
        ratio = med / medians[first]
        rel = "1.00x" if name == first else (f"{ratio:.2f}x slower" if ratio >= 1 else f"{1 / ratio:.2f}x faster")
        gbs = case.bytes_moved / med / 1e9 if case.bytes_moved else float("nan")
        of_copy = (case.bytes_moved / bandwidth) / med if case.bytes_moved else float("nan")
        mem = memory.get(name)
        mem_s = "n/a" if mem is None else f"{mem:.0f}"
        print(
            f"  {name:<26}{_fmt_time(med):>11}  {rel:>12}  {gbs:6.2f}  {of_copy:7.0%}  {mem_s:>8}",
            file=out,
        )


def run(suites: list[str], *, quick: bool = False, repeat: int | None = None, backend: str = "cpu", out=None) -> int:
    """Run the named suites and print their tables; return an exit status."""
    out = out or sys.stdout
    # OpenMP runtimes (PyTorch's, OpenBLAS's, Numba's omp layer) otherwise keep
    # their threads spinning for up to ~200 ms after each parallel call, taking
    # the cores from whichever library runs next. Only effective before the
    # runtimes start, i.e. when bench runs in a fresh process (the CLI).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("KMP_BLOCKTIME", "0")
    import numba

    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        print(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}", file=sys.stderr)
        return 2
    repeat = repeat or (3 if quick else 7)
    bandwidth = copy_bandwidth(32 * 2**20 if quick else 256 * 2**20)
    print(
        f"pixelmix bench: {numba.config.NUMBA_NUM_THREADS} threads, backend={backend}, "
        f"{repeat} alternating rounds, median times; plain copy moves {bandwidth / 1e9:.1f} GB/s",
        file=out,
    )
    for suite in suites:
        module = importlib.import_module(SUITES[suite], __name__)
        for case in module.cases(quick=quick, backend=backend):
            times = time_case(case, repeat)
            memory = {name: peak_extra_mb(fn) for name, fn in case.impls.items()}
            report(case, times, bandwidth, memory, out=out)
            del case
            gc.collect()
    return 0
