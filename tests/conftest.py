import os
from pathlib import Path

# README's test command runs the suite in two processes (pytest-xdist) that share Numba's cache.
# Numba reads, extends and writes back a function's cache index without a lock: two processes
# saving new specialisations of one function at the same moment can both take the same data file,
# and the index then pairs one signature with the other's machine code (numba#10128 reports the
# GUFunc form of this race). Saves and loads are therefore serialised with a lock file beside each
# index. Where Numba's cache internals are not the ones this knows, each process keeps a cache of
# its own instead (safe, but kernels both processes need are compiled twice: 612 s against 428 s).


def _lock_numba_cache() -> bool:
    """Serialise Numba's cache index updates across processes; False if its internals differ."""
    import fcntl
    from contextlib import contextmanager

    try:
        from numba.core.caching import IndexDataCacheFile
    except ImportError:
        return False
    try:  # the attributes used below, on an instance (the constructor does no I/O)
        probe = IndexDataCacheFile(cache_path="", filename_base="probe", source_stamp=None)
        probe._index_path  # the lock file is named after it
        save, load = IndexDataCacheFile.save, IndexDataCacheFile.load
    except (TypeError, AttributeError):
        return False

    @contextmanager
    def locked(cache_file, how):
        try:
            lock = open(cache_file._index_path + ".lock", "a")
        except OSError:  # no cache folder yet (nothing to load) or an unwritable one (Numba saves nothing)
            yield
            return
        with lock:
            fcntl.flock(lock, how)
            yield  # closing the file releases the lock

    def locked_save(self, key, data):
        with locked(self, fcntl.LOCK_EX):
            save(self, key, data)

    def locked_load(self, key):
        with locked(self, fcntl.LOCK_SH):
            return load(self, key)

    IndexDataCacheFile.save, IndexDataCacheFile.load = locked_save, locked_load
    return True


_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker and not _lock_numba_cache() and not os.environ.get("NUMBA_CACHE_DIR"):
    os.environ["NUMBA_CACHE_DIR"] = str(Path(__file__).resolve().parent / ".numba-cache" / _worker)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings

# Numba compile time dominates the first examples: no deadline, few examples.
settings.register_profile(
    "pixelmix",
    deadline=None,
    max_examples=int(os.environ.get("PIXELMIX_HYPOTHESIS_EXAMPLES", "40")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("pixelmix")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
