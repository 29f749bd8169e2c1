"""The CUDA backend: backend choice and errors here, kernels in a subprocess.

The kernel tests live in ``tests/cuda_sim_cases.py`` and run in a child
pytest process, so that ``NUMBA_ENABLE_CUDASIM=1`` (which must be set before
``numba.cuda`` is imported) never reaches the other test modules:

- always, under Numba's CUDA simulator (tiny images, tiny blocks);
- on a real GPU when ``PIXELMIX_TEST_GPU=1`` is set and a GPU is usable,
  with larger images and real-hardware tolerances.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pixelmix as pm
from pixelmix import config
from pixelmix.backends import cuda as gpu

from .helpers import random_image

CASES = Path(__file__).with_name("cuda_sim_cases.py")
ROOT = CASES.parent.parent


def _run_cases(simulator: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    passed = re.search(r"(\d+) passed", output)
    assert passed and int(passed.group(1)) >= 20, output[-3000:]


def test_kernels_under_the_cuda_simulator():
    _run_cases(simulator=True)


@pytest.mark.skipif(
    os.environ.get("PIXELMIX_TEST_GPU") != "1",
    reason="real-GPU tests are opt-in: set PIXELMIX_TEST_GPU=1 on a machine with an NVIDIA GPU",
)
def test_kernels_on_a_real_gpu():
    assert gpu.usable(), f"PIXELMIX_TEST_GPU=1 but CUDA is not usable: {gpu.unusable_reason()}"
    _run_cases(simulator=False)


@pytest.fixture
def no_gpu(monkeypatch):
    """CUDA made unusable, with a known reason (whatever this machine has)."""
    reason = "the NVIDIA driver could not be used (CUDA driver library cannot be found.)"
    monkeypatch.setattr(gpu, "_probe", lambda: reason)
    return reason


def test_backend_cuda_without_gpu_says_why(no_gpu):
    m = pm.Mixer(np.ones((1, 3)))
    with pytest.raises(gpu.CudaUnavailableError, match="driver library cannot be found.*backend='cpu'"):
        m.apply(np.ones((4, 4, 3), np.float32), backend="cuda")
    assert gpu.describe() == f"CUDA: not usable: {no_gpu}"
    assert not gpu.usable()


def test_validation_errors_come_before_the_gpu_check(no_gpu):
    with pytest.raises(ValueError, match="has 2 channels on axis -1 but the mixer expects 3"):
        pm.Mixer(np.ones((1, 3))).apply(np.ones((4, 2)), backend="cuda")


def test_auto_falls_back_to_the_cpu(no_gpu, monkeypatch, rng):
    monkeypatch.setattr(config, "AUTO_MIN_BYTES", 0)  # every image would be worth the GPU
    x = random_image(rng, (9, 8, 3), np.uint16)
    m = pm.Mixer(rng.standard_normal((2, 3)))
    np.testing.assert_array_equal(m.apply(x, backend="auto"), m.apply(x, backend="cpu"))


def test_auto_does_not_probe_for_small_images(monkeypatch, rng):
    def probe():
        raise AssertionError("a small image must not wake the GPU")

    monkeypatch.setattr(gpu, "_probe", probe)
    x = random_image(rng, (9, 8, 3), np.float32)
    m = pm.Mixer(rng.standard_normal((2, 3)))
    np.testing.assert_array_equal(m.apply(x), m.apply(x, backend="cpu"))


def test_worth_it_is_a_size_threshold():
    assert not gpu.worth_it(config.AUTO_MIN_BYTES - 1)
    assert gpu.worth_it(config.AUTO_MIN_BYTES)


def test_this_machine_is_probed_with_a_reason_or_found_usable():
    reason = gpu.unusable_reason()
    summary = gpu.describe()
    if reason is None:
        assert summary.startswith("CUDA: usable") or "simulator" in summary
    else:
        assert re.search(r"not installed|driver|device", reason), reason
        assert summary == f"CUDA: not usable: {reason}"


def test_device_arrays_are_recognised_without_importing_cuda():
    class Fake:
        __cuda_array_interface__ = {"shape": (2,), "typestr": "<f4", "data": (0, False), "version": 3}

    assert gpu.is_device_array(Fake())
    assert not gpu.is_device_array(np.zeros(2))
    assert not gpu.is_device_array(None)


def test_cpu_backend_refuses_gpu_arrays():
    class Fake:
        __cuda_array_interface__ = {"shape": (2, 3), "typestr": "<f4", "data": (0, False), "version": 3}

    with pytest.raises(ValueError, match="backend='cpu' cannot read GPU arrays"):
        pm.Mixer(np.ones((1, 3))).apply(Fake(), backend="cpu")


def test_cuda_bench_suite_without_gpu_prints_why_and_succeeds(no_gpu, capsys):
    from pixelmix.bench import run

    assert run(["cuda"], quick=True, repeat=1) == 0
    assert f"no usable GPU: {no_gpu}" in capsys.readouterr().out
