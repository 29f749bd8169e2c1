"""``pixelmix bench``: pixelmix side by side with the strongest form of each other library.

A benchmark *suite* is a module of this package with a function
``cases(size: str, backend: str) -> list[Case]`` (``size`` is one of
:data:`SIZES`; a suite written as ``cases(quick: bool, backend: str)`` gets
``quick=True`` for every size but ``"full"``). Each :class:`Case` holds one
workload and the implementations to compare on it, pixelmix's first. They
run in one process, alternating round by round (a noisy neighbour hurts all
of them alike), and each timing starts only once the threads the previous
call left behind have gone quiet (:func:`pixelmix.bench.machine.settle`):
OpenBLAS's idle workers spin about 0.1 s after every call and would
otherwise be billed to whoever runs next. The report gives the median and
minimum of each, its ratio to the first row round by round (median and
range), effective bandwidth, how close it comes to a plain memory copy of
the same bytes and the peak memory it adds; the machine is printed with the
results. A library that is not installed gets a row that says so.

Examples
--------
>>> from pixelmix import bench
>>> sorted(bench.SUITES)[:3]
['cuda', 'dask', 'fit']
>>> "mix" in bench.ALL_SUITES
True
"""

from __future__ import annotations

import gc
import importlib
import importlib.metadata
import importlib.util
import inspect
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from . import machine

# suite name -> module (relative to this package); each module documents its workloads.
SUITES = {
    "mix": ".mix",
    "cuda": ".cuda",
    "large": ".large",
    "skimage": ".skimage",
    "dask": ".dask",
    "fit": ".fit",
    "unmix": ".unmix",
}

# What ``--suite all`` runs: the workloads of the speed claims (mix, colour, fits).
ALL_SUITES = ("mix", "skimage", "fit")

# full: the sizes of the README's claims; quick: a smoke run of seconds; tiny: the tests' size.
SIZES = ("full", "quick", "tiny")

# Optional libraries the suites compare with: label -> (module, what to install).
OPTIONAL = {
    "OpenCV": ("cv2", "opencv-python-headless"),
    "PyTorch": ("torch", "torch"),
    "scikit-learn": ("sklearn", "scikit-learn"),
    "scikit-image": ("skimage", "scikit-image"),
    "Spectral Python": ("spectral", "spectral"),
    "CuPy": ("cupy", "cupy-cuda12x"),
    "threadpoolctl": ("threadpoolctl", "threadpoolctl"),
}


@dataclass
class Impl:
    """One implementation of a workload, with the library whose threads it leaves behind.

    ``before``, when given, runs untimed right before each timed call, with
    no settling in between: a pipeline in which ``fn`` follows another library.
    Calling an ``Impl`` runs ``fn`` alone.
    """

    fn: Callable[[], object]
    library: str
    before: Callable[[], object] | None = None

    def __call__(self) -> object:
        return self.fn()


@dataclass
class Case:
    """One workload: implementations keyed by row label, pixelmix's (the reference) first.

    ``missing`` maps row labels of libraries that are not installed to what to
    install; ``peak_mb`` holds peak memory figures measured elsewhere (a
    subprocess) that replace this process's; ``summarize`` turns the times
    into lines printed under the table (a goal met or not).
    """

    name: str
    impls: dict[str, Callable[[], object]]
    bytes_moved: int = 0  # bytes read + written by an ideal implementation
    notes: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    peak_mb: dict[str, float] = field(default_factory=dict)
    # Lines printed under the table, computed from the times (label -> seconds per round).
    summarize: Callable[[dict[str, list[float]]], list[str]] | None = None


def optional(label: str):
    """The module of optional library ``label`` (a key of :data:`OPTIONAL`), or None if not installed.

    Examples
    --------
    >>> optional("scikit-image").__name__
    'skimage'
    """
    module, _ = OPTIONAL[label]
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def not_installed(label: str) -> str:
    """The text of a row whose library is missing, with what to install.

    Examples
    --------
    >>> not_installed("OpenCV")
    'not installed (pip install opencv-python-headless)'
    """
    return f"not installed (pip install {OPTIONAL[label][1]})"


def _version(label: str) -> str | None:
    """The installed version of optional library ``label`` without importing it, or None."""
    module, dist = OPTIONAL[label]
    if importlib.util.find_spec(module) is None:
        return None
    for name in (dist, module, "opencv-python", "opencv-contrib-python", "opencv-contrib-python-headless"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "?"


def _library(name: str, fn) -> str:
    return fn.library if isinstance(fn, Impl) else name.split()[0]


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
    The garbage collector is held off while ``fn`` runs, so that freeing an
    earlier call's leftovers cannot hide what ``fn`` takes (a full collection
    per call would cost more than the smaller calls it measures: the run
    collects once per case).
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    before = _rss_kb("VmRSS")
    enabled = gc.isenabled()
    gc.disable()
    try:
        result = fn()
        peak = _rss_kb("VmHWM")
        del result
    finally:
        if enabled:
            gc.enable()
    if before is None or peak is None:
        return None
    return max(0.0, (peak - before) / 1024)


