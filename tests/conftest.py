import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from .numba_cache import lock_index, separate

# README's test command runs the suite in two processes (pytest-xdist) that share Numba's cache:
# its index needs a lock (tests/numba_cache.py).
_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker and not lock_index() and not os.environ.get("NUMBA_CACHE_DIR"):
    separate(_worker)

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
