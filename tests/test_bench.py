"""``pixelmix bench``: every suite runs at its tiny size and reports the machine and ratios."""

import doctest
import functools
import io
import os
import sys
import threading
import time

import numpy as np
import pytest

import pixelmix as pm
from pixelmix import bench
from pixelmix.bench import machine

MACHINE_LINES = ["CPU: ", "Numba ", "copy bandwidth: ", "load average ", "libraries: ", "after the run:",
                 "threads left busy after a call"]
TABLE_COLUMNS = ["implementation", "median", "min", "vs row 1 (range)", "GB/s", "of copy", "peak MB"]
SLOW = {"fit", "large", "dask", "unmix"}


@pytest.fixture(autouse=True)
def keep_environment():
    """bench.run sets the thread policy in os.environ: the other tests keep theirs."""
    saved = {name: os.environ.get(name) for name in machine.THREAD_POLICY}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _run(suites, **kwargs) -> str:
    out = io.StringIO()
    assert bench.run(suites, size="tiny", repeat=1, out=out, **kwargs) == 0
    return out.getvalue()


@functools.cache
def _suite_text(suite: str) -> str:
    """One suite's report, run once for the tests that read it."""
    return _run([suite])


@pytest.mark.parametrize(
    "suite", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW else s for s in bench.SUITES if s != "cuda"]
)
def test_each_suite_prints_the_machine_and_ratio_columns(suite):
    text = _suite_text(suite)
    for line in MACHINE_LINES:
        assert line in text, f"machine line {line!r} missing"
    tables = text.count("  implementation ")
    assert tables >= 1
    for column in TABLE_COLUMNS:
        assert column in text
    # Every table has its reference row and at least one ratio to it.
    assert text.count("1.00x") >= tables
    assert any(word in text for word in ("x slower", "x faster"))


def test_cuda_suite_without_a_gpu_says_why(capsys):
    # The simulator (CI) or no device: the suite explains itself and times nothing.
    from pixelmix.backends import cuda

    if cuda.unusable_reason() is None and not os.environ.get("NUMBA_ENABLE_CUDASIM"):
        pytest.skip("a usable GPU is here: tests/test_cuda.py times the suite")
    text = _run(["cuda"])
    assert "no usable GPU" in capsys.readouterr().out
    assert "CPU: " in text


def test_mix_suite_compares_the_strongest_forms():
    text = _suite_text("mix")
    assert "W @ X.reshape(C, -1).astype(float32)" in text  # planar NumPy, no moveaxis
    assert "X.reshape(-1, C) @ W.T" in text  # BLAS on channels last
    assert "numpy (astype + matmul)" in text
    assert "pipeline:" in text and "after pixelmix" in text and "after numpy matmul" in text
    assert "a BLAS call right after pixelmix:" in text and "(goal: at least 5x:" in text
    # transform takes one thread: pixelmix on one thread too, beside it (the work per core)
    assert "=> pixelmix (cpu) on one thread, into out= " in text and "as fast as opencv transform, into dst=" in text


def test_missing_optional_libraries_say_not_installed(monkeypatch):
    for module in ("cv2", "torch"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    text = _run(["mix"])
    assert "opencv cvtColor RGB2GRAY" in text and "not installed (pip install opencv-python-headless)" in text
    assert "torch conv2d 1x1" in text and "not installed (pip install torch)" in text
    assert "not installed: " in text and "OpenCV" in text.split("not installed: ")[1].splitlines()[0]


def test_missing_fit_anchors_say_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "spectral", None)
    text = _run(["fit"])
    assert "spectral principal_components" in text and "not installed (pip install spectral)" in text
    assert "of the speed of reading the file" in text
    # MNF, LDA and least squares: each beside its anchors and the PCA bar
    assert "spectral mnf (calc_stats, noise_from_diffs)" in text.split("MNF fit")[1].split("LDA fit")[0]
    for row in ("pixelmix fit_mnf", "pixelmix fit_lda", "sklearn LDA eigen", "pixelmix fit_lstsq",
                "sklearn Ridge cholesky", "sklearn LinearRegression"):
        assert row in text
    assert text.count("as fast as sklearn PCA covariance_eigh (goal: at least 1x") == 4
    assert "right after pixelmix fit_pca" in text and "a BLAS call right after a fit: " in text


def test_unknown_suite_or_size_is_a_usage_error(capsys):
    assert bench.run(["nope"], out=io.StringIO()) == 2
    assert "choose from" in capsys.readouterr().err
    assert bench.run(["mix"], size="huge", out=io.StringIO()) == 2
    assert "unknown size" in capsys.readouterr().err


def test_all_names_the_suites_of_the_speed_claims():
    assert set(bench.ALL_SUITES) <= set(bench.SUITES)


def test_ratios_are_taken_round_by_round():
    assert bench.ratio_text([2.0, 2.2, 3.0], [1.0, 1.1, 1.0]) == "2.00x slower (2.00-3.00)"
    assert bench.ratio_text([0.5], [1.0]) == "2.00x faster"
    times = {"ours": [1.0, 1.0], "theirs": [4.0, 5.0]}
    assert bench.speedup(times, "ours", "theirs", 5.0) == "ours 4.50x (4.00-5.00) as fast as theirs (goal: at least 5x: not met)"
    assert bench.slowdown("x:", [1.1, 1.3], [1.0, 1.0], "g") == "x: +20% (+10% to +30%) against alone (g)"
    assert bench.share_of("fit at", [2.0], [1.5], "reading", "g") == "fit at 75% of reading (g)"


def test_settle_waits_for_a_busy_thread_and_counts_its_cpu():
    end = time.perf_counter() + 0.3

    def spin():
        while time.perf_counter() < end:
            pass

    worker = threading.Thread(target=spin)
    worker.start()
    waited, burnt = machine.settle(limit=2.0)
    worker.join()
    assert waited >= 0.2
    assert burnt >= 0.05
    waited, _ = machine.settle(limit=2.0)
    assert waited < 0.5  # nothing busy left: one quiet window or a few


def test_thread_policy_keeps_the_users_setting_and_says_when_it_is_too_late(monkeypatch):
    pm.Mixer(np.ones((1, 2))).apply(np.ones((64, 64, 2), dtype=np.float32))  # Numba's threads run
    for name in machine.THREAD_POLICY:
        monkeypatch.setenv(name, "ACTIVE")
        assert f"{name}=ACTIVE (from the environment)" in machine.apply_thread_policy()
        monkeypatch.delenv(name)
        lines = machine.apply_thread_policy()
        assert any(line.startswith(f"{name} not set") for line in lines)
        assert name not in os.environ


def test_machine_lines_name_cpu_threads_and_bandwidth():
    lines = machine.describe(machine.copy_bandwidth(2**20, repeat=1))
    assert lines[0].startswith("CPU: ") and "usable of" in lines[0]
    assert any(line.startswith("Numba ") and "threading layer" in line for line in lines)
    assert any(line.startswith("copy bandwidth: ") for line in lines)


@pytest.mark.parametrize("module", [bench, machine])
def test_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
