"""``pixelmix bench --suite fit``: PCA fit time and peak memory, side by side.

Two workloads, each fitted by ``pixelmix.fit_pca``, scikit-learn's
``PCA(svd_solver="covariance_eigh")`` and Spectral Python's
``principal_components`` where installed:

- *in memory*: a float32 hyperspectral cube Y x X x C (1024 x 1024 x 96,
  384 MB; ``--quick``: 128 x 128 x 32). scikit-learn fits the (pixels, C)
  view; Spectral Python the cube. "peak MB" is the resident memory each
  call adds.
- *streamed*: a uint16 channels-first TIFF of ``PIXELMIX_BENCH_FIT_GB``
  GiB (default 1; ``--quick``: 0.03), 64 channels, fitted in a subprocess
  per implementation while the subprocess's private resident memory
  (``RssAnon``; the memory-mapped file's pages are page cache) is sampled.
  pixelmix streams the file in slabs (goal: under ~300 MB however large the
  file); the others read it whole (``tifffile.imread``, then a float32
  (pixels, C) copy, the least they need). The notes give each one's peak
  and how far its components are from pixelmix's. The others are skipped
  above ``PIXELMIX_BENCH_FIT_OTHERS_GB`` (default 2) GiB.

Run the streamed check alone, at any size, with
``python -m pixelmix.bench.fit --gb 4`` (it prints the same figures).
Files go to ``$PIXELMIX_BENCH_DIR`` or the temporary directory and are
removed at exit.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from . import Case

N_CHANNELS = 64
N_COMPONENTS = 8


def _cube(shape: tuple[int, int, int], rng) -> np.ndarray:
    """A float32 cube with a decaying spectrum of variances (well separated components)."""
    y, x, c = shape
    k = min(c, 12)
    scores = rng.standard_normal((y * x, k), dtype=np.float32) * np.float32(2.0) ** -np.arange(k, dtype=np.float32)
    loadings = rng.standard_normal((k, c)).astype(np.float32)
    cube = scores @ loadings
    cube += rng.standard_normal(cube.shape, dtype=np.float32) * np.float32(0.01)
    cube += np.float32(1.0)
    return cube.reshape(y, x, c)


def make_stack(path: Path, gib: float) -> tuple[int, int, int]:
    """A uint16 CYX OME-TIFF of about ``gib`` GiB, written plane by plane; returns its shape."""
    from ..tiff import create_stack

    side = int(np.sqrt(gib * 2**30 / (2 * N_CHANNELS)))
    shape = (N_CHANNELS, side, side)
    out = create_stack(path, shape=shape, dtype=np.uint16, axes="CYX")
    i = np.arange(side * side, dtype=np.uint64)
    fields = []
    for mult, shift in ((2654435761, 13), (2246822519, 11), (3266489917, 17)):
        fields.append((((i * np.uint64(mult)) >> np.uint64(shift)) & np.uint64(0xFFF)).astype(np.float32))
    rng = np.random.default_rng(0)
    weights = rng.uniform(-1, 1, size=(N_CHANNELS, 3)) * [4.0, 2.0, 1.0]
    for k in range(N_CHANNELS):
        plane = 20000 + weights[k, 0] * fields[0] + weights[k, 1] * fields[1] + weights[k, 2] * fields[2]
        plane += ((i * np.uint64(k + 7)) >> np.uint64(5) & np.uint64(0x3F)).astype(np.float32)  # per-channel noise
        out[k] = plane.reshape(side, side).astype(np.uint16)
    out.flush()
    del out
    return shape


_CHILD = {
    "pixelmix": "import pixelmix as pm\nm = pm.fit_pca(path, k)\nw = m.weights\n",
    "sklearn": (
        "import tifffile\nfrom sklearn.decomposition import PCA\n"
        "a = tifffile.imread(path)\nx = a.reshape(a.shape[0], -1).T.astype(np.float32)\ndel a\n"
        "w = PCA(k, svd_solver='covariance_eigh').fit(x).components_\n"
    ),
    "spectral": (
        "import tifffile\nfrom spectral import principal_components\n"
        "a = tifffile.imread(path)\nx = np.moveaxis(a, 0, -1).astype(np.float32)\ndel a\n"
        "w = principal_components(x).eigenvectors[:, :k].T.real\n"
    ),
}


def run_child(name: str, path: Path, k: int, interval: float = 0.01) -> dict:
    """Fit in a subprocess; return seconds, peak RssAnon (MB) and the components."""
    code = (
        "import json, sys, time\nimport numpy as np\n"
        f"path, k = {str(path)!r}, {k}\nt0 = time.perf_counter()\n"
        + _CHILD[name]
        + "w = np.asarray(w, float)\nw = w * np.sign(w[np.arange(len(w)), np.abs(w).argmax(1)])[:, None]\n"
        "print(json.dumps({'seconds': time.perf_counter() - t0, 'weights': w.tolist()}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = [0]

    def sample():
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            peak[0] = max(peak[0], int(line.split()[1]))
            except OSError:
                pass
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{name} fit failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["peak_mb"] = peak[0] / 1024
    return result


def _available(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _in_memory_case(quick: bool) -> Case:
    import pixelmix as pm

    shape = (128, 128, 32) if quick else (1024, 1024, 96)
    cube = _cube(shape, np.random.default_rng(0))
    impls = {"pixelmix fit_pca": lambda: pm.fit_pca(cube, N_COMPONENTS)}
    if _available("sklearn"):
        from sklearn.decomposition import PCA

        flat = cube.reshape(-1, shape[2])
        impls["sklearn PCA covariance_eigh"] = lambda: PCA(N_COMPONENTS, svd_solver="covariance_eigh").fit(flat)
    if _available("spectral"):
        from spectral import principal_components

        impls["spectral principal_components"] = lambda: principal_components(cube)
    case = Case(name=f"PCA fit, float32 cube {'x'.join(map(str, shape))} in memory", impls=impls,
                bytes_moved=cube.nbytes)
    if "sklearn PCA covariance_eigh" in impls:
        ours = pm.fit_pca(cube, N_COMPONENTS).weights
        theirs = impls["sklearn PCA covariance_eigh"]().components_
        theirs = theirs * np.sign(theirs[np.arange(N_COMPONENTS), np.abs(theirs).argmax(1)])[:, None]
        case.notes.append(f"max |pixelmix - sklearn| over the components: {np.abs(ours - theirs).max():.1e}")
    return case


def _stack(gib: float, workdir=None) -> tuple[Path, tuple[int, int, int]]:
    work = Path(tempfile.mkdtemp(prefix="pixelmix-bench-fit-", dir=workdir or os.environ.get("PIXELMIX_BENCH_DIR")))
    atexit.register(shutil.rmtree, work, True)
    path = work / "stack.ome.tif"
    return path, make_stack(path, gib)


def _describe(path: Path, shape, results: dict[str, list[dict]]) -> list[str]:
    ours = np.array(results["pixelmix"][-1]["weights"]) if "pixelmix" in results else None
    lines = [f"uint16 CYX {'x'.join(map(str, shape))} TIFF, {path.stat().st_size / 2**30:.2f} GiB, "
             f"{N_COMPONENTS} components; each fit in its own subprocess (time includes imports)"]
    for name, runs in results.items():
        best = min(r["seconds"] for r in runs)
        peak = max(r["peak_mb"] for r in runs)
        line = f"{name:<9} fit {best:7.2f} s (best)   peak private memory {peak:6.0f} MB"
        if ours is not None and name != "pixelmix":
            line += f"   max |components - pixelmix's| {np.abs(np.array(runs[-1]['weights']) - ours).max():.1e}"
        lines.append(line)
    return lines


def streamed_report(gib: float, others_below_gib: float = 2.0, workdir: Path | None = None) -> list[str]:
    """Write a TIFF of ``gib`` GiB, fit it with each implementation in a subprocess, describe."""
    path, shape = _stack(gib, workdir)
    names = ["pixelmix"] + ([n for n in ("sklearn", "spectral") if _available(n)] if gib <= others_below_gib else [])
    results = {name: [run_child(name, path, N_COMPONENTS)] for name in names}
    lines = _describe(path, shape, results)
    if len(names) == 1:
        lines.append(f"(others skipped above {others_below_gib} GiB: they load the file whole)")
    return lines


def _streamed_case(quick: bool) -> Case:
    gib = 0.03 if quick else float(os.environ.get("PIXELMIX_BENCH_FIT_GB", "1"))
    others_below = float(os.environ.get("PIXELMIX_BENCH_FIT_OTHERS_GB", "2"))
    path, shape = _stack(gib)
    names = ["pixelmix"] + ([n for n in ("sklearn", "spectral") if _available(n)] if gib <= others_below else [])
    results: dict[str, list[dict]] = {}
    case = Case(name=f"PCA fit streamed from a {gib:g} GiB uint16 TIFF", impls={},
                bytes_moved=path.stat().st_size)

    def impl(name):
        def fit():
            results.setdefault(name, []).append(run_child(name, path, N_COMPONENTS))
            case.notes[:] = _describe(path, shape, results) + [
                "'peak MB' in the table counts this process only; each fit's own private memory "
                "is in the lines above (pixelmix's goal: under ~300 MB at any file size)"
            ]
        return fit

    case.impls = {f"{name} (subprocess)": impl(name) for name in names}
    return case


def cases(quick: bool, backend: str) -> list[Case]:
    return [_in_memory_case(quick), _streamed_case(quick)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pixelmix.bench.fit",
        description="Fit PCA on a TIFF of the given size, streamed by pixelmix and loaded whole by "
        "scikit-learn and Spectral Python; print time and peak private memory of each.",
    )
    parser.add_argument("--gb", type=float, default=1.0, help="size of the TIFF in GiB (default 1)")
    parser.add_argument("--others-below", type=float, default=2.0,
                        help="run scikit-learn and Spectral Python only up to this size (GiB)")
    args = parser.parse_args(argv)
    for line in streamed_report(args.gb, args.others_below):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
