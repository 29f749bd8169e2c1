"""Hostile mixer files, weights at the edge of float32, exact integer rounding, no writable cache."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pixelmix as pm
from pixelmix import ops
from pixelmix.fileformat import MAX_STEPS, MixerFileError

ROOT = Path(__file__).resolve().parent.parent


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _doc(**body) -> str:
    return json.dumps({"format": "pixelmix", "version": 1, **body})


@pytest.mark.parametrize(
    "text,problem",
    [
        (_doc(kind="program", steps=[5]), "step 0 is 5, not a JSON object"),
        (_doc(kind="program", steps=[{"kind": "mixer", "weights": [[1.0]]}]), "step 0: a mixer has no 'bias'"),
        (_doc(kind="mixer", weights=[[1.0]]), "a mixer has no 'bias'"),
        (_doc(kind="mixer", weights="abc", bias=[0.0]), "'weights' must be a list"),
        (_doc(kind="mixer", weights=[[1.0, 2.0], [3.0]], bias=[0.0, 0.0]), "rectangular"),
        ('{"format": "pixelmix", "version": 1, "kind": "mixer", "weights": [[' + "9" * 400 + "]], \"bias\": [0]}",
         "too large"),
        ('{"format": "pixelmix", "version": 1, "kind": "mixer", "weights": [[1e400]], "bias": [0]}', "NaN or Inf"),
        ('{"format": "pixelmix", "version": 1, "kind": "mixer", "weights": [[NaN]], "bias": [0]}', "not a finite"),
        ('{"format": "pixelmix", "version": 1, "kind": "program", "metadata": ' + "[" * 5000 + "]" * 5000 + "}",
         "nested deeper"),
        (_doc(kind="program", steps=[{"op": "relu"}] * (MAX_STEPS + 1)), f"at most {MAX_STEPS}"),
        (_doc(kind="program", steps=[{"op": "clip", "params": ["a", "b"]}]), "list of numbers"),
        (_doc(kind="sandwich"), "unknown kind"),
        (_doc(kind="mixer", weights=[[[1.0]]], bias=[0.0]), "2-D"),
    ],
)
def test_malformed_mixer_files_say_what_is_wrong(tmp_path, text, problem):
    path = _write(tmp_path / "bad.json", text)
    with pytest.raises(MixerFileError) as info:
        pm.load(path)
    message = str(info.value)
    assert message.startswith(f"cannot read mixer file {path}: ")
    assert problem in message
    # never an internal exception name
    for name in ("AttributeError", "RecursionError", "OverflowError", "KeyError"):
        assert name not in message


def test_saved_mixers_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        pm.Mixer([[1.0, 2.0]]).save(tmp_path / "m.json")
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644


def test_complex_weights_are_refused():
    with pytest.raises(TypeError, match="complex"):
        pm.Mixer([[1 + 2j, 0]])


def test_weights_beyond_float32_are_refused_for_float32_sums():
    m = pm.Mixer([[1e39, 1.0]])
    x = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match=r"does not fit float32.*dtype=np.float64"):
        m(x)
    np.testing.assert_array_equal(m(x, dtype=np.float64), np.full((4, 1), 1e39 + 1.0))
    with pytest.raises(ValueError, match="does not fit float32"):
        (ops.clip(-1e39, 1e39) @ pm.Mixer([[1.0]]))(np.ones((2, 1), np.float32))


def test_an_unmixer_whose_inverse_overflows_is_refused():
    tiny = 5.623413251903491e-155  # the Gram matrix of these endmembers underflows to subnormals
    u = pm.unmixer(np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]) * tiny, nonneg=True)
    with pytest.raises(ValueError, match="not finite.*rescale"):
        u(np.full((4, 4, 3), tiny), dtype=np.float64)


@pytest.mark.parametrize("out_dtype", [np.uint16, np.int16])
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_integer_output_is_the_exactly_rounded_float64_result(rng, out_dtype, backend):
    """Partial sums past 2**24: a float32 accumulation would be off by up to 4."""
    x = rng.integers(0, 2**16, size=(2000, 3), dtype=np.uint16)
    x[:4] = [[65535, 0, 0], [0, 65535, 65535], [1, 1, 1], [2, 0, 1]]
    m = pm.Mixer([[1024.25, -1024.25, 1.0]], [30000.0])
    # Exact: 4 * value is an integer; halves round to even.
    w = x.astype(np.int64)
    four = 4097 * w[:, 0] - 4097 * w[:, 1] + 4 * w[:, 2] + 120000
    info = np.iinfo(out_dtype)
    want = np.clip(np.rint(four / 4.0), info.min, info.max).astype(out_dtype)[:, None]
    got = m(x, dtype=out_dtype, backend=backend)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(m(np.ascontiguousarray(x.T), channel_axis=0, dtype=out_dtype, backend=backend).T, want)


def _unprivileged():
    """((uid, gid) of 'nobody', None) when this test can run Python as that user, else (None, why)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None, "switching to another user needs root"
    try:
        import pwd

        entry = pwd.getpwnam("nobody")
    except (ImportError, KeyError):
        return None, "there is no user 'nobody'"
    # The interpreter and its standard library must be readable by that user.
    for folder in (Path(sys.base_prefix), Path(sys.executable).resolve().parent):
        for part in [folder, *folder.parents]:
            mode = part.stat().st_mode
            if not mode & 0o001:
                return None, f"'nobody' cannot enter {part}, where this Python is installed"
    return (entry.pw_uid, entry.pw_gid), None


