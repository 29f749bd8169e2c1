"""Spillover (crosstalk) spectra from single-stain controls, and autofluorescence from an unstained one.

In multiplexed fluorescence every dye shows up in several channels. A
single-stain control (a sample stained with one dye, imaged with every
channel) shows that dye's signature: its spectrum over the channels. With
one control per dye, unmixing each pixel over those signatures removes the
crosstalk; an unstained control adds the sample's own autofluorescence as
one more endmember.

Each control gives its signature by these rules (the same for the
unstained control):

1. pixels with NaN or ``nodata`` in any channel are dropped; so are
   saturated pixels: any channel at the maximum of the image's integer
   dtype, or at that channel's maximum over the whole control (a clipped
   detector piles pixels up there; in an unclipped control this drops only
   the few brightest pixels);
2. the background (camera offset, stray light) is, per channel, the median
   over the dim pixels: those whose total over the channels is at most the
   ``dim_percentile`` percentile; it is subtracted from every pixel;
3. the bright pixels are those whose background-subtracted total is at
   least the ``bright_percentile`` percentile; each is divided by its
   total (so bright and less bright pixels weigh alike), and the signature
   is the per-channel median of those shapes, negative values set to zero,
   scaled so that its largest channel is 1 (an abundance is then the dye's
   intensity in its brightest channel);
4. a control whose bright pixels are not clearly above its background is
   an error (it holds no usable signature): their median total must exceed
   ``MIN_CONTRAST`` times the noise of the totals, measured on the lower
   half of the pixels (median minus 15.9th percentile: one standard
   deviation of a Gaussian background). Pure noise reaches about 3.

The controls are read through :mod:`pixelmix.learn.source` blocks (arrays,
memory maps, TIFF paths, Dask arrays, lists of them), keeping a fixed
subsample of at most ``sample`` pixels for the percentiles and medians.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .gather import gather_source
from .source import Source
from .unmix import unmixer

__all__ = ["spillover_spectra", "fit_spillover", "AUTOFLUORESCENCE"]

AUTOFLUORESCENCE = "autofluorescence"
# The bright pixels' median total must exceed this many times the noise of
# the totals (in a control of pure noise it is about 2.9 times).
MIN_CONTRAST = 5.0
# At most this many values (pixels x channels) of a control are held at once.
MAX_VALUES = 2**24


@dataclass
class _ControlPixels:
    """A mergeable subsample of a control's valid pixels, and every channel's maximum."""

    rows: np.ndarray  # (m, C) float64
    channel_max: np.ndarray  # (C,) over all valid pixels

    def merge(self, other: "_ControlPixels") -> "_ControlPixels":
        return _ControlPixels(
            np.concatenate([self.rows, other.rows]), np.fmax(self.channel_max, other.channel_max)
        )


def _control_block(block, stride: int, nodata) -> _ControlPixels:
    values, axis = block.values, block.channel_axis
    C = values.shape[axis]
    rows = np.moveaxis(values, axis, -1).reshape(-1, C)
    valid = np.ones(len(rows), dtype=bool)
    if values.dtype.kind == "f":
        valid &= np.isfinite(rows).all(axis=1)
    if nodata is not None:
        valid &= ~(rows == nodata).any(axis=1)
    rows = rows[valid]
    top = rows.max(axis=0).astype(np.float64) if len(rows) else np.full(C, -np.inf)
    kept = rows[block.number % stride :: stride].astype(np.float64)
    return _ControlPixels(kept, top)


def _signature(name: str, control, channel_axis, nodata, dim_percentile, bright_percentile, sample):
    """The normalised signature of one control, by the rules of the module docstring."""
    source = Source(control, channel_axis)
    C = source.parts[0].n_channels
    total = sum(math.prod(p.spatial_shape) for p in source.parts)
    limit = max(1, min(sample, MAX_VALUES // max(C, 1)))
    stride = max(1, math.ceil(total / limit))
    pixels = gather_source(source, lambda b: _control_block(b, stride, nodata))
    x = pixels.rows
    if len(x) == 0:
        raise ValueError(f"the control for {name!r} has no valid pixels (all NaN or nodata)")
    saturated = (x >= pixels.channel_max).any(axis=1)
    dtype = source.parts[0].dtype
    if dtype.kind in "iu":
        saturated |= (x >= np.iinfo(dtype).max).any(axis=1)
    x = x[~saturated]
    if len(x) < 10:
        raise ValueError(
            f"the control for {name!r} has only {len(x)} unsaturated pixels; image it with a "
            f"shorter exposure or lower gain"
        )
    brightness = x.sum(axis=1)
    dim = brightness <= np.percentile(brightness, dim_percentile)
    background = np.median(x[dim], axis=0)
    signal = x - background
    totals = signal.sum(axis=1)
    bright = totals >= np.percentile(totals, bright_percentile)
    bright &= totals > 0
    noise = np.median(totals) - np.percentile(totals, 100 * 0.158655)
    level = np.median(totals[bright]) if bright.any() else 0.0
    if not bright.any() or level <= MIN_CONTRAST * noise:
        raise ValueError(
            f"the control for {name!r} shows no signal above its background: its brightest "
            f"{100 - bright_percentile:g}% of pixels total {level:.3g} over the background, against "
            f"a noise of {noise:.3g}; check that it is the right image, or raise "
            f"bright_percentile if the stained structures cover less of it"
        )
    shape = np.median(signal[bright] / totals[bright, None], axis=0)
    shape = np.maximum(shape, 0.0)
    return shape / shape.max(), background


def _check_percentiles(dim_percentile: float, bright_percentile: float) -> None:
    if not 0 < dim_percentile < bright_percentile < 100:
        raise ValueError(
            f"need 0 < dim_percentile < bright_percentile < 100, got dim_percentile={dim_percentile} "
            f"and bright_percentile={bright_percentile}"
        )


def spillover_spectra(
    references: Mapping[str, Any],
    *,
    channel_axis: int = -1,
    background=None,
    nodata=None,
    dim_percentile: float = 25.0,
    bright_percentile: float = 90.0,
    sample: int = 1_000_000,
) -> tuple[np.ndarray, list[str]]:
    """The dyes' (and the autofluorescence's) signatures from single-stain controls.

    Parameters
    ----------
    references : mapping of str to image
        Dye name -> its single-stain control: an ndarray, np.memmap, TIFF
        path, Dask array or a list of them, all with the same channels.
    channel_axis : int
        The channel axis of array controls (TIFF files: the file's own).
    background : image, optional
        An unstained control: adds an "autofluorescence" endmember.
    nodata : number, optional
        Pixels with any channel equal to this are ignored (as are NaN pixels).
    dim_percentile, bright_percentile : float
        Pixels at most the first percentile of total intensity define the
        background; pixels at least the second give the signature.
    sample : int
        At most this many pixels of each control are used (a fixed, evenly
        spread subsample).

    Returns
    -------
    spectra : ndarray of float64, shape (K, C)
        One signature per row, largest channel 1: the dyes in the order of
        ``references``, then the autofluorescence.
    names : list of str
        The dye names, then "autofluorescence".

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.spillover import spillover_spectra
    >>> rng = np.random.default_rng(0)
    >>> def control(spectrum):
    ...     amount = rng.exponential(500, size=(64, 64, 1)) * (rng.random((64, 64, 1)) < 0.3)
    ...     return 100 + amount * spectrum + rng.normal(0, 2, size=(64, 64, 3))
    >>> spectra, names = spillover_spectra({"A": control(np.array([1.0, 0.3, 0.0])),
    ...                                     "B": control(np.array([0.0, 0.5, 1.0]))})
    >>> names, np.round(spectra, 2).tolist()
    (['A', 'B'], [[1.0, 0.3, 0.0], [0.0, 0.5, 1.0]])
    """
    spectra, names, _ = _calibrate(
        references, channel_axis, background, nodata, dim_percentile, bright_percentile, sample
    )
    return spectra, names


def _calibrate(references, channel_axis, background, nodata, dim_percentile, bright_percentile, sample):
    """``(spectra, names, backgrounds)``: :func:`spillover_spectra` and each control's background level."""
    if not isinstance(references, Mapping) or not references:
        raise TypeError(
            "references must be a non-empty mapping of dye name to its single-stain control, "
            "e.g. {'DAPI': 'dapi_only.tif', 'FITC': fitc_image}"
        )
    _check_percentiles(dim_percentile, bright_percentile)
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < 10:
        raise ValueError(f"sample={sample!r} must be an integer number of pixels, at least 10")
    names = [str(n) for n in references]
    if AUTOFLUORESCENCE in names and background is not None:
        raise ValueError(f"a dye is called {AUTOFLUORESCENCE!r}, the name of the background's endmember; rename it")
    controls = list(references.values())
    if background is not None:
        names.append(AUTOFLUORESCENCE)
        controls.append(background)
    spectra, backgrounds = [], []
    for name, control in zip(names, controls):
        spectrum, level = _signature(
            name, control, channel_axis, nodata, dim_percentile, bright_percentile, int(sample)
        )
        spectra.append(spectrum)
        backgrounds.append(level)
    channels = [len(s) for s in spectra]
    if len(set(channels)) > 1:
        listing = ", ".join(f"{n}: {c}" for n, c in zip(names, channels))
        raise ValueError(f"the controls must all have the same channels, got {listing}")
    return np.stack(spectra), names, np.stack(backgrounds)


def fit_spillover(
    references: Mapping[str, Any],
    *,
    channel_axis: int = -1,
    background=None,
    nonneg: bool = True,
    residual: bool = False,
    nodata=None,
    dim_percentile: float = 25.0,
    bright_percentile: float = 90.0,
    sample: int = 1_000_000,
):
    """An unmixer that removes the crosstalk between dyes, calibrated on single-stain controls.

    The signatures come from :func:`spillover_spectra` (its rules are in
    :mod:`pixelmix.learn.spillover`); the unmixer gives per pixel the
    amount of each dye (and of autofluorescence with ``background``), as
    the dye's intensity in its brightest channel.

    Parameters
    ----------
    references : mapping of str to image
        Dye name -> its single-stain control (array, memmap, TIFF path, Dask array).
    channel_axis : int
        The channel axis of array controls.
    background : image, optional
        An unstained control: adds an "autofluorescence" output.
    nonneg : bool
        Non-negative amounts (NNLS per pixel, the default); False gives
        plain least squares.
    residual : bool
        Append the per-pixel RMS residual as an output channel.
    nodata, dim_percentile, bright_percentile, sample
        As in :func:`spillover_spectra`.

    Returns
    -------
    Mixer or Unmixer
        As :func:`pixelmix.unmixer` returns; outputs "abundance:<dye>".
        ``metadata["spillover"]`` holds the (K, C) signatures and
        ``metadata["background"]`` the median over the controls of their
        per-channel background levels. The unmixer expects
        background-subtracted pixels: for images with the controls' camera
        offset, run ``pm.Program([pm.Mixer(np.eye(C), -background), u])``.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.spillover import fit_spillover
    >>> rng = np.random.default_rng(0)
    >>> a, b = np.array([1.0, 0.3, 0.0]), np.array([0.0, 0.5, 1.0])
    >>> def control(spectrum):
    ...     amount = rng.exponential(500, size=(64, 64, 1)) * (rng.random((64, 64, 1)) < 0.3)
    ...     return 100 + amount * spectrum + rng.normal(0, 2, size=(64, 64, 3))
    >>> u = fit_spillover({"A": control(a), "B": control(b)})
    >>> u.output_names
    ('abundance:A', 'abundance:B')
    >>> np.round(u(200 * a + 50 * b), 0)
    array([200.,  50.])
    """
    spectra, names, backgrounds = _calibrate(
        references, channel_axis, background, nodata, dim_percentile, bright_percentile, sample
    )
    step = unmixer(spectra, nonneg=nonneg, residual=residual, names=names)
    step.metadata["spillover"] = spectra.tolist()
    step.metadata["background"] = np.median(backgrounds, axis=0).tolist()
    return step
