"""Per-pixel kernels: the NumPy oracle, the Numba CPU kernel and the CUDA kernel.

Nothing here is compiled at import time: ``cpu`` builds its Numba functions
lazily (``@njit`` compiles on first call), and ``cuda`` is only imported when
the CUDA backend is asked for.
"""
