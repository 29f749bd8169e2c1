"""The machine a bench runs on, and waiting for other libraries' idle threads to stop.

Benchmark figures mean little without the machine: the CPU, how many cores
this process may use, Numba's threads and threading layer, the BLAS behind
NumPy, the copy bandwidth of the memory and whether other processes were
busy. :func:`describe` gives those lines.

Libraries keep their worker threads spinning for a while after a parallel
call, so that the next call starts at once: OpenBLAS's pthreads workers
for ``2**OPENBLAS_THREAD_TIMEOUT`` clock ticks (2**28 by default, about
0.1 s), GNU OpenMP's (Numba's ``omp`` layer, PyTorch) for
``GOMP_SPINCOUNT`` spins unless ``OMP_WAIT_POLICY=PASSIVE``. A timing taken
while another library's threads still spin loses part of the cores to them:
:func:`settle` waits until this process's other threads have gone quiet.

Examples
--------
>>> from pixelmix.bench import machine
>>> machine.usable_cpus() >= 1
True
>>> waited, burnt = machine.settle(limit=0.05)
>>> 0 <= waited <= 0.2
True
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

# Set before Numba's threads start, unless the environment has it. GNU OpenMP's
# workers (Numba's omp layer) otherwise spin after every parallel region: measured
# here 3.5-7 ms of CPU after each pixelmix call, taken from whatever runs next (a
# BLAS call right after pixelmix: +14% median, against +4% with PASSIVE), and on a
# busy machine a spinning barrier makes a stream of small calls erratic (0.1-2 ms
# per 32 x 32 call against 40-80 us). The price is one wake-up per call.
THREAD_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}


# AMD's CPU families by microarchitecture: a "model name" such as "AMD EPYC" alone does not say.
AMD_FAMILIES = {"23": "Zen/Zen 2", "25": "Zen 3/Zen 4", "26": "Zen 5"}


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _numba_threads_started() -> bool:
    import numba

    try:
        numba.threading_layer()
    except ValueError:
        return False
    return True


def apply_thread_policy() -> list[str]:
    """Set :data:`THREAD_POLICY` in the environment where the user has not; say what happened.

    A runtime reads these variables when it loads, so they reach Numba's
    OpenMP runtime only if no parallel Numba function has run yet in this
    process (the command line's case). Each returned line names a variable
    and whether it was set here, kept from the user, or came too late.

    Examples
    --------
    >>> sorted(THREAD_POLICY)
    ['OMP_WAIT_POLICY']
    """
    started = _numba_threads_started()
    lines = []
    for name, value in THREAD_POLICY.items():
        if name in os.environ:
            lines.append(f"{name}={os.environ[name]} (from the environment)")
        elif started:
            lines.append(f"{name} not set: Numba's threads had started before the bench could set it")
        else:
            os.environ[name] = value
            lines.append(f"{name}={value} (set by the bench before Numba's threads started)")
    return lines


def others_cpu_seconds() -> float:
    """CPU seconds used so far by this process's threads other than the calling one.

    Examples
    --------
    >>> others_cpu_seconds() >= -0.01
    True
    """
    return time.process_time() - time.thread_time()


def settle(*, limit: float = 1.0, window: float = 0.005, busy: float = 0.05) -> tuple[float, float]:
    """Wait until this process's other threads use under ``busy`` of a core; ``(waited, burnt)`` seconds.

    Sleeps ``window`` seconds at a time and returns after the first window in
    which the other threads together used less than ``busy`` of its length, or
    after ``limit`` seconds. ``burnt`` is the CPU time they used meanwhile:
    what an idle pool of threads would have taken from the next computation.

    Examples
    --------
    >>> waited, burnt = settle(limit=0.1)
    >>> 0 < waited < 1
    True
    """
    start = time.perf_counter()
    cpu0 = others_cpu_seconds()
    while True:
        t0, c0 = time.perf_counter(), others_cpu_seconds()
        time.sleep(window)
        t1, c1 = time.perf_counter(), others_cpu_seconds()
        if c1 - c0 < busy * (t1 - t0) or t1 - start >= limit:
            return t1 - start, c1 - cpu0


def copy_bandwidth(nbytes: int = 256 * 2**20, repeat: int = 5) -> float:
    """Bytes per second moved (read + written) by ``np.copyto`` on ``nbytes`` of memory; best of ``repeat``.

    Examples
    --------
    >>> copy_bandwidth(2**20, repeat=1) > 1e8
    True
    """
    src = np.ones(max(1, nbytes // 8))
    dst = np.empty_like(src)
    np.copyto(dst, src)  # the pages are touched before timing
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one).

    Examples
    --------
    >>> 1 <= usable_cpus() <= (os.cpu_count() or 1)
    True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's name, family/model and vector extensions, from ``/proc/cpuinfo`` where there is one.

    Examples
    --------
    >>> isinstance(cpu_model(), str)
    True
    """
    info = _read("/proc/cpuinfo")
    if not info:
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in info.splitlines():
        if not line.strip():
            break  # the first processor is enough
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    name = fields.get("model name", platform.machine())
    extra = []
    if "cpu family" in fields and "model" in fields:
        family = f"family {fields['cpu family']} model {fields['model']}"
        if fields.get("vendor_id") == "AuthenticAMD" and fields["cpu family"] in AMD_FAMILIES:
            family = f"{AMD_FAMILIES[fields['cpu family']]}, {family}"
        extra.append(family)
    flags = set(fields.get("flags", "").split())
    extra.append("AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2")
    l3 = _read("/sys/devices/system/cpu/cpu0/cache/index3/size")
    if l3:
        extra.append(f"L3 {l3.strip()}")
    return f"{name} ({', '.join(extra)})"


def _numba_line() -> str:
    import numba

    # get_num_threads starts Numba's pool: call it only after apply_thread_policy.
    n = numba.get_num_threads()
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "not chosen yet (no parallel call so far)"
    return f"Numba {numba.__version__}: {n} threads, threading layer {layer}"


def _owner(filepath: str) -> str:
    """Which package ships a runtime: ``numpy`` for ``.../numpy.libs/...``, ``torch`` for ``.../torch/lib/...``."""
    parts = Path(filepath).parts
    for part in reversed(parts[:-1]):
        if part.endswith(".libs"):
            return part[: -len(".libs")]
        if part in ("site-packages", "dist-packages"):
            break
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    return f"the system ({Path(filepath).parent})"


def _runtime_lines() -> list[str]:
    """The BLAS and OpenMP runtimes loaded in this process, from threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["BLAS/OpenMP runtimes: threadpoolctl not installed (pip install threadpoolctl to list them)"]
    lines = []
    for lib in threadpool_info():
        details = [f"{lib.get('num_threads')} threads"]
        if lib.get("threading_layer"):
            details.append(f"{lib['threading_layer']} threading")
        if lib.get("architecture"):
            details.append(f"{lib['architecture']} kernels")
        api = lib.get("internal_api")
        # threadpoolctl names OpenMP runtimes "openmp": their file (libgomp, libiomp, libomp) says which.
        kind = lib.get("prefix") if api in (None, "openmp") else api
        name = " ".join(str(v) for v in (kind, lib.get("version")) if v)
        lines.append(f"{lib.get('user_api', '?')}: {name} ({', '.join(details)}), from {_owner(lib.get('filepath', ''))}")
    return lines or ["BLAS/OpenMP runtimes: none loaded"]


def load_line() -> str:
    """The 1-minute load average against the usable CPUs, with a warning when others were busy.

    Examples
    --------
    >>> load_line().startswith(("load average", "load: unknown"))
    True
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return "load: unknown"
    cpus = usable_cpus()
    text = f"load average {load:.1f} over the last minute on {cpus} CPUs"
    if load > 0.5:
        text += ": other processes were running, timings are noisier than on a quiet machine"
    return text


def describe(bandwidth: float, policy: list[str] | None = None) -> list[str]:
    """Lines that name the machine: CPU, cores, Numba's threads, runtimes loaded, copy bandwidth, load.

    Examples
    --------
    >>> describe(2e10)[0].startswith("CPU: ")
    True
    """
    lines = [
        f"CPU: {cpu_model()}, {usable_cpus()} usable of {os.cpu_count()} CPUs; "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, NumPy {np.__version__}",
        *describe_threads(),
        f"copy bandwidth: {bandwidth / 1e9:.1f} GB/s (np.copyto, bytes read + written)",
        load_line(),
    ]
    if policy:
        lines.append("idle threads: " + "; ".join(policy))
    return lines


def describe_threads(skip: list[str] | None = None) -> list[str]:
    """Numba's threads and threading layer, then each BLAS and OpenMP runtime loaded (but those in ``skip``).

    Examples
    --------
    >>> describe_threads()[0].startswith("Numba ")
    True
    """
    return [line for line in [_numba_line(), *_runtime_lines()] if line not in (skip or [])]
