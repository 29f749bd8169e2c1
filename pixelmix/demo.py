"""``pixelmix demo`` and the sample data it runs on.

:func:`make_samples` writes the small synthetic stacks kept in the
repository's ``data/`` directory (``data/make_samples.py`` calls it), from a
fixed seed, so the same pixels come out every time:

- ``hyperspectral.ome.tif``: a 64-band scene from 400 to 1000 nm, 128 x 128
  pixels, uint16 reflectance x 10000, channels first (``CYX``), with the
  band wavelengths in the OME metadata. Four endmember spectra (vegetation,
  soil, water, roof) mixed by smooth abundance maps that sum to one, plus
  noise. Ground truth in ``hyperspectral_truth.npz`` (``abundances``,
  ``endmembers``, ``wavelengths``, ``names``, ``scale``, ``noise``).
- ``microscopy.ome.tif``: a 4-channel fluorescence stack (``ZCYX``, 3 x 4 x
  256 x 256, uint16), zlib-compressed in 64 x 64 tiles, whose channels see
  each other's dyes (spectral bleed-through). The spillover matrix is in
  ``microscopy_spillover.csv``; the pure dye images in ``microscopy_truth.npz``.

:func:`run_demo` runs the main job on them through the same code as the
command line (fit, apply, write) and checks the results against the truth.
A wheel install has no ``data/``: the samples are then made once into a
cache directory.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import __version__
from .io.read import open_stack
from .jobs.file import process_file
from .learn import estimate_rank, find_endmembers, fit_pca, unmixer
from .mixer import Mixer

__all__ = ["make_samples", "sample_dir", "run_demo", "SAMPLE_FILES"]

SEED = 20240611
SAMPLE_FILES = (
    "hyperspectral.ome.tif",
    "hyperspectral_truth.npz",
    "microscopy.ome.tif",
    "microscopy_spillover.csv",
    "microscopy_truth.npz",
)
ENDMEMBERS = ("vegetation", "soil", "water", "roof")
DYES = ("DAPI", "FITC", "Cy3", "Cy5")
_CACHE_VERSION = "samples-v1"


def _gauss(x, mu, sigma):
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2)


def _endmember_spectra(w: np.ndarray) -> np.ndarray:
    """Reflectance (0..1) of the four endmembers at wavelengths ``w`` (nm)."""
    s = 1 / (1 + np.exp(-(w - 715) / 12))  # the red edge of leaves
    vegetation = 0.04 + 0.06 * _gauss(w, 550, 35) - 0.02 * _gauss(w, 670, 20) + 0.42 * s
    vegetation -= 0.05 * _gauss(w, 970, 25)  # a water band in the leaves
    soil = 0.08 + 0.28 * (w - 400) / 600 - 0.06 * ((w - 700) / 300) ** 2
    water = 0.07 * np.exp(-(w - 400) / 150) + 0.005
    roof = 0.26 + 0.05 * (w - 400) / 600 - 0.04 * _gauss(w, 880, 40)
    return np.stack([vegetation, soil, water, roof])


def _smooth_fields(rng, n: int, shape, blobs: int = 6) -> np.ndarray:
    """``n`` smooth random fields on ``shape``: sums of Gaussian blobs."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    fields = np.zeros((n, *shape))
    for k in range(n):
        for _ in range(blobs):
            cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
            r = rng.uniform(0.08, 0.25) * shape[0]
            fields[k] += rng.uniform(0.5, 1.5) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return fields


