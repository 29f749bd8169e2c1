"""Numba's on-disk cache shared by the test processes (README's command runs two, with pytest-xdist).

Numba reads a function's cache index, adds an entry and writes it back
without a lock (``numba.core.caching.IndexDataCacheFile.save``): two
processes saving new specialisations of one function at the same moment can
both take the same data file, and the index then pairs one signature with
the other's machine code (numba#10128 reports the GUFunc form of this race).
:func:`lock_index` serialises saves and loads with a lock file beside each
index. Where Numba's cache is not built as this expects, :func:`separate`
gives each process a cache of its own instead: safe, but the kernels both
processes need are compiled twice (the suite took 612 s that way, against
428-465 s sharing one cache, on 2 cores).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; each process keeps a cache of its own
    fcntl = None


def lock_index() -> bool:
    """Make Numba's cache saves exclusive and its loads shared, across processes; False if it cannot."""
    if fcntl is None:
        return False
    try:
        from numba.core.caching import IndexDataCacheFile

        # The attributes used below, on an instance (the constructor does no I/O).
        probe = IndexDataCacheFile(cache_path="", filename_base="probe", source_stamp=None)
        probe._index_path  # the lock file is named after it
        save, load = IndexDataCacheFile.save, IndexDataCacheFile.load
    except (ImportError, TypeError, AttributeError):
        return False
    if getattr(save, "locked", False):  # already done: a second lock in one process would wait for the first
        return True

    def locked_save(self, key, data):
        with _locked(self._index_path, fcntl.LOCK_EX):
            save(self, key, data)

    def locked_load(self, key):
        with _locked(self._index_path, fcntl.LOCK_SH):
            return load(self, key)

    locked_save.locked = locked_load.locked = True
    IndexDataCacheFile.save, IndexDataCacheFile.load = locked_save, locked_load
    return True


@contextmanager
def _locked(index_path: str, how: int):
    try:
        lock = open(index_path + ".lock", "a")
    except OSError:  # no cache folder yet (nothing to load), or an unwritable one (Numba saves nothing there)
        yield
        return
    with lock:
        fcntl.flock(lock, how)
        yield  # closing the file releases the lock


def separate(worker: str) -> None:
    """Give this test process a Numba cache of its own, ``tests/.numba-cache/<worker>``."""
    folder = str(Path(__file__).resolve().parent / ".numba-cache" / worker)
    os.environ["NUMBA_CACHE_DIR"] = folder  # for the processes the tests start
    from numba.core import config

    config.CACHE_DIR = folder  # this process's Numba read its environment when it was imported
