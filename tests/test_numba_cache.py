"""The lock around Numba's cache index that lets the test processes share one cache (tests/numba_cache.py)."""

import os
import threading

import pytest
from numba.core.caching import IndexDataCacheFile

from .numba_cache import lock_index

fcntl = pytest.importorskip("fcntl", reason="no flock on this platform: each test process keeps a cache of its own")


def test_a_save_waits_while_another_process_holds_the_index(tmp_path):
    assert lock_index()  # Numba's cache is built as the lock expects (else the suite gives each process its own)
    assert lock_index()  # and locking twice wraps it once: a second lock would wait for the first forever
    cache = IndexDataCacheFile(cache_path=str(tmp_path), filename_base="f", source_stamp=1)
    other = open(cache._index_path + ".lock", "a")  # another process, in the middle of a save
    fcntl.flock(other, fcntl.LOCK_EX)
    saving = threading.Thread(target=cache.save, args=(("sig", "target"), "machine code"))
    saving.start()
    saving.join(0.5)
    assert saving.is_alive() and not os.path.exists(cache._index_path)  # nothing read or written meanwhile
    other.close()  # the other process is done
    saving.join(10)
    assert not saving.is_alive()
    assert cache.load(("sig", "target")) == "machine code"