class IdleLog:
    """How long each library's leftover threads kept the cores busy after its calls."""

    def __init__(self) -> None:
        self.waits: dict[str, list[tuple[float, float]]] = {}

    def add(self, library: str | None, waited: float, burnt: float) -> None:
        if library is not None:
            self.waits.setdefault(library, []).append((waited, burnt))

    def lines(self) -> list[str]:
        parts = []
        for library, waits in sorted(self.waits.items()):
            waited = statistics.median(w for w, _ in waits)
            burnt = max(0.0, statistics.median(b for _, b in waits))
            parts.append(f"{library} {waited * 1e3:.0f} ms ({burnt * 1e3:.0f} ms CPU)")
        if not parts:
            return []
        return ["threads left busy after a call, median wait until quiet (CPU they used meanwhile): " + ", ".join(parts)]


def time_case(case: Case, repeat: int, idle: IdleLog | None = None) -> dict[str, list[float]]:
    """Warm every implementation up once, then time ``repeat`` rounds, each call after the cores settle."""
    idle = idle or IdleLog()
    previous = None

    def settled_call(name, fn) -> float:
        nonlocal previous
        waited, burnt = machine.settle()
        idle.add(previous, waited, burnt)
        before = getattr(fn, "before", None)
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - t0
        # After a pipeline row the threads of both libraries may still run: no one library to bill.
        previous = None if before is not None else _library(name, fn)
        return elapsed

    for name, fn in case.impls.items():
        settled_call(name, fn)
    times: dict[str, list[float]] = {name: [] for name in case.impls}
    for _ in range(repeat):
        for name, fn in case.impls.items():
            times[name].append(settled_call(name, fn))
    idle.add(previous, *machine.settle())
    return times


def ratio_text(times: list[float], reference: list[float]) -> str:
    """Median and range of the round-by-round ratios of ``times`` to ``reference``, in words.

    Examples
    --------
    >>> ratio_text([2.0, 2.2], [1.0, 1.0])
    '2.10x slower (2.00-2.20)'
    >>> ratio_text([0.5], [1.0])
    '2.00x faster'
    """
    ratios = [t / r for t, r in zip(times, reference)]
    med = statistics.median(ratios)
    if abs(med - 1) < 5e-3:
        word, shown = "", ratios
    elif med > 1:
        word, shown = " slower", ratios
    else:
        word, shown = " faster", [1 / r for r in ratios]
    text = f"{statistics.median(shown):.2f}x{word}"
    if len(shown) > 1:
        text += f" ({min(shown):.2f}-{max(shown):.2f})"
    return text


def share_of(prefix: str, ours: list[float], reference: list[float], what: str, goal: str) -> str:
    """The reference's time over ours, round by round, as a percentage: ``ours`` runs at that share of its speed.

    Examples
    --------
    >>> share_of("the fit runs at", [2.0, 2.0], [1.5, 1.7], "the speed of reading", "goal: 70%")
    'the fit runs at 80% (75%-85%) of the speed of reading (goal: 70%)'
    """
    shares = sorted(r / t for t, r in zip(ours, reference))
    text = f"{prefix} {statistics.median(shares):.0%}"
    if len(shares) > 1:
        text += f" ({shares[0]:.0%}-{shares[-1]:.0%})"
    return f"{text} of {what} ({goal})"


def speedup(times: dict[str, list[float]], ours: str, theirs: str, goal: float | None = None) -> str:
    """How many times as fast as row ``theirs`` row ``ours`` is, round by round, and whether ``goal`` is met.

    Examples
    --------
    >>> speedup({"pixelmix": [1.0, 1.0], "numpy": [4.0, 5.0]}, "pixelmix", "numpy", 5.0)
    'pixelmix 4.50x (4.00-5.00) as fast as numpy (goal: at least 5x: not met)'
    """
    x = sorted(t / o for o, t in zip(times[ours], times[theirs]))
    text = f"{ours} {statistics.median(x):.2f}x"
    if len(x) > 1:
        text += f" ({x[0]:.2f}-{x[-1]:.2f})"
    text += f" as fast as {theirs}"
    if goal is not None:
        text += f" (goal: at least {goal:g}x: {'met' if statistics.median(x) >= goal else 'not met'})"
    return text


def slowdown(prefix: str, after: list[float], alone: list[float], goal: str) -> str:
    """The extra time of ``after`` over ``alone``, round by round, as a signed percentage.

    Examples
    --------
    >>> slowdown("BLAS after pixelmix:", [1.1, 1.3], [1.0, 1.0], "goal: at most +10%")
    'BLAS after pixelmix: +20% (+10% to +30%) against alone (goal: at most +10%)'
    """
    extra = sorted(a / b - 1 for a, b in zip(after, alone))
    text = f"{prefix} {statistics.median(extra):+.0%}"
    if len(extra) > 1:
        text += f" ({extra[0]:+.0%} to {extra[-1]:+.0%})"
    return f"{text} against alone ({goal})"


def _fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s "
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"


