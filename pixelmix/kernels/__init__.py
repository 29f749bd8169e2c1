"""Per-pixel kernels: the Numba CPU kernels and the CUDA kernel, and their shared body.

Nothing here is compiled at import time: ``cpu`` builds its Numba functions
lazily (``@njit`` compiles on first call), and ``cuda`` is only imported when
the CUDA backend is asked for.

The kernels are cached on disk (``cache=True``) next to this package, or in
the user's cache directory. Where neither is writable (a shared read-only
install, a service user with no home), Numba would refuse to define them at
all ("cannot cache function ...: no locator available"), so
:func:`ensure_cache_dir` points Numba's cache at a private temporary
directory first. ``NUMBA_CACHE_DIR``, when set, is always respected.

Numba's OpenMP threads spin for milliseconds after each parallel call,
slowing the next library that wants those cores (a BLAS call right after
pixelmix: +14%; with passive waiting +4%, measured by ``pixelmix bench``).
So ``OMP_WAIT_POLICY`` is set to ``pixelmix.config.OMP_WAIT_POLICY``
(PASSIVE) here, before the runtime loads, unless the environment has it.
"""

import os
import sys
import tempfile
from pathlib import Path

from .. import config

HERE = Path(__file__).resolve().parent


def _writable(folder: Path) -> bool:
    """Whether ``folder`` can be written, or created inside a writable parent."""
    while not folder.exists():
        if folder.parent == folder:
            return False
        folder = folder.parent
    return os.access(folder, os.W_OK | os.X_OK)


def _user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "numba"


def ensure_cache_dir() -> str | None:
    """Give Numba a writable cache directory if it would find none; return it (None: not needed).

    Examples
    --------
    >>> from pixelmix.kernels import ensure_cache_dir
    >>> ensure_cache_dir() is None or isinstance(ensure_cache_dir(), str)
    True
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    if _writable(HERE / "__pycache__") or _writable(_user_cache()):
        return None
    folder = os.path.join(tempfile.gettempdir(), f"pixelmix-numba-cache-{os.getuid() if hasattr(os, 'getuid') else 0}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = folder
    config = sys.modules.get("numba.core.config")
    if config is not None:  # Numba read its environment already
        config.CACHE_DIR = folder
    return folder


CACHE_FALLBACK = ensure_cache_dir()
if config.OMP_WAIT_POLICY:
    os.environ.setdefault("OMP_WAIT_POLICY", config.OMP_WAIT_POLICY)
