"""The Numba CPU backend's driver: runs a validated request on the CPU kernels.

The kernels themselves are in :mod:`pixelmix.kernels.cpu` (the general
per-pixel program over tiles) and :mod:`pixelmix.kernels.cpu_pixels` (RGB-like
programs on channels-last images, with no scratch). This driver picks one,
builds the lookup table when it pays, cuts non-contiguous images into
contiguous pieces (:func:`pixelmix.plan.pieces`), and serialises launches
under Numba's workqueue threading layer, which is not thread-safe.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numba
import numpy as np

from .. import config
from ..kernels import cpu_pixels
from ..kernels.cpu import OUT_DTYPES, finish_address, run_program
from ..lowering import kernel_args, lookup_table
from ..plan import Request, pieces

_launch_lock = threading.Lock()


_layer: str | None = None


def threading_layer() -> str | None:
    """Numba's threading layer in use, or None before the first parallel region ran."""
    global _layer
    if _layer is None:  # once chosen, the layer never changes
        try:
            _layer = numba.threading_layer()
        except ValueError:  # no parallel region has run yet
            pass
    return _layer


def run_kernel(x3, out3, request: Request, lut, lut_offset: int, start: int) -> None:
    """Run the program of ``request`` on one contiguous (A, C, B) piece into ``out3``."""
    if x3.flags.writeable:
        # One read-only view type for every input: memory-mapped files are
        # read-only, and Numba would otherwise compile a second specialisation.
        x3 = x3.view()
        x3.flags.writeable = False
    args = kernel_args(request, lut, lut_offset, start)
    channels_last = x3.shape[2] == 1
    serial = x3.nbytes + out3.nbytes < config.SERIAL_BYTES
    route = (start, channels_last, x3.dtype, out3.dtype, args["use_nodata"], args["check_nan"])
    kind, limit = request.program.derived(
        ("cpu kernel", *route), lambda: _choose(args, channels_last, x3.dtype, out3.dtype)
    )
    if kind == "rounded":
        # Integer output of RGB-like 8/16-bit data: float32 sums, exact float64 ones where they could differ.
        launch(
            cpu_pixels.run_rounded, x3, out3, args["table"], args["params"], request.program.params_as(np.float32),
            args["tile"], limit, args["lo"], args["hi"], args["fill"], workers(), serial=serial,
        )
    elif kind == "pixels":
        # RGB-like programs on channels-last data: a kernel without scratch.
        keep = ("table", "params", "start", "tile", "lut", "lut_offset", "use_lut", "is_int", "lo", "hi", "fill")
        launch(cpu_pixels.run_pixels, x3, out3, *(args[name] for name in keep), serial=serial)
    else:
        out_bytes, out_code = raw_output(out3)
        finish = finish_address(args["params"], args["table"], out_bytes)
        launch(run_program, x3, out_bytes, out_code, **args, workers=workers(), finish=finish, serial=serial)


def workers() -> int:
    """How many workers a kernel's parallel loop runs: one per thread of Numba's pool.

    Each worker claims runs of tiles (or of groups of tiles) until none is
    left (:func:`pixelmix.kernels.intrinsics.claim`). The pool's size, not
    the threads in use now (asking costs a call on every launch): a thread
    that runs two workers finds the tiles all claimed when it starts the
    second.
    """
    return numba.config.NUMBA_NUM_THREADS


def _choose(args, channels_last, in_dtype, out_dtype) -> tuple[str, float | None]:
    """The kernel for such a piece: ``("rounded", limit)``, ``("pixels", None)`` or ``("program", None)``.

    It depends only on the key it is kept under (the program, the route of the piece).
    """
    table, start = args["table"], args["start"]
    if not cpu_pixels.takes(table, start, channels_last, args["is_int"], args["use_nodata"], args["check_nan"]):
        return "program", None
    if args["is_int"]:
        limit = cpu_pixels.rounding_limit(table, args["params"], start, args["use_lut"], in_dtype, out_dtype)
        if limit is not None:
            return "rounded", limit
    return "pixels", None


def raw_output(out3: np.ndarray) -> tuple[np.ndarray, int]:
    """``run_program``'s form of a C-contiguous output: its bytes, and its dtype's code.

    >>> out3 = np.zeros((2, 3, 4), dtype=np.uint16)
    >>> data, code = raw_output(out3)
    >>> data.shape, data.dtype.name, OUT_DTYPES[code]
    ((48,), 'uint8', 'uint16')
    """
    return out3.reshape(-1).view(np.uint8), OUT_DTYPES.index(out3.dtype.name)


def launch(kernel, *args, serial: bool = False, **kwargs):
    """Call a parallel Numba kernel (on this thread alone if ``serial``); return what it returns.

    Numba's workqueue layer aborts when two threads launch parallel regions
    at once (tbb and omp are thread-safe): launches are serialised on it, and
    on the first launch, which is when the layer gets chosen.

    The kernels' threads claim runs of tiles as they go (:func:`workers`)
    rather than split them evenly up front: a thread that runs slowly (a
    core another process holds, such as OpenBLAS's spinning threads) takes
    fewer, and the others take the rest. Every result is still per pixel
    (or per fixed group of tiles), so it does not depend on which thread
    took which tile.

    ``serial`` runs the parallel loops on the calling thread only (Numba's
    thread count is per calling thread, and is restored after): for small
    calls, waking the pool costs more than it saves (``config.SERIAL_BYTES``).
    """
    with numba_threads(1 if serial else None):
        return _call(kernel, args, kwargs)


@contextmanager
def numba_threads(n: int | None):
    """Run Numba's parallel loops of the calling thread on at most ``n`` threads (None: leave it alone).

    The setting is per calling thread, so other threads' calls are not
    affected, and it is restored on the way out.

    Examples
    --------
    >>> import numba
    >>> with numba_threads(1):
    ...     numba.get_num_threads()
    1
    """
    if n is None:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(min(n, before))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _call(kernel, args, kwargs):
    if threading_layer() in (None, "workqueue"):
        with _launch_lock:
            return kernel(*args, **kwargs)
    return kernel(*args, **kwargs)


def run_cpu(request: Request) -> None:
    """Run a validated request on the Numba CPU kernels."""
    lut, lut_offset, start = lookup_table(request, run_kernel, "cpu")
    for x3, out3, finish in pieces(request):
        run_kernel(x3, out3, request, lut, lut_offset, start)
        finish()
