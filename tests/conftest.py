import os

import numpy as np
import pytest
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