def _hyperspectral(rng, directory: Path) -> None:
    import tifffile

    wavelengths = np.linspace(400, 1000, 64)
    endmembers = _endmember_spectra(wavelengths)
    fields = _smooth_fields(rng, len(ENDMEMBERS), (128, 128))
    logits = 4.0 * fields / fields.max()
    abundances = np.exp(logits) / np.exp(logits).sum(axis=0)  # each pixel sums to one
    clean = np.einsum("kyx,kc->cyx", abundances, endmembers)
    noise = 0.004
    noisy = clean + rng.normal(0, noise, clean.shape)
    scale = 10000.0
    stack = np.clip(np.round(noisy * scale), 0, 65535).astype(np.uint16)
    tifffile.imwrite(
        directory / "hyperspectral.ome.tif",
        stack,
        ome=True,
        photometric="minisblack",
        metadata={
            "axes": "CYX",
            "Name": "synthetic hyperspectral scene (pixelmix sample)",
            "Channel": {
                "Name": [f"{w:.1f} nm" for w in wavelengths],
                "EmissionWavelength": [float(w) for w in wavelengths],
                "EmissionWavelengthUnit": ["nm"] * len(wavelengths),
            },
            "PhysicalSizeX": 2.0,
            "PhysicalSizeXUnit": "m",
            "PhysicalSizeY": 2.0,
            "PhysicalSizeYUnit": "m",
        },
    )
    np.savez_compressed(
        directory / "hyperspectral_truth.npz",
        abundances=abundances.astype(np.float32),
        endmembers=endmembers,
        wavelengths=wavelengths,
        names=np.array(ENDMEMBERS),
        scale=scale,
        noise=noise,
    )


def _microscopy(rng, directory: Path) -> None:
    import tifffile

    z, size = 3, 256
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dyes = np.zeros((len(DYES), z, size, size))
    cells = [(rng.uniform(20, size - 20), rng.uniform(20, size - 20)) for _ in range(14)]
    for cy, cx in cells:
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        r = rng.uniform(14, 22)
        for iz in range(z):
            focus = np.exp(-0.5 * ((iz - 1) / 1.2) ** 2)
            dyes[0, iz] += focus * 1.0 * (d2 < (0.45 * r) ** 2)  # nucleus
            dyes[1, iz] += focus * 0.6 * (d2 < r**2) * (d2 >= (0.45 * r) ** 2)  # cytoplasm
            dyes[3, iz] += focus * 0.9 * (np.abs(np.sqrt(d2) - r) < 1.5)  # membrane
    for _ in range(120):  # spots
        cy, cx, iz = rng.uniform(0, size), rng.uniform(0, size), rng.integers(0, z)
        dyes[2, iz] += 1.2 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0)
    dyes = 20000 * dyes + 300  # counts plus camera offset
    # Spillover: detected[c] = sum_d S[c, d] * dye[d] (each dye leaks into its neighbours).
    spill = np.array([
        [1.00, 0.12, 0.02, 0.00],
        [0.25, 1.00, 0.18, 0.02],
        [0.03, 0.30, 1.00, 0.15],
        [0.00, 0.04, 0.35, 1.00],
    ])
    detected = np.einsum("cd,dzyx->zcyx", spill, dyes)
    detected = rng.poisson(np.clip(detected, 0, None)).astype(np.float64)
    stack = np.clip(detected, 0, 65535).astype(np.uint16)
    tifffile.imwrite(
        directory / "microscopy.ome.tif",
        stack,
        ome=True,
        photometric="minisblack",
        tile=(64, 64),
        compression="zlib",
        metadata={
            "axes": "ZCYX",
            "Name": "synthetic fluorescence stack with bleed-through (pixelmix sample)",
            "Channel": {"Name": list(DYES), "EmissionWavelength": [461.0, 519.0, 570.0, 670.0]},
            "PhysicalSizeX": 0.325,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": 0.325,
            "PhysicalSizeYUnit": "µm",
            "PhysicalSizeZ": 1.5,
            "PhysicalSizeZUnit": "µm",
        },
    )
    np.savetxt(directory / "microscopy_spillover.csv", spill, delimiter=",", fmt="%.4f",
               header="rows: detected channel, columns: dye (" + ", ".join(DYES) + ")")
    np.savez_compressed(directory / "microscopy_truth.npz", dyes=dyes.astype(np.float32),
                        spillover=spill, names=np.array(DYES))


