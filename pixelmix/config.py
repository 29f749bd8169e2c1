"""Tuning knobs, in one place, read at call time.

Every value here is looked up when a call runs (``config.TILE_VALUES``, never
``from .config import TILE_VALUES``), so a test or a user changes a knob by
setting it on this module, and it reaches the kernels as an argument, never
as a constant frozen into compiled code.

Examples
--------
>>> from pixelmix import config
>>> config.CHUNK_BYTES >= 2**20
True
"""

# -- CPU engine ------------------------------------------------------------------
# A chunk is the part of a non-contiguous image copied to contiguous memory at once.
CHUNK_BYTES = 32 * 2**20
# Scratch per tile: about this many values per buffer (2 MB of float32): long
# runs per channel for the prefetcher (2**17 measured 5-15% slower on 32- and
# 64-channel images than 2**18; 2**18 with runs of 4096 pixels 7-12% slower than
# 2**19 with runs of 8192, kernels.cpu.SWEEP, on channels-first 64- and
# 200-channel images; AMD Zen 5, L2 1 MB per core).
TILE_VALUES = 2**19
# A per-channel lookup table replaces leading per-channel steps when it is this small.
LUT_MAX_VALUES = 2**20
# A call that reads and writes fewer bytes than this runs on the calling thread
# alone: waking Numba's sleeping threads and joining them costs 50-100 us on a
# VM, more than such a call gains from a second core (AMD Zen 4, 2 cores: a
# 512 x 512 RGB to gray call took 86 us on one thread, 142 us on two; from about
# 4 MB on, two threads win).
SERIAL_BYTES = 2 * 2**20

# OpenMP wait policy of Numba's parallel kernels: PASSIVE threads sleep when a
# call ends instead of spinning for milliseconds on the cores the next library
# (BLAS, PyTorch) needs. Unlike the other knobs it is read once, when
# pixelmix.kernels is imported (the OpenMP runtime reads it when it loads), and
# a value already in the environment wins. None: leave the runtime's default.
OMP_WAIT_POLICY: str | None = "PASSIVE"

# -- CUDA backend ----------------------------------------------------------------
# Threads per block of the mixing kernel.
THREADS_PER_BLOCK = 256
# Most blocks per launch (the threads then loop over the pixels); None: BLOCKS_PER_SM
# per multiprocessor on a GPU, one thread per pixel in the simulator.
MAX_BLOCKS: int | None = None
BLOCKS_PER_SM = 32
# Input + output bytes of one streamed tile; N_STREAMS tiles are in flight.
GPU_TILE_BYTES = 32 * 2**20
N_STREAMS = 3
# The first affine step's weights go to shared memory when they fit in this.
SHARED_BYTES = 40 * 2**10
# backend="auto" moves a host image to the GPU only from this many bytes
# (image + result): below it, transfers and launch overhead eat the gain.
AUTO_MIN_BYTES = 128 * 2**20

# -- files and fits --------------------------------------------------------------
# A slab: the part of a file read, mixed and written at once (all channels).
SLAB_BYTES = 64 * 2**20
# A block of a fit: the part of the data whose statistics are taken at once.
FIT_BLOCK_BYTES = 64 * 2**20
