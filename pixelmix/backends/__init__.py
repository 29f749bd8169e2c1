"""Backends: each runs a validated :class:`pixelmix.plan.Request` its own way.

- :mod:`~pixelmix.backends.numpy`: the NumPy reference, the oracle every other backend is tested against;
- :mod:`~pixelmix.backends.cpu`: the Numba CPU driver;
- :mod:`~pixelmix.backends.cuda`: the CUDA host side (host images streamed through the GPU, device arrays in place);
- :mod:`~pixelmix.backends.dask`: lazy Dask arrays, each block computed by a runner it is handed.

A backend imports plan, lowering and kernels, never :mod:`pixelmix.dispatch`
(which picks among them). Importing this package imports no backend.
"""