def report(case: Case, times: dict[str, list[float]], bandwidth: float, memory: dict[str, float | None], out=None) -> None:
    """Print the table of one case: median, min, ratio to row 1, GB/s, share of copy speed, peak MB."""
    out = out or sys.stdout
    first = next(iter(times), None)
    print(f"\n{case.name}", file=out)
    for note in case.notes:
        print(f"  ({note})", file=out)
    width = max([26, *(len(name) + 2 for name in [*times, *case.missing])])
    print(
        f"  {'implementation':<{width}}{'median':>10}{'min':>10}  {'vs row 1 (range)':<28}{'GB/s':>6}{'of copy':>9}{'peak MB':>9}",
        file=out,
    )
    for name, ts in times.items():
        med = statistics.median(ts)
        rel = "1.00x" if name == first else ratio_text(ts, times[first])
        if case.bytes_moved:
            gbs, of_copy = f"{case.bytes_moved / med / 1e9:.2f}", f"{case.bytes_moved / bandwidth / med:.0%}"
        else:
            gbs = of_copy = "-"
        mem = case.peak_mb.get(name, memory.get(name))
        mem_s = "n/a" if mem is None else f"{mem:.0f}"
        print(
            f"  {name:<{width}}{_fmt_time(med):>10}{_fmt_time(min(ts)):>10}  {rel:<28}{gbs:>6}{of_copy:>9}{mem_s:>9}",
            file=out,
        )
    for name, why in case.missing.items():
        print(f"  {name:<{width}}{why}", file=out)
    if case.summarize is not None and times:
        for line in case.summarize(times):
            print(f"  => {line}", file=out)


def _cases(module, size: str, backend: str) -> list[Case]:
    params = inspect.signature(module.cases).parameters
    if "size" in params:
        return module.cases(size=size, backend=backend)
    return module.cases(quick=size != "full", backend=backend)


def _start_numba_threads() -> None:
    """One small parallel pixelmix call, so that Numba's threading layer is chosen and can be named."""
    import numpy as np

    import pixelmix as pm

    pm.Mixer(np.ones((1, 2))).apply(np.ones((64, 64, 2), dtype=np.float32), backend="cpu")


def run(
    suites: list[str],
    *,
    quick: bool = False,
    repeat: int | None = None,
    backend: str = "cpu",
    out=None,
    size: str | None = None,
) -> int:
    """Run the named suites and print their tables with the machine; return an exit status.

    Before Numba's threads first start, sets
    :data:`pixelmix.bench.machine.THREAD_POLICY` in ``os.environ`` where the
    environment lacks it (the header says what was done): pixelmix's idle
    threads then stop spinning as soon as a call ends.

    Parameters
    ----------
    suites : list of str
        Names from :data:`SUITES`, or ``"all"`` for :data:`ALL_SUITES`.
    quick : bool
        Small sizes (``size="quick"``): a smoke run of seconds.
    repeat : int, optional
        Alternating rounds (default 7; quick 3; tiny 1).
    backend : str
        pixelmix's backend in the comparisons.
    out : file, optional
        Where the report goes (default ``sys.stdout``).
    size : {"full", "quick", "tiny"}, optional
        Workload sizes; overrides ``quick``. ``"tiny"`` is for tests.

    Returns
    -------
    int
        0, or 2 when a suite or size is unknown.

    Examples
    --------
    >>> import io
    >>> from pixelmix import bench
    >>> bench.run(["nope"], out=io.StringIO())
    2
    """
    out = out or sys.stdout
    size = size or ("quick" if quick else "full")
    names = [s for suite in suites for s in (ALL_SUITES if suite == "all" else (suite,))]
    unknown = [s for s in names if s not in SUITES]
    if unknown or size not in SIZES:
        what = f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)} or all" if unknown else (
            f"unknown size {size!r}; choose from {', '.join(SIZES)}"
        )
        print(what, file=sys.stderr)
        return 2
    policy = machine.apply_thread_policy()
    _start_numba_threads()
    repeat = repeat or {"full": 7, "quick": 3, "tiny": 1}[size]
    bandwidth = machine.copy_bandwidth((256 if size == "full" else 64) * 2**20)
    versions = [f"{label} {v}" for label in OPTIONAL if (v := _version(label))]
    absent = [label for label in OPTIONAL if _version(label) is None]
    print(f"pixelmix bench: {', '.join(names)}; size {size}, backend={backend}, {repeat} alternating rounds, "
          "each timing after the other threads have gone quiet", file=out)
    header = machine.describe(bandwidth, policy)
    for line in header:
        print(f"  {line}", file=out)
    print(f"  libraries: {', '.join(versions) or 'none'}" + (f"; not installed: {', '.join(absent)}" if absent else ""),
          file=out)
    idle = IdleLog()
    for suite in names:
        module = importlib.import_module(SUITES[suite], __name__)
        for case in _cases(module, size, backend):
            times = time_case(case, repeat, idle)
            memory = {name: None if name in case.peak_mb else peak_extra_mb(fn) for name, fn in case.impls.items()}
            report(case, times, bandwidth, memory, out=out)
            del case
            gc.collect()
    print("\nafter the run:", file=out)
    for line in [*machine.describe_threads(skip=header), *idle.lines(), machine.load_line()]:
        print(f"  {line}", file=out)
    return 0
