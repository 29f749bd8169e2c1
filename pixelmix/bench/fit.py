"""``pixelmix bench --suite fit``: PCA fit time and peak memory, side by side.

Two workloads, each fitted by ``pixelmix.fit_pca``, scikit-learn's
``PCA(svd_solver="covariance_eigh")`` (its fastest solver for many pixels
and few bands: one Gram product and a small eigendecomposition) and
Spectral Python's ``principal_components`` where installed, all for
``N_COMPONENTS`` components:

- *in memory*: a float32 cube Y x X x C of 1024 x 1024 x 128 (1M pixels x
  128 bands, 512 MiB; ``quick``: 256 x 256 x 64; ``tiny``: 16 x 16 x 8).
  scikit-learn fits the (pixels, C) view as it is (float32: its covariance
  is float32, pixelmix's float64); Spectral Python fits the cube.
- *streamed*: a uint16 channels-first TIFF of 128 bands and
  ``PIXELMIX_BENCH_FIT_GB`` GiB (default 1; ``quick``: 0.03; ``tiny``:
  about 0.5 MiB of 16 bands). pixelmix streams the file in slabs; the
  anchor is *just reading the file* (in 64 MiB pieces): the goal is a fit at
  no less than 70% of that speed. The others read it whole
  (``tifffile.imread``, then a float32 (pixels, C) array, the least they
  need), which is also timed alone. The file was just written, so every
  row reads it from the page cache. Each fit runs once more in a subprocess
  whose private resident memory (``RssAnon``: the memory-mapped file's
  pages are page cache) is sampled: that is the "peak MB" of the fits. The
  others are skipped above ``PIXELMIX_BENCH_FIT_OTHERS_GB`` (default 2) GiB.

The other fits run on the same in-memory cube, each beside its strongest
anchor and beside scikit-learn's ``covariance_eigh`` PCA of that cube (the
bar the issue sets for every fit): MNF (noise from diagonal neighbours)
against Spectral Python's ``mnf``; LDA of 5 classes drawn at random on 60%
of the pixels against scikit-learn's ``LinearDiscriminantAnalysis(solver=
"eigen")``; least squares from the 128 bands to 3 channels against
scikit-learn's ``Ridge(solver="cholesky")`` (the normal equations: its
fastest least squares for many pixels) and ``LinearRegression``.

Last, a pipeline row: a BLAS matmul (1536 x 1536 float32) alone and right
after ``fit_pca`` of the in-memory cube, with no pause between them: the
fit's own BLAS calls (its small eigh) must leave no BLAS threads spinning.

Run the streamed memory check alone, at any size, with
``python -m pixelmix.bench.fit --gb 4`` (it prints time and memory of each).
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
import warnings
from pathlib import Path

import numpy as np

from . import Case, Impl, not_installed, optional, share_of, slowdown, speedup

N_COMPONENTS = 8
PIECE = 64 * 2**20
# scikit-learn keeps float32 data in float32, moments included; pixelmix and Spectral
# Python accumulate in float64, so their components agree with each other far better.
FLOAT32 = " (scikit-learn's moments of float32 data are float32)"
CUBES = {"full": (1024, 1024, 128), "quick": (256, 256, 64), "tiny": (16, 16, 8)}
# The side of the matmul timed alone and right after a fit.
MATMUL = {"full": 1536, "quick": 384, "tiny": 32}
# size -> (GiB of the streamed TIFF, its bands)
STACKS = {"quick": (0.03, 128), "tiny": (2**-11, 16)}


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


def make_stack(path: Path, gib: float, bands: int = 128) -> tuple[int, int, int]:
    """A uint16 CYX OME-TIFF of about ``gib`` GiB, written plane by plane; returns its shape.

    Each band mixes ``N_COMPONENTS + 2`` hashed fields of the pixel index with
    amplitudes falling by 0.6 per field, plus a small per-band pattern: the
    leading components are well separated, so every solver finds the same
    ones and their differences measure precision, not degeneracy.
    """
    from ..io.write import create_stack

    side = max(8, int(np.sqrt(gib * 2**30 / (2 * bands))))
    shape = (bands, side, side)
    out = create_stack(path, shape=shape, dtype=np.uint16, axes="CYX")
    i = np.arange(side * side, dtype=np.uint64)
    rng = np.random.default_rng(0)
    n_fields = N_COMPONENTS + 2
    fields = []
    for mult in rng.integers(2**31, 2**32, size=n_fields) | 1:
        fields.append((((i * np.uint64(mult)) >> np.uint64(13)) & np.uint64(0xFFF)).astype(np.float32))
    # Amplitudes sum to under 4 x 4095 around 25000: the values stay inside uint16.
    weights = rng.uniform(-1, 1, size=(bands, n_fields)) * 1.5 * 0.6 ** np.arange(n_fields)
    for k in range(bands):
        plane = np.full(side * side, 25000, dtype=np.float32)
        for j, field in enumerate(fields):
            plane += np.float32(weights[k, j]) * field
        plane += ((i * np.uint64(k + 7)) >> np.uint64(5) & np.uint64(0x3F)).astype(np.float32)  # per-band pattern
        out[k] = np.clip(plane, 0, 65535).reshape(side, side).astype(np.uint16)
    out.flush()
    del out
    return shape


def _signed(w) -> np.ndarray:
    """Components with the largest-magnitude loading of each made positive (pixelmix's convention)."""
    w = np.asarray(w, dtype=float)
    return w * np.sign(w[np.arange(len(w)), np.abs(w).argmax(1)])[:, None]


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
    """Fit in a subprocess; return seconds (imports included), peak RssAnon (MB) and the components."""
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


PCA_BAR = "sklearn PCA covariance_eigh"


def _pca_bar(case: Case, flat: np.ndarray) -> bool:
    """Add scikit-learn's covariance_eigh PCA of ``flat`` to ``case`` (or say it is missing); whether it was added."""
    if optional("scikit-learn") is None:
        case.missing[PCA_BAR] = not_installed("scikit-learn")
        return False
    from sklearn.decomposition import PCA

    case.impls[PCA_BAR] = Impl(lambda: PCA(N_COMPONENTS, svd_solver="covariance_eigh").fit(flat), "sklearn")
    return True


def _in_memory_case(cube: np.ndarray) -> Case:
    import pixelmix as pm

    shape = cube.shape
    flat = cube.reshape(-1, shape[2])
    impls = {"pixelmix fit_pca": Impl(lambda: pm.fit_pca(cube, N_COMPONENTS), "pixelmix")}
    case = Case(name=f"PCA fit, {N_COMPONENTS} of {shape[2]} bands, float32 cube "
                     f"{'x'.join(map(str, shape))} ({shape[0] * shape[1]} pixels) in memory",
                impls=impls, bytes_moved=cube.nbytes)
    ours = pm.fit_pca(cube, N_COMPONENTS).weights
    if _pca_bar(case, flat):
        from sklearn.decomposition import PCA

        theirs = _signed(PCA(N_COMPONENTS, svd_solver="covariance_eigh").fit(flat).components_)
        case.notes.append(f"max |pixelmix - sklearn| over the components: {np.abs(ours - theirs).max():.1e}{FLOAT32}")
        case.summarize = lambda t: [speedup(t, "pixelmix fit_pca", PCA_BAR, 1.0)]
    if optional("Spectral Python") is None:
        case.missing["spectral principal_components"] = not_installed("Spectral Python")
    else:
        from spectral import principal_components

        impls["spectral principal_components"] = Impl(lambda: principal_components(cube), "spectral")
    return case


def _other_fit_cases(cube: np.ndarray) -> list[Case]:
    """MNF, LDA and least squares on ``cube``, each beside its anchors and the PCA bar."""
    import pixelmix as pm

    rng = np.random.default_rng(1)
    y, x, c = cube.shape
    flat = cube.reshape(-1, c)
    labels = np.zeros((y, x), dtype=np.int64)
    labels[:, : x * 6 // 10] = rng.integers(1, 6, (y, x * 6 // 10))
    labelled = labels.reshape(-1) > 0
    target = (flat[:, :3] @ rng.standard_normal((3, 3)).astype(np.float32) + flat[:, 3:6]).reshape(y, x, 3)
    size = f"{'x'.join(map(str, cube.shape))} float32 cube in memory"
    specs = [
        ("MNF", f"MNF fit, {N_COMPONENTS} components, {size} (noise from diagonal neighbours)",
         "pixelmix fit_mnf", lambda: pm.fit_mnf(cube, N_COMPONENTS),
         [("spectral mnf (calc_stats, noise_from_diffs)", "Spectral Python", "spectral", _spectral_mnf(cube))]),
        ("LDA", f"LDA fit, 5 classes at random on {int(labelled.sum())} of {y * x} pixels, {size}",
         "pixelmix fit_lda", lambda: pm.fit_lda(cube, labels),
         [("sklearn LDA eigen", "scikit-learn", "sklearn", _sklearn_lda(flat[labelled], labels.reshape(-1)[labelled]))]),
        ("least squares", f"least squares {c} -> 3 channels with intercept, {size}",
         "pixelmix fit_lstsq", lambda: pm.fit_lstsq(cube, target),
         [("sklearn Ridge cholesky", "scikit-learn", "sklearn", _sklearn_ridge(flat, target.reshape(-1, 3))),
          ("sklearn LinearRegression", "scikit-learn", "sklearn", _sklearn_linreg(flat, target.reshape(-1, 3)))]),
    ]
    cases = []
    for what, name, ours, fit, anchors in specs:
        case = Case(name=name, impls={ours: Impl(fit, "pixelmix")}, bytes_moved=cube.nbytes)
        for label, library, owner, fn in anchors:
            if fn is None:
                case.missing[label] = not_installed(library)
            else:
                case.impls[label] = Impl(fn, owner)
        _pca_bar(case, flat)
        case.notes.append(f"{PCA_BAR}: the same cube's PCA, the bar set for every fit ({what} included)")

        def summarize(t, ours=ours, anchors=[a[0] for a in anchors if a[3] is not None]):
            lines = [speedup(t, ours, label) for label in anchors]
            return lines + ([speedup(t, ours, PCA_BAR, 1.0)] if PCA_BAR in t else [])

        case.summarize = summarize
        cases.append(case)
    return cases


def _spectral_mnf(cube):
    if optional("Spectral Python") is None:
        return None
    import spectral

    return lambda: spectral.mnf(spectral.calc_stats(cube), spectral.noise_from_diffs(cube))


def _sklearn_lda(x, y):
    if optional("scikit-learn") is None:
        return None
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    return lambda: LinearDiscriminantAnalysis(solver="eigen").fit(x, y)


def _sklearn_ridge(x, y):
    if optional("scikit-learn") is None:
        return None
    from sklearn.linear_model import Ridge

    def fit():
        # The cube is nearly of rank 12 (see _cube): SciPy warns on every solve of its normal equations.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Ridge(alpha=1e-6, solver="cholesky").fit(x, y)

    return fit


def _sklearn_linreg(x, y):
    if optional("scikit-learn") is None:
        return None
    from sklearn.linear_model import LinearRegression

    return lambda: LinearRegression().fit(x, y)


def _stack(gib: float, bands: int, workdir=None) -> tuple[Path, tuple[int, int, int]]:
    work = Path(tempfile.mkdtemp(prefix="pixelmix-bench-fit-", dir=workdir or os.environ.get("PIXELMIX_BENCH_DIR")))
    atexit.register(shutil.rmtree, work, True)
    path = work / "stack.ome.tif"
    return path, make_stack(path, gib, bands)


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


def _others(gib: float, others_below_gib: float) -> list[str]:
    if gib > others_below_gib:
        return []
    return [name for name, label in (("sklearn", "scikit-learn"), ("spectral", "Spectral Python"))
            if optional(label) is not None]


def streamed_report(gib: float, others_below_gib: float = 2.0, workdir: Path | None = None, bands: int = 128) -> list[str]:
    """Write a TIFF of ``gib`` GiB, fit it with each implementation in a subprocess, describe."""
    path, shape = _stack(gib, bands, workdir)
    names = ["pixelmix", *_others(gib, others_below_gib)]
    results = {name: [run_child(name, path, N_COMPONENTS)] for name in names}
    lines = _describe(path, shape, results)
    if len(names) == 1:
        lines.append(f"(others skipped above {others_below_gib} GiB or not installed: they load the file whole)")
    return lines


def read_pieces(path: Path, piece: int = PIECE) -> int:
    """Read the whole file in ``piece``-byte pieces into one buffer; return the bytes read."""
    buf = bytearray(piece)
    total = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
    return total


def _streamed_case(size: str) -> Case:
    import pixelmix as pm
    import tifffile

    if size == "full":
        gib, bands = float(os.environ.get("PIXELMIX_BENCH_FIT_GB", "1")), 128
    else:
        gib, bands = STACKS[size]
    others_below = float(os.environ.get("PIXELMIX_BENCH_FIT_OTHERS_GB", "2"))
    path, shape = _stack(gib, bands)
    nbytes = path.stat().st_size

    def sklearn_fit():
        from sklearn.decomposition import PCA

        a = tifffile.imread(path)
        x = a.reshape(a.shape[0], -1).T.astype(np.float32)
        del a
        return PCA(N_COMPONENTS, svd_solver="covariance_eigh").fit(x)

    def spectral_fit():
        from spectral import principal_components

        a = tifffile.imread(path)
        x = np.moveaxis(a, 0, -1).astype(np.float32)
        del a
        return principal_components(x)

    impls = {
        "pixelmix fit_pca (streamed)": Impl(lambda: pm.fit_pca(path, N_COMPONENTS), "pixelmix"),
        "read the file (64 MiB pieces)": Impl(lambda: read_pieces(path), "python"),
        "tifffile.imread (whole file)": Impl(lambda: tifffile.imread(path), "tifffile"),
    }
    others = _others(gib, others_below)
    if "sklearn" in others:
        impls["sklearn: imread, float32, PCA"] = Impl(sklearn_fit, "sklearn")
    if "spectral" in others:
        impls["spectral: imread, float32, PCA"] = Impl(spectral_fit, "spectral")
    case = Case(name=f"PCA fit, {N_COMPONENTS} of {bands} bands, streamed from a {nbytes / 2**30:.3g} GiB "
                     f"uint16 CYX {'x'.join(map(str, shape))} TIFF", impls=impls, bytes_moved=nbytes)
    for label in ("scikit-learn", "Spectral Python"):
        if optional(label) is None:
            case.missing[f"{label}: imread, float32, PCA"] = not_installed(label)
    if not others and gib > others_below:
        case.notes.append(f"the others are skipped above {others_below} GiB (PIXELMIX_BENCH_FIT_OTHERS_GB): "
                          "they load the file whole")
    results = {name: [run_child(name, path, N_COMPONENTS)] for name in ["pixelmix", *others]}
    labels = {"pixelmix": "pixelmix fit_pca (streamed)", "sklearn": "sklearn: imread, float32, PCA",
              "spectral": "spectral: imread, float32, PCA"}
    case.peak_mb.update({labels[name]: runs[0]["peak_mb"] for name, runs in results.items()})
    ours = np.array(results["pixelmix"][0]["weights"])
    for name in others:
        diff = np.abs(np.array(results[name][0]["weights"]) - ours).max()
        case.notes.append(f"max |components of {name} - pixelmix's|: {diff:.1e}" + (FLOAT32 if name == "sklearn" else ""))
    case.notes.append("peak MB of the fits: private memory (RssAnon) of one more fit in a subprocess; "
                      "pixelmix's goal: a few hundred MB at any file size")
    case.notes.append("every row reads the file from the page cache")
    case.summarize = lambda times: [share_of("pixelmix's fit runs at", times["pixelmix fit_pca (streamed)"],
                                             times["read the file (64 MiB pieces)"], "the speed of reading the file",
                                             "goal: at least 70%")]
    return case


def _pipeline_case(cube: np.ndarray, n: int) -> Case:
    """A BLAS matmul alone and right after a PCA fit (whose small eigh must leave no BLAS threads spinning)."""
    import pixelmix as pm

    a = np.random.default_rng(1).random((n, n), dtype=np.float32)
    blas = f"numpy matmul {n}x{n} float32"
    rows = (f"{blas}, after pixelmix fit_pca", f"{blas}, alone")
    return Case(
        name=f"pipeline: {blas}, alone and right after pixelmix fit_pca",
        impls={rows[1]: Impl(lambda: a @ a, "numpy"),
               rows[0]: Impl(lambda: a @ a, "numpy", before=lambda: pm.fit_pca(cube, N_COMPONENTS))},
        notes=[f"the fit: the {'x'.join(map(str, cube.shape))} cube above; row 2 starts the moment it returns"],
        summarize=lambda t: [slowdown("a BLAS call right after a fit:", t[rows[0]], t[rows[1]], "goal: at most +10%")],
    )


def cases(size: str, backend: str) -> list[Case]:
    cube = _cube(CUBES[size], np.random.default_rng(0))
    return [_in_memory_case(cube), *_other_fit_cases(cube), _streamed_case(size), _pipeline_case(cube, MATMUL[size])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pixelmix.bench.fit",
        description="Fit PCA on a TIFF of the given size, streamed by pixelmix and loaded whole by "
        "scikit-learn and Spectral Python; print time and peak private memory of each.",
    )
    parser.add_argument("--gb", type=float, default=1.0, help="size of the TIFF in GiB (default 1)")
    parser.add_argument("--bands", type=int, default=128, help="bands (channels) of the TIFF (default 128)")
    parser.add_argument("--others-below", type=float, default=2.0,
                        help="run scikit-learn and Spectral Python only up to this size (GiB)")
    args = parser.parse_args(argv)
    for line in streamed_report(args.gb, args.others_below, bands=args.bands):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
