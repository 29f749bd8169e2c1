"""Spillover spectra from single-stain controls: a simulated multi-dye experiment.

Four dyes with overlapping Gaussian emission spectra over six channels, a
broad autofluorescence, a 12-bit camera (offset, read and shot noise,
clipping at 4095 in a uint16 image). Each single-stain control holds
stained cells of varied brightness, many of them clipped in the dye's peak
channel, and a little autofluorescence; the unstained control holds
autofluorescence only. The recovered signatures must match the true ones,
and unmixing a sample stained with all four must recover each dye's amount
where the raw channels mix them.
"""

import dask.array as da
import numpy as np
import pytest
import tifffile

import pixelmix as pm
from pixelmix.learn.spillover import AUTOFLUORESCENCE, fit_spillover, spillover_spectra

CENTRES = np.arange(6) * 50.0 + 450  # channel centres, nm
DYES = {"DAPI": 460.0, "FITC": 520.0, "Cy3": 570.0, "Cy5": 670.0}
OFFSET = 100.0
FULL_WELL = 4095


def emission(peak, width=40.0):
    s = np.exp(-0.5 * ((CENTRES - peak) / width) ** 2)
    return s / s.max()


TRUE = {name: emission(peak) for name, peak in DYES.items()}
TRUE[AUTOFLUORESCENCE] = emission(540.0, width=120.0)


def camera(rng, signal):
    """Shot and read noise, offset, 12-bit clipping, stored as uint16."""
    noisy = OFFSET + signal + rng.normal(0, 1, signal.shape) * np.sqrt(signal + 9.0)
    return np.clip(np.rint(noisy), 0, FULL_WELL).astype(np.uint16)


