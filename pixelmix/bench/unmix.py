"""The constrained unmixing workloads of ``pixelmix bench --suite unmix``.

A float32 hyperspectral cube, channels last, 32 bands, 4 endmembers
(positive random spectra), abundances drawn from a sparse Dirichlet
distribution with the smallest one of each pixel set to zero (every pixel
lies on a face of the simplex, so with the noise added about half of them
hit a constraint: the solver's slow path), plus noise:

- 1024 x 1024 (1 Mpx): pixelmix FCLS and NNLS (each with the RMS residual
  too), against pixelmix's own unconstrained least squares (an affine map,
  mixing speed) as the floor. The median time is seconds per megapixel.
- the first 8192 pixels of the same cube: pixelmix FCLS and NNLS against a
  Python loop over ``scipy.optimize.nnls`` (NNLS; FCLS as NNLS with the
  sum-to-one row appended with weight 1000, Heinz and Chang's trick, which
  only approaches the constraint), and pysptools' ``FCLS`` and ``NNLS``
  when pysptools is installed. The loops take about a second per few
  thousand pixels, so they run on this subsample: the time per megapixel is
  the median times 128, and the ratios hold at any size.

Quick mode uses 256 x 256 and 1024 pixels.
"""

from __future__ import annotations

import numpy as np

from . import Case

K, C = 4, 32
# Heinz and Chang's weight of the sum-to-one row in FCLS-as-NNLS.
DELTA = 1e3


def _scene(rng, side: int):
    spectra = rng.random((K, C)) + 0.05
    abundances = rng.dirichlet(np.full(K, 0.3), side * side)
    abundances[np.arange(side * side), np.argmin(abundances, axis=1)] = 0.0
    abundances /= abundances.sum(axis=1, keepdims=True)
    cube = abundances @ spectra + 0.01 * rng.standard_normal((side * side, C))
    return spectra, cube.astype(np.float32).reshape(side, side, C)


def _scipy_nnls(nnls, spectra, pixels, sum_to_one: bool):
    a = spectra.T
    if sum_to_one:
        a = np.vstack([a, np.full((1, K), DELTA)])
    out = np.empty((len(pixels), K))
    for i, y in enumerate(pixels.astype(np.float64)):
        if sum_to_one:
            y = np.append(y, DELTA)
        out[i] = nnls(a, y)[0]
    return out


def cases(quick: bool, backend: str) -> list[Case]:
    import pixelmix as pm

    rng = np.random.default_rng(0)
    side, n_small = (256, 1024) if quick else (1024, 8192)
    spectra, cube = _scene(rng, side)
    fcls = pm.unmixer(spectra, nonneg=True, sum_to_one=True)
    fcls_res = pm.unmixer(spectra, nonneg=True, sum_to_one=True, residual=True)
    nnls_u = pm.unmixer(spectra, nonneg=True)
    ls = pm.unmixer(spectra)
    n_px = side * side
    label = f"{n_px / 2**20:g} Mpx" if n_px >= 2**20 else f"{n_px} px"
    out_bytes = n_px * K * 4
    full = Case(
        name=f"unmix float32 {side}x{side}x{C} ({label}) -> {K} abundances",
        impls={
            f"pixelmix FCLS ({backend})": lambda: fcls.apply(cube, backend=backend),
            f"pixelmix FCLS + residual ({backend})": lambda: fcls_res.apply(cube, backend=backend),
            f"pixelmix NNLS ({backend})": lambda: nnls_u.apply(cube, backend=backend),
            f"pixelmix LS, affine ({backend})": lambda: ls.apply(cube, backend=backend),
        },
        bytes_moved=cube.nbytes + out_bytes,
        notes=[f"{100 * np.mean((fcls.apply(cube[:64], backend='cpu') == 0).any(axis=-1)):.0f}% of the pixels "
               f"hit a constraint in FCLS"],
    )
    pixels = np.ascontiguousarray(cube.reshape(-1, C)[:n_small])
    impls = {
        f"pixelmix FCLS ({backend})": lambda: fcls.apply(pixels, backend=backend),
        f"pixelmix NNLS ({backend})": lambda: nnls_u.apply(pixels, backend=backend),
    }
    from scipy.optimize import nnls

    impls["scipy nnls loop, FCLS (delta)"] = lambda: _scipy_nnls(nnls, spectra, pixels, True)
    impls["scipy nnls loop, NNLS"] = lambda: _scipy_nnls(nnls, spectra, pixels, False)
    notes = [f"the loops' time per Mpx is the median x {2**20 // n_small}"]
    try:
        from pysptools.abundance_maps.amaps import FCLS, NNLS
    except ImportError:
        notes.append("pysptools not installed: pip install pysptools cvxopt to compare")
    else:
        impls["pysptools FCLS (cvxopt)"] = lambda: FCLS(pixels.astype(np.float64), spectra)
        impls["pysptools NNLS"] = lambda: NNLS(pixels.astype(np.float64), spectra)
    small = Case(
        name=f"unmix float32 {n_small} px x {C} -> {K}: against per-pixel loops",
        impls=impls,
        bytes_moved=pixels.nbytes + n_small * K * 4,
        notes=notes,
    )
    return [full, small]