def make_samples(directory: str | os.PathLike) -> Path:
    """Write the sample stacks into ``directory`` (created if needed); return it.

    Deterministic: a fixed seed gives the same pixels on every run.

    Examples
    --------
    >>> import tempfile
    >>> from pixelmix.demo import make_samples, SAMPLE_FILES
    >>> d = make_samples(tempfile.mkdtemp())
    >>> sorted(p.name for p in d.iterdir()) == sorted(SAMPLE_FILES)
    True
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    _hyperspectral(rng, directory)
    _microscopy(rng, directory)
    return directory


def _has_samples(directory: Path) -> bool:
    return all((directory / name).is_file() for name in SAMPLE_FILES)


def sample_dir() -> Path:
    """The directory holding the sample stacks, making them first if needed.

    The repository's ``data/`` when pixelmix runs from a checkout; otherwise
    ``$PIXELMIX_DATA``, or a cache directory (``$XDG_CACHE_HOME/pixelmix`` or
    ``~/.cache/pixelmix``), or a temporary directory, where they are made once.
    """
    repo = Path(__file__).resolve().parent.parent / "data"
    if _has_samples(repo):
        return repo
    candidates = []
    if os.environ.get("PIXELMIX_DATA"):
        candidates.append(Path(os.environ["PIXELMIX_DATA"]))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    candidates.append(cache / "pixelmix" / _CACHE_VERSION)
    candidates.append(Path(tempfile.gettempdir()) / f"pixelmix-{_CACHE_VERSION}")
    for directory in candidates:
        if _has_samples(directory):
            return directory
    for directory in candidates:
        try:
            # Make them beside the target, then rename: a crash leaves no half set.
            directory.parent.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(dir=directory.parent, prefix=".samples-"))
            make_samples(work)
            try:
                os.replace(work, directory)
            except OSError:  # another process made them first
                if not _has_samples(directory):
                    raise
            return directory
        except OSError:
            continue
    raise OSError("cannot find or write the sample data; set PIXELMIX_DATA to a writable directory")


def run_demo(out: str | os.PathLike = "pixelmix-demo", *, stream=None) -> int:
    """Run the main job on the sample data, print what it did; return 0.

    Examples
    --------
    >>> import tempfile
    >>> from pixelmix.demo import run_demo
    >>> run_demo(tempfile.mkdtemp(), stream=open(os.devnull, "w"))  # doctest: +SKIP
    0
    """
    stream = sys.stdout if stream is None else stream

    def say(text=""):
        print(text, file=stream, flush=True)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    data = sample_dir()
    say(f"pixelmix {__version__} demo: sample data in {data}")

    # 1. The hyperspectral scene.
    cube = data / "hyperspectral.ome.tif"
    truth = np.load(data / "hyperspectral_truth.npz")
    with open_stack(cube) as s:
        say(f"\n1. {cube.name}: shape {s.shape}, axes {s.axes}, {s.dtype}, {s.n_channels} bands "
            f"from {min(s.wavelengths):.0f} to {max(s.wavelengths):.0f} nm")
        pixels = s.read().astype(np.float64)

    # 2. Learn: PCA, streaming over the file.
    t0 = time.perf_counter()
    pca = fit_pca([str(cube)], 3)
    pca.save(out / "pca3.json")
    ratio = np.asarray(pca.metadata["explained_variance_ratio"])
    say(f"\n2. fit PCA on {cube.name} ({time.perf_counter() - t0:.2f} s): 3 components explain "
        f"{100 * ratio.sum():.2f}% of the variance ({', '.join(f'{100 * r:.1f}%' for r in ratio)})")
    say(f"   saved the mixer to {out / 'pca3.json'}")

    # 3. Apply: reduce 64 bands to 3, and denoise (project and reconstruct) in one pass each.
    reduced = out / "hyperspectral_pca3.ome.tif"
    r = process_file(cube, reduced, pca, overwrite=True)
    say(f"\n3. applied it: {reduced} ({r.bytes_out / 1e6:.1f} MB, {r.seconds:.2f} s)")
    denoiser = pca.pinv() @ pca
    denoised = out / "hyperspectral_denoised.ome.tif"
    process_file(cube, denoised, denoiser, overwrite=True)
    clean = np.einsum("kyx,kc->cyx", truth["abundances"].astype(np.float64), truth["endmembers"])
    clean *= float(truth["scale"])
    with open_stack(denoised) as s:
        restored = s.read().astype(np.float64)
    before = np.sqrt(np.mean((pixels - clean) ** 2))
    after = np.sqrt(np.mean((restored - clean) ** 2))
    say(f"   denoised (PCA project + reconstruct, one pass): {denoised}")
    say(f"   noise vs the clean scene: RMS {before:.1f} -> {after:.1f} ({before / after:.1f}x less)")

    # 4. Unmix with the known endmembers (least squares), check against the truth;
    #    after the PCA denoiser, composed into one map (still one pass).
    endmembers = truth["endmembers"] * float(truth["scale"])  # (4, 64) in file units
    unmix = Mixer(np.linalg.pinv(endmembers.T), output_names=list(ENDMEMBERS),
                     metadata={"method": "unmix", "endmembers": list(ENDMEMBERS)})
    abundance_file = out / "hyperspectral_abundances.ome.tif"
    errors = []
    for mixer in (unmix, unmix @ denoiser):
        process_file(cube, abundance_file, mixer, overwrite=True)
        with open_stack(abundance_file) as s:
            got = s.read()
            names = s.channel_names
        errors.append(np.sqrt(np.mean((got - truth["abundances"]) ** 2, axis=(1, 2))))
    say(f"\n4. unmixed into {', '.join(names)}: {abundance_file}")
    for label, err in zip(("directly", "after PCA denoising (unmix @ denoiser, one map)"), errors):
        say(f"   abundance RMS error vs ground truth, {label}: "
            + ", ".join(f"{n} {e:.3f}" for n, e in zip(ENDMEMBERS, err)))

    # 4b. Constrained unmixing: how many materials (HySime), where they are pure
    #     (N-FINDR), then fully constrained abundances (>= 0, summing to one) with
    #     the residual, solved exactly per pixel.
    rank = estimate_rank([str(cube)])
    found = find_endmembers([str(cube)], len(ENDMEMBERS), method="nfindr")
    angles = [min(_angle(f, e) for f in found) for e in endmembers]
    fcls = unmixer(endmembers, nonneg=True, sum_to_one=True, residual=True, names=ENDMEMBERS)
    fcls_file = out / "hyperspectral_fcls.ome.tif"
    r = process_file(cube, fcls_file, fcls, overwrite=True)
    with open_stack(fcls_file) as s:
        constrained = s.read()
    at_zero = float(np.mean((constrained[: len(ENDMEMBERS)] == 0).any(axis=0)))
    fcls_error = np.sqrt(np.mean((constrained[: len(ENDMEMBERS)] - truth["abundances"]) ** 2, axis=(1, 2)))
    purest = truth["abundances"].reshape(len(ENDMEMBERS), -1).max(axis=1)
    say(f"   estimated number of materials (HySime): {rank}; the purest pixels N-FINDR found are "
        + ", ".join(f"{n} {a:.1f}" for n, a in zip(ENDMEMBERS, angles))
        + f" degrees from the true spectra (no pixel is pure here: abundances reach "
        f"{purest.min():.2f}-{purest.max():.2f}; dark water mixes the most)")
    say(f"   fully constrained (FCLS, exact per pixel, {r.seconds:.2f} s): {fcls_file}; "
        f"{100 * at_zero:.0f}% of pixels have a material at exactly 0")
    say("   abundance RMS error vs ground truth, FCLS: "
        + ", ".join(f"{n} {e:.3f}" for n, e in zip(ENDMEMBERS, fcls_error)))
    figure = out / "abundances.png"
    _save_panels(figure, [truth["abundances"], constrained[: len(ENDMEMBERS)]], lo=0.0, hi=1.0)
    say(f"   picture: {figure} (top row: true abundances of {', '.join(ENDMEMBERS)}; bottom: FCLS)")

    # 5. Fluorescence: undo the bleed-through of a compressed, tiled ZCYX stack.
    stack = data / "microscopy.ome.tif"
    spill = np.loadtxt(data / "microscopy_spillover.csv", delimiter=",")
    dyes = np.load(data / "microscopy_truth.npz")["dyes"]
    compensate = Mixer(np.linalg.inv(spill), output_names=list(DYES),
                          metadata={"method": "spillover compensation"})
    separated = out / "microscopy_unmixed.ome.tif"
    r = process_file(stack, separated, compensate, compression="zlib", overwrite=True)
    with open_stack(stack) as s:
        raw = np.moveaxis(s.read().astype(np.float64), 1, 0)  # (C, Z, Y, X)
        axes = s.axes
    with open_stack(separated) as s:
        fixed = np.moveaxis(s.read().astype(np.float64), 1, 0)
    leak_before = _leak(raw, dyes)
    leak_after = _leak(fixed, dyes)
    say(f"\n5. {stack.name} ({axes}, zlib tiles): crosstalk compensated -> {separated} "
        f"({r.seconds:.2f} s)")
    say(f"   signal from other dyes in each channel: {100 * leak_before:.1f}% -> {100 * leak_after:.2f}%")
    figure = out / "crosstalk.png"
    middle = raw.shape[1] // 2
    _save_panels(figure, [raw[:, middle], fixed[:, middle]])
    say(f"   picture: {figure} (top row: the channels {', '.join(DYES)} as recorded; bottom: compensated)")

    say(f"\ndone in {time.perf_counter() - t_start:.1f} s; outputs in {out.resolve()}")
    say("next: pixelmix info " + str(reduced) + "   |   pixelmix apply --help   |   open the .png pictures")
    return 0


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """Spectral angle between two spectra, in degrees."""
    cosine = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


# A perceptually ordered colour map (viridis at five stops), for pictures without matplotlib.
_STOPS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], float)


def _save_panels(path: Path, rows: list[np.ndarray], lo: float | None = None, hi: float | None = None) -> None:
    """A PNG of images side by side, one row per (N, Y, X) stack, coloured on one scale per column.

    ``lo``/``hi`` fix the scale (default: each column's 1st and 99th percentiles).
    """
    from skimage.io import imsave  # scikit-image writes PNG through imageio: no matplotlib needed

    n, height, width = rows[0].shape
    gap = 4
    canvas = np.full((len(rows) * (height + gap) - gap, n * (width + gap) - gap, 3), 255, np.uint8)
    for j in range(n):
        column = np.stack([np.nan_to_num(row[j].astype(np.float64)) for row in rows])
        a = np.percentile(column, 1) if lo is None else lo
        b = np.percentile(column, 99) if hi is None else hi
        t = np.clip((column - a) / max(b - a, 1e-12), 0, 1) * (len(_STOPS) - 1)
        low = np.minimum(t.astype(int), len(_STOPS) - 2)
        colour = _STOPS[low] + (t - low)[..., None] * (_STOPS[low + 1] - _STOPS[low])
        for i in range(len(rows)):
            y, x = i * (height + gap), j * (width + gap)
            canvas[y : y + height, x : x + width] = np.round(colour[i]).astype(np.uint8)
    imsave(path, canvas, check_contrast=False)


def _leak(channels: np.ndarray, dyes: np.ndarray) -> float:
    """Mean share of each channel's signal explained by the other dyes (least squares)."""
    shares = []
    for c in range(channels.shape[0]):
        y = channels[c].ravel()
        basis = np.stack([d.ravel() for d in dyes] + [np.ones_like(y)], axis=1)
        coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
        own = abs(coef[c]) * np.abs(dyes[c].ravel() - dyes[c].mean()).mean()
        other = sum(
            abs(coef[d]) * np.abs(dyes[d].ravel() - dyes[d].mean()).mean()
            for d in range(dyes.shape[0]) if d != c
        )
        shares.append(other / (own + other))
    return float(np.mean(shares))