def cells(rng, shape=(96, 96), n=40, radius=5):
    """A map of cells: 1 inside a random disc, 0 outside; each cell's brightness factor."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    amount = np.zeros(shape)
    for _ in range(n):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        amount[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = rng.lognormal(np.log(2000), 0.7)
    return amount


def control(rng, name):
    """A single-stain control (or the unstained one, for AUTOFLUORESCENCE)."""
    amount = cells(rng)
    af = 0.02 * (amount > 0) * 2000
    if name == AUTOFLUORESCENCE:
        signal = 0.1 * (amount > 0)[..., None] * 2000 * TRUE[AUTOFLUORESCENCE]
    else:
        signal = amount[..., None] * TRUE[name] + af[..., None] * TRUE[AUTOFLUORESCENCE]
    return camera(rng, signal)


@pytest.fixture(scope="module")
def controls():
    rng = np.random.default_rng(2024)
    refs = {name: control(rng, name) for name in DYES}
    return refs, control(rng, AUTOFLUORESCENCE)


def test_the_simulated_controls_are_clipped(controls):
    refs, _ = controls
    for name, image in refs.items():
        peak = int(np.argmax(TRUE[name]))
        assert (image[..., peak] == FULL_WELL).sum() > 100, name


def test_signatures_match_the_true_spectra(controls):
    refs, unstained = controls
    spectra, names = spillover_spectra(refs, background=unstained)
    assert names == ["DAPI", "FITC", "Cy3", "Cy5", AUTOFLUORESCENCE]
    assert spectra.shape == (5, 6) and spectra.dtype == np.float64
    for row, name in zip(spectra, names):
        assert row.max() == 1.0 and (row >= 0).all()
        np.testing.assert_allclose(row, TRUE[name], atol=0.03, err_msg=name)


def test_clipped_pixels_would_have_bent_the_signatures(controls):
    """From the very brightest pixels, mostly clipped, only the saturation rule saves the signature."""
    refs, _ = controls
    for name, image in refs.items():
        # 12 bits in uint16: the clipped pixels are at the channel's maximum, not the dtype's
        spectra, _ = spillover_spectra({name: image}, bright_percentile=98)
        np.testing.assert_allclose(spectra[0], TRUE[name], atol=0.03, err_msg=name)
        as_float, _ = spillover_spectra({name: image.astype(np.float32)}, bright_percentile=98)
        np.testing.assert_allclose(as_float, spectra)
    # the clipped values spread a little above 4095 hide the clipping from the rule
    bent = refs["FITC"].astype(np.float64)
    clipped = bent == FULL_WELL
    bent[clipped] += np.random.default_rng(0).random(clipped.sum())
    spectra, _ = spillover_spectra({"FITC": bent}, bright_percentile=98)
    assert np.abs(spectra[0] - TRUE["FITC"]).max() > 0.05


def test_unmixing_a_four_dye_sample_removes_the_crosstalk(controls):
    refs, unstained = controls
    u = fit_spillover(refs, background=unstained)
    assert u.output_names == tuple(f"abundance:{n}" for n in [*DYES, AUTOFLUORESCENCE])
    background = np.asarray(u.metadata["background"])
    np.testing.assert_allclose(background, OFFSET, atol=3.0)
    rng = np.random.default_rng(7)
    amounts = np.stack([cells(rng, n=25) for _ in DYES], axis=-1) * 0.5  # (H, W, 4), overlapping cells
    af = 100.0 * rng.random(amounts.shape[:2])
    signal = amounts @ np.stack([TRUE[n] for n in DYES]) + af[..., None] * TRUE[AUTOFLUORESCENCE]
    sample = camera(rng, signal)
    unclipped = (sample < FULL_WELL).all(axis=-1)
    program = pm.Program([pm.Mixer(np.eye(6), -background), u])
    got = program(sample)
    assert got.shape == (96, 96, 5) and (got >= 0).all()
    for k, name in enumerate(DYES):
        error = np.abs(got[..., k] - amounts[..., k])[unclipped]
        crosstalk = np.abs(sample[..., int(np.argmax(TRUE[name]))] - OFFSET - amounts[..., k])[unclipped]
        # the raw peak channel mixes in the neighbours' dyes; the unmixed amount does not
        assert np.mean(error) < 0.25 * np.mean(crosstalk), name
        stained = unclipped & (amounts[..., k] > 300)
        assert stained.sum() > 100
        relative = np.abs(got[..., k] - amounts[..., k])[stained] / amounts[..., k][stained]
        assert np.median(relative) < 0.05 and np.percentile(relative, 90) < 0.15, name


def test_controls_from_files_dask_and_channel_axes(controls, tmp_path):
    refs, unstained = controls
    want, _ = spillover_spectra(refs)
    path = tmp_path / "dapi.tif"
    tifffile.imwrite(path, np.moveaxis(refs["DAPI"], -1, 0), photometric="minisblack", metadata={"axes": "CYX"})
    mixed = {
        "DAPI": str(path),
        "FITC": da.from_array(refs["FITC"], chunks=(40, 96, 6)),
        "Cy3": np.moveaxis(refs["Cy3"], -1, 0),
        "Cy5": refs["Cy5"],
    }
    with pytest.raises(ValueError, match="same channels"):
        spillover_spectra(mixed)  # Cy3 read with channels last: 96 "channels"
    mixed["Cy3"] = refs["Cy3"]
    got, _ = spillover_spectra(mixed)
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_a_subsample_gives_nearly_the_same_signatures(controls):
    refs, _ = controls
    full, _ = spillover_spectra(refs)
    part, _ = spillover_spectra(refs, sample=3000)
    np.testing.assert_allclose(part, full, atol=0.03)


def test_errors_say_what_to_do(controls):
    refs, unstained = controls
    rng = np.random.default_rng(3)
    blank = camera(rng, np.zeros((64, 64, 6)))
    with pytest.raises(ValueError, match="'GFP' shows no signal above its background"):
        spillover_spectra({"DAPI": refs["DAPI"], "GFP": blank})
    with pytest.raises(TypeError, match="mapping of dye name"):
        spillover_spectra([refs["DAPI"]])
    with pytest.raises(ValueError, match="rename it"):
        spillover_spectra({AUTOFLUORESCENCE: refs["DAPI"]}, background=unstained)
    with pytest.raises(ValueError, match="dim_percentile < bright_percentile"):
        spillover_spectra(refs, dim_percentile=95)
    with pytest.raises(ValueError, match="no valid pixels"):
        spillover_spectra({"DAPI": np.full((8, 8, 6), np.nan)})
    with pytest.raises(ValueError, match="unsaturated pixels"):
        spillover_spectra({"DAPI": np.full((8, 8, 6), FULL_WELL, np.uint16)})