_CACHE_SCRIPT = (
    "import numpy as np, pixelmix as pm\n"
    "from pixelmix import kernels\n"
    "y = pm.Mixer([[1.0, 2.0]])(np.ones((3, 2), np.float32))\n"
    "assert y.tolist() == [[3.0]] * 3, y\n"
    "print(kernels.CACHE_FALLBACK)\n"
)


def test_a_private_cache_is_used_when_no_cache_directory_is_writable(tmp_path):
    """What happens without a writable package or home directory, simulated for a root process."""
    script = (
        "import os, sys, tempfile\n"
        f"tempfile.tempdir = {str(tmp_path)!r}\n"
        "import pixelmix.kernels as k\n"
        "k._writable = lambda folder: False\n"
        "folder = k.ensure_cache_dir()\n"
        "import numpy as np, pixelmix as pm\n"
        # RGB to one channel: the smallest kernel to compile (kernels/cpu_pixels.py)
        "assert pm.Mixer([[1.0, 2.0, 3.0]])(np.ones((3, 3), np.float32)).tolist() == [[6.0]] * 3\n"
        "print(folder)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    folder = Path(out.stdout.strip())
    assert folder.parent == tmp_path and folder.name.startswith("pixelmix-numba-cache")
    assert any(folder.rglob("*.nbi")), "Numba wrote no cache index there"


_USER, _WHY_NOT = _unprivileged()


@pytest.mark.skipif(_USER is None, reason=f"cannot run Python as an unprivileged user here: {_WHY_NOT}")
def test_runs_as_a_user_with_no_home_and_a_read_only_install(tmp_path):
    """No writable package directory and no home: kernels compile with a cache in a temporary directory."""
    uid, gid = _USER
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    env.update(HOME="/nonexistent", XDG_CACHE_HOME="/nonexistent/.cache", PYTHONDONTWRITEBYTECODE="1")

    def demote():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    out = subprocess.run(
        [sys.executable, "-c", _CACHE_SCRIPT], cwd="/", env=env, capture_output=True, text=True, timeout=600,
        preexec_fn=demote,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "pixelmix-numba-cache" in out.stdout


def test_openmp_threads_wait_passively_unless_the_user_chose():
    script = "import os, pixelmix; print(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "PASSIVE", out.stderr
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ACTIVE", out.stderr
