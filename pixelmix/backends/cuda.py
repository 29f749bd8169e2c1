"""The CUDA backend's host side: finding a GPU, streaming tiles through it, device arrays.

Importing this module imports nothing heavy; Numba's CUDA support is loaded
the first time a GPU is probed or used.

- :func:`unusable_reason` / :func:`usable` / :func:`describe` say whether
  CUDA can run here and why not (Numba's CUDA support missing, no driver,
  no device).
- :func:`run_cuda` runs a validated host request: the image goes through
  the GPU tile by tile, each tile copied into a pinned buffer, sent, mixed
  and fetched back on its own CUDA stream, so that copies in both
  directions overlap the kernel and images larger than GPU memory work.
- :func:`run_device` mixes an image that is already on the GPU (anything
  with ``__cuda_array_interface__``: Numba device arrays, CuPy arrays,
  PyTorch CUDA tensors) where it lies; the result stays on the GPU.
- :func:`worth_it` is the size rule that ``backend="auto"`` uses.

Its knobs (threads per block, tile bytes, streams, shared memory, the
``auto`` size rule) are in :mod:`pixelmix.config`, read at every call; they
reach the kernel as launch parameters, never compiled in. Validation is not
done here: :mod:`pixelmix.dispatch` hands in a validated request.
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache

import numpy as np

from .. import config
from ..lowering import kernel_args, lookup_table, no_table
from ..plan import pieces, tiles, view3

_lock = threading.Lock()
_pinned: dict[int, np.ndarray] = {}


class CudaUnavailableError(RuntimeError):
    """``backend="cuda"`` was asked for but CUDA cannot run here (the message says why)."""


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return " ".join(lines) if lines else str(text)


@lru_cache(maxsize=1)
def _probe() -> str | None:
    try:
        from numba import cuda
    except ImportError as exc:
        return (
            f"Numba's CUDA support is not installed ({exc}); install it with "
            f"pip install 'pixelmix[cuda]' (the numba-cuda package)"
        )
    from ..kernels.cuda import simulated

    if simulated():
        return None
    if not cuda.is_available():
        error = cuda.cuda_error()
        if error:
            return (
                f"the NVIDIA driver could not be used ({_first_line(error)}); install an "
                f"NVIDIA driver, or check that libcuda.so is on the library path"
            )
        return (
            "the NVIDIA driver loaded but found no usable CUDA device; check "
            "nvidia-smi and CUDA_VISIBLE_DEVICES"
        )
    try:
        cuda.get_current_device()
    except Exception as exc:  # a driver that loads but cannot open the device
        return f"the CUDA device could not be opened: {_first_line(exc)}"
    return None


def unusable_reason() -> str | None:
    """Why the CUDA backend cannot run here, or None when it can.

    Examples
    --------
    >>> from pixelmix.backends import cuda as gpu
    >>> reason = gpu.unusable_reason()
    >>> reason is None or isinstance(reason, str)
    True
    """
    return _probe()


def usable() -> bool:
    """True when the CUDA backend can run (a GPU, or Numba's simulator)."""
    return _probe() is None


def require() -> None:
    """Raise :class:`CudaUnavailableError` saying why, unless CUDA is usable."""
    reason = _probe()
    if reason is not None:
        raise CudaUnavailableError(
            f"backend='cuda' cannot run: {reason}. Use backend='cpu' (or 'auto', which "
            f"falls back to the CPU)."
        )


def worth_it(n_bytes: int) -> bool:
    """Whether moving ``n_bytes`` (image + result) through the GPU should beat the CPU.

    The CPU kernel runs at host memory speed; the GPU path is bounded by the
    PCIe link, about as fast, plus fixed costs (context, first compile,
    pinned buffers) worth tens of megabytes of CPU work. So only large
    images go to the GPU; device arrays always stay there.

    Examples
    --------
    >>> from pixelmix.backends import cuda as gpu
    >>> gpu.worth_it(3 * 512 * 512), gpu.worth_it(64 * 2048 * 2048 * 2)
    (False, True)
    """
    return int(n_bytes) >= config.AUTO_MIN_BYTES


def describe() -> str:
    """A human-readable summary of the CUDA support found, for ``pixelmix info --gpu``.

    Examples
    --------
    >>> from pixelmix.backends import cuda as gpu
    >>> gpu.describe().startswith("CUDA:")
    True
    """
    reason = _probe()
    if reason is not None:
        return f"CUDA: not usable: {reason}"
    from numba import cuda

    from ..kernels.cuda import simulated

    if simulated():
        return (
            "CUDA: Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1): kernels run as "
            "Python, for testing only"
        )
    lines = ["CUDA: usable"]
    try:
        from importlib.metadata import version

        lines.append(f"  numba-cuda {version('numba-cuda')}")
    except Exception:  # Numba's own CUDA target, or no metadata
        pass
    try:
        from numba.cuda.cudadrv.driver import driver

        major, minor = driver.get_version()
        lines.append(f"  driver supports CUDA {major}.{minor}")
    except Exception:
        pass
    current = cuda.get_current_device().id
    for dev in cuda.list_devices():
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        cc = ".".join(map(str, dev.compute_capability))
        line = f"  device {dev.id}: {name}, compute capability {cc}"
        if dev.id == current:
            free, total = cuda.current_context().get_memory_info()
            sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
            line += f", {sms} SMs, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free (in use)"
        lines.append(line)
    return "\n".join(lines)


def is_device_array(obj) -> bool:
    """True for arrays that live on a GPU (``__cuda_array_interface__``, Numba device arrays)."""
    if obj is None or isinstance(obj, np.ndarray):
        return False
    return bool(getattr(obj, "__cuda_ndarray__", False)) or hasattr(obj, "__cuda_array_interface__")


class _Launch:
    """A program ready to run: its tables on the device, the kernel, the launch shape."""

    def __init__(self, request, lut, lut_offset, start, threads_per_block, max_blocks):
        from numba import cuda

        from ..kernels import cuda as kc

        args = kernel_args(request, lut, lut_offset, start)
        table, params = args["table"], args["params"]
        cap = kc.scratch_width(table)
        first = kc.first_mixing_step(table, start)
        w0 = kc.first_affine_weights(table, params, cap, first)
        shared = w0.nbytes <= config.SHARED_BYTES
        self.kernel = kc.program_kernel(cap, request.acc_dtype.name, kc.unmix_width(table, params))
        self.shared_bytes = int(w0.nbytes) if shared else 0
        self.threads = int(threads_per_block or config.THREADS_PER_BLOCK)
        if self.threads < 1:
            raise ValueError(f"threads_per_block must be positive, got {threads_per_block}")
        max_blocks = max_blocks or config.MAX_BLOCKS
        if max_blocks is None and not kc.simulated():
            max_blocks = cuda.get_current_device().MULTIPROCESSOR_COUNT * config.BLOCKS_PER_SM
        self.max_blocks = max_blocks
        self.args = (
            cuda.to_device(np.ascontiguousarray(table)),
            cuda.to_device(params),
            cuda.to_device(w0),
            shared,
            int(start),
            int(first),
            cuda.to_device(np.ascontiguousarray(args["lut"])),
            int(args["lut_offset"]),
            bool(args["use_lut"]),
            float(args["nodata"]),
            bool(args["use_nodata"]),
            bool(args["check_nan"]),
            bool(args["is_int"]),
            float(args["lo"]),
            float(args["hi"]),
            float(args["fill"]),
        )

    def __call__(self, d_x3, d_out3, stream=0) -> None:
        n_pixels = d_x3.shape[0] * d_x3.shape[2]
        if n_pixels == 0:
            return
        blocks = math.ceil(n_pixels / self.threads)
        if self.max_blocks:
            blocks = min(blocks, int(self.max_blocks))
        self.kernel[blocks, self.threads, stream, self.shared_bytes](d_x3, d_out3, *self.args)


def _pinned_buffer(slot: int, n: int, dtype: np.dtype) -> np.ndarray:
    """A pinned host buffer of ``n`` values, kept between calls (pinning is slow)."""
    from numba import cuda

    nbytes = n * dtype.itemsize
    raw = _pinned.get(slot)
    if raw is None or raw.nbytes < nbytes:
        _pinned.pop(slot, None)
        raw = cuda.pinned_array(max(nbytes, 1), dtype=np.uint8)
        _pinned[slot] = raw
    return raw[:nbytes].view(dtype)


def _stream(launch: _Launch, x3: np.ndarray, out3: np.ndarray, tile_bytes: int | None) -> None:
    """Run ``launch`` on contiguous host arrays, N_STREAMS tiles in flight."""
    from numba import cuda

    A, C, B = x3.shape
    K = out3.shape[1]
    per_pixel = C * x3.itemsize + K * out3.itemsize
    tile_pixels = max(1, int(tile_bytes or config.GPU_TILE_BYTES) // per_pixel)
    boxes = list(tiles(A, B, tile_pixels))
    capacity = max((a1 - a0) * (b1 - b0) for a0, a1, b0, b1 in boxes)
    n_slots = min(config.N_STREAMS, len(boxes))
    slots = []
    for i in range(n_slots):
        slots.append(
            dict(
                stream=cuda.stream(),
                h_in=_pinned_buffer(2 * i, capacity * C, x3.dtype),
                h_out=_pinned_buffer(2 * i + 1, capacity * K, out3.dtype),
                d_in=cuda.device_array(capacity * C, dtype=x3.dtype),
                d_out=cuda.device_array(capacity * K, dtype=out3.dtype),
                pending=None,
            )
        )

    def finish(slot):
        if slot["pending"] is not None:
            (a0, a1, b0, b1), h_out = slot["pending"]
            slot["stream"].synchronize()
            out3[a0:a1, :, b0:b1] = h_out
            slot["pending"] = None

    for i, box in enumerate(boxes):
        slot = slots[i % n_slots]
        finish(slot)  # this slot's previous tile; the other slots keep the GPU busy
        a0, a1, b0, b1 = box
        na, nb = a1 - a0, b1 - b0
        h_in = slot["h_in"][: na * C * nb].reshape(na, C, nb)
        h_out = slot["h_out"][: na * K * nb].reshape(na, K, nb)
        h_in[...] = x3[a0:a1, :, b0:b1]
        d_in = slot["d_in"][: na * C * nb].reshape(na, C, nb)
        d_out = slot["d_out"][: na * K * nb].reshape(na, K, nb)
        d_in.copy_to_device(h_in, stream=slot["stream"])
        launch(d_in, d_out, slot["stream"])
        d_out.copy_to_host(h_out, stream=slot["stream"])
        slot["pending"] = (box, h_out)
    for slot in slots:
        finish(slot)


def _lookup(request, threads_per_block, max_blocks, tile_bytes):
    """The per-channel table of leading steps, for 8-bit input only.

    A 256-entry table per channel stays in L1; a 65536-entry one does not,
    and the GPU computes the steps faster than it gathers from L2.
    """
    if request.image.dtype.itemsize != 1:
        return no_table(request)

    def run(x3, out3, sub, lut, lut_offset, start):
        _stream(_Launch(sub, lut, lut_offset, start, threads_per_block, max_blocks), x3, out3, tile_bytes)

    return lookup_table(request, run, "cuda")


def run_cuda(request, *, threads_per_block: int | None = None, max_blocks: int | None = None, tile_bytes: int | None = None) -> None:
    """Run a validated host request (:func:`pixelmix.dispatch.prepare`) on the GPU.

    The image is read in contiguous pieces (:func:`pixelmix.plan.pieces`)
    and each piece streamed through the GPU in tiles of about ``tile_bytes``
    (default ``config.GPU_TILE_BYTES``), whatever the GPU's memory size.
    """
    require()

    with _lock:
        lut, lut_offset, start = _lookup(request, threads_per_block, max_blocks, tile_bytes)
        launch = _Launch(request, lut, lut_offset, start, threads_per_block, max_blocks)
        for x3, out3, finish in pieces(request):
            _stream(launch, x3, out3, tile_bytes)
            finish()


def _as_device(obj, what: str):
    from numba import cuda

    if getattr(obj, "__cuda_ndarray__", False):  # Numba's own (and the simulator's)
        d = obj
    else:
        d = cuda.as_cuda_array(obj)
    if not d.is_c_contiguous():
        raise ValueError(
            f"{what} is a non-contiguous GPU array; the CUDA backend mixes C-contiguous "
            f"device arrays in place: pass a contiguous copy (cupy.ascontiguousarray(a), "
            f"tensor.contiguous())"
        )
    return d


def _overlap(d1, d2) -> bool:
    """Whether two C-contiguous device arrays share bytes (from their own extents,
    not their allocations': CuPy's pool carves many arrays out of one)."""
    from ..kernels.cuda import simulated

    if simulated():
        return bool(np.shares_memory(d1._ary, d2._ary))
    s1 = d1.__cuda_array_interface__["data"][0]
    s2 = d2.__cuda_array_interface__["data"][0]
    return s1 < s2 + d2.nbytes and s2 < s1 + d1.nbytes


def _empty_like_kind(image, shape, dtype):
    """A new device array for the result, of the image's library where we know it."""
    from numba import cuda

    module = type(image).__module__.split(".")[0]
    if module == "cupy":
        import cupy

        with cupy.cuda.Device(image.device.id):
            return cupy.empty(shape, dtype=dtype)
    if module == "torch":
        import torch

        return torch.empty(shape, dtype=getattr(torch, np.dtype(dtype).name), device=image.device)
    return cuda.device_array(shape, dtype=dtype)


def device_arrays(image, out):
    """``(d_image, d_out or None)``: the C-contiguous device views of a call on GPU arrays.

    Raises a clear error when only one of them is on the GPU, or when CUDA
    cannot run here.
    """
    if not is_device_array(image):
        raise TypeError(
            "out is a GPU array but the image is on the host; pass both on the GPU, or "
            "leave out=None to get a host result"
        )
    if out is not None and not is_device_array(out):
        raise TypeError(
            f"the image is a GPU array but out is {type(out).__name__}; pass a device "
            f"array as out, or leave out=None (the result stays on the GPU)"
        )
    require()
    d_image = _as_device(image, "the image")
    d_out = None if out is None else _as_device(out, "out")
    return d_image, d_out


def device_views(request, image, d_image, d_out, out):
    """``(d_x3, d_out3, result)`` for a validated request on device arrays.

    ``result`` is ``out`` when given, else a new array of the image's kind
    (CuPy for CuPy, a PyTorch tensor for a tensor, else a Numba device array).
    """
    if d_out is None:
        result = _empty_like_kind(image, request.out.shape, request.out_dtype)
        d_out = _as_device(result, "the result")
    else:
        result = out
        if _overlap(d_image, d_out):
            raise ValueError("out overlaps the image; mixing in place is not supported")
    return view3(d_image, request.axis), view3(d_out, request.axis), result


def run_device(request, d_x3, d_out3, *, threads_per_block: int | None = None, max_blocks: int | None = None) -> None:
    """Mix device arrays in place on the GPU; returns when the kernel has finished."""
    from numba import cuda

    if request.image.size == 0 or request.out.size == 0:
        return
    with _lock:
        lut, lut_offset, start = _lookup(request, threads_per_block, max_blocks, None)
        launch = _Launch(request, lut, lut_offset, start, threads_per_block, max_blocks)
        launch(d_x3, d_out3)
        cuda.synchronize()


def kernel_seconds(request, d_x3, d_out3, *, repeat: int = 10) -> list[float]:
    """Times of the mixing kernel alone on device arrays, from CUDA events, in seconds.

    For benchmarks: no validation, allocation or host work is timed, only
    ``repeat`` launches after one warm-up launch (which compiles). The
    request and views come from :func:`pixelmix.dispatch.prepare_device`.
    """
    from numba import cuda

    with _lock:
        lut, lut_offset, start = _lookup(request, None, None, None)
        launch = _Launch(request, lut, lut_offset, start, None, None)
        launch(d_x3, d_out3)
        cuda.synchronize()
        times = []
        begin, end = cuda.event(), cuda.event()
        for _ in range(repeat):
            begin.record()
            launch(d_x3, d_out3)
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end) / 1e3)
    return times
