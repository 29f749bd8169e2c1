"""Endmembers found in the data: ATGP, N-FINDR and VCA, on streamed data.

Each method picks ``n`` pixels of the data as the purest examples of ``n``
materials (the vertices of the simplex that the mixed pixels fill):

``"atgp"``
    Automatic target generation (Ren and Chang 2003): the pixel of largest
    norm, then repeatedly the pixel with the largest part orthogonal to the
    pixels picked so far.
``"nfindr"``
    N-FINDR (Winter 1999): the ``n`` pixels spanning the simplex of largest
    volume in the (n-1)-dimensional principal subspace, by replacing one
    vertex at a time (started from ATGP's picks, so the result does not
    depend on a random start).
``"vca"``
    Vertex component analysis (Nascimento and Bioucas-Dias 2005): the pixel
    most extreme along a random direction orthogonal to the vertices found,
    in the projective (high SNR) or centred (low SNR) projection that the
    SNR estimate chooses; ``seed`` fixes the directions.

How the data are read, in at most three passes (:mod:`pixelmix.learn.source`
blocks: arrays, memory maps, TIFF files, Dask arrays, lists of them):

1. the moments (mean, covariance), which give the subspaces the methods
   work in: the top ``n`` eigenvectors of the correlation matrix, the top
   ``n - 1`` principal components and the mean, together a basis of at most
   ``2 n`` dimensions;
2. the candidates, in those coordinates: a fixed pseudo-random sample of
   at most ``sample`` valid pixels (each pixel's draw depends only on
   ``seed`` and its position, so it does not depend on the blocks), plus
   the exact extreme pixels of the whole data along many fixed directions
   of the subspace (the pixels a pixel-purity index would find: vertices
   of the data's hull). With at most ``sample`` valid pixels the candidates
   are all of them, and the methods see exactly the data;
3. only when a picked pixel is in the sample and the data are not in memory:
   a pass reading its spectrum back.

The spectra returned are the picked pixels' own values, as float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .gather import gather_source
from .solve import check_n_components, symmetric_eigh
from .source import Source, describe
from .stats import Moments, block_moments

__all__ = ["find_endmembers", "METHODS"]

METHODS = ("atgp", "nfindr", "vca")
# Candidate pixels besides the extremes, when sample= is not given.
DEFAULT_SAMPLE = 200_000
# Directions along which the extreme pixels are kept (both ways): the axes
# of the subspace plus DIRECTIONS_PER_DIM random ones per dimension, at
# least MIN_DIRECTIONS and at most MAX_DIRECTIONS in all.
MIN_DIRECTIONS = 64
DIRECTIONS_PER_DIM = 16
MAX_DIRECTIONS = 1024
# Values of the (pixels x directions) projections held at once within a block.
CHUNK_VALUES = 2**21
# N-FINDR stops after this many sweeps over the vertices (it stops earlier
# when a sweep replaces none; each replacement grows the volume).
NFINDR_MAX_SWEEPS = 32


def _draws(part: int, flat: np.ndarray, seed: int) -> np.ndarray:
    """A fixed pseudo-random draw in [0, 1) per pixel: splitmix64 of (seed, part, flat index)."""
    z = flat.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(seed % 2**63) * np.uint64(0xD1B54A32D192ED03)
        z = z + np.uint64(part) * np.uint64(0x8CB92BA72F3D8DD7)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


@dataclass
class _Subspace:
    """The coordinates the methods work in: ``z = Q^T y`` and the maps out of them."""

    basis: np.ndarray  # Q, (C, q) orthonormal columns
    top: np.ndarray  # (q, n): z -> the top-n correlation eigenvector coordinates
    principal: np.ndarray  # (q, n-1): z -> principal component coordinates (centred with pc_shift)
    pc_shift: np.ndarray  # (n-1,)
    mean_z: np.ndarray  # (q,)
    directions: np.ndarray  # (q, D): unit directions (whitened) for the extreme pixels
    snr_db: float  # VCA's SNR estimate
    top_mean: np.ndarray  # (n,): mean pixel in the top-n coordinates


def _subspace(moments: Moments, n: int, seed: int) -> _Subspace:
    C = moments.n_channels
    cov = moments.covariance(ddof=0)
    mean = moments.mean
    corr = cov + np.outer(mean, mean)
    corr_values, corr_vectors = symmetric_eigh(corr)
    cov_values, cov_vectors = symmetric_eigh(cov)
    top = corr_vectors[:, :n]
    principal = cov_vectors[:, : n - 1]
    if not corr_values[0] > 0:
        raise ValueError("every valid pixel is zero in every channel: there is nothing to find")
    # Q: an orthonormal basis of the top correlation eigenvectors, the top
    # principal components and the mean.
    stacked = np.concatenate([top, principal, mean[:, None]], axis=1)
    u, singular, _ = np.linalg.svd(stacked, full_matrices=False)
    basis = u[:, singular > singular[0] * 1e-10 * C]
    mean_z = basis.T @ mean
    # Directions for the extremes, whitened so that the pixels spread alike
    # along each, and only where the pixels spread at all (along a direction
    # of no spread the extremes would be picked by rounding).
    values, vectors = symmetric_eigh(basis.T @ cov @ basis)
    spread = values > values[0] * 1e-10 if values[0] > 0 else values > 0
    dims = int(spread.sum())
    vectors, scale = vectors[:, spread], np.sqrt(values[spread])
    n_random = min(MAX_DIRECTIONS, max(MIN_DIRECTIONS, DIRECTIONS_PER_DIM * dims)) - dims
    gauss = np.random.default_rng([seed, 0x5EED]).standard_normal((dims, max(n_random, 0)))
    dirs = vectors @ (np.concatenate([np.eye(dims), gauss], axis=1) / scale[:, None])
    dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
    # VCA's SNR estimate (its estimate_snr, from the moments): total power
    # against the power in the top-n principal subspace plus the mean's.
    power = float(np.trace(corr))
    signal = float(cov_values[:n].sum() + mean @ mean)
    if power - signal <= 0:
        snr_db = math.inf
    else:
        ratio = (signal - n / C * power) / (power - signal)
        snr_db = 10 * math.log10(ratio) if ratio > 0 else -math.inf
    return _Subspace(
        basis=basis,
        top=basis.T @ top,
        principal=basis.T @ principal,
        pc_shift=principal.T @ mean,
        mean_z=mean_z,
        directions=dirs,
        snr_db=snr_db,
        top_mean=top.T @ mean,
    )


@dataclass
class _Candidates:
    """A mergeable set of candidate pixels: a keyed sample and the extremes per direction."""

    limit: int
    keys: np.ndarray  # (m,) sample draws, the smallest kept
    where: np.ndarray  # (m, 2) (part, flat pixel index)
    z: np.ndarray  # (m, q)
    ext_value: np.ndarray  # (2D,) projection of the best pixel per direction (+d, then -d)
    ext_where: np.ndarray  # (2D, 2)
    ext_z: np.ndarray  # (2D, q)
    ext_spectra: np.ndarray  # (2D, C)

    def merge(self, other: "_Candidates") -> "_Candidates":
        keys = np.concatenate([self.keys, other.keys])
        where = np.concatenate([self.where, other.where])
        z = np.concatenate([self.z, other.z])
        if len(keys) > self.limit:
            keep = _smallest(keys, where, self.limit)
            keys, where, z = keys[keep], where[keep], z[keep]
        # The larger projection wins; a tie goes to the earlier pixel, so
        # the result does not depend on the order of the merges.
        take = (other.ext_value > self.ext_value) | (
            (other.ext_value == self.ext_value) & _before(other.ext_where, self.ext_where)
        )
        return _Candidates(
            self.limit, keys, where, z,
            np.where(take, other.ext_value, self.ext_value),
            np.where(take[:, None], other.ext_where, self.ext_where),
            np.where(take[:, None], other.ext_z, self.ext_z),
            np.where(take[:, None], other.ext_spectra, self.ext_spectra),
        )


def _before(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise: (part, index) ``a`` comes before ``b``."""
    return (a[:, 0] < b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] < b[:, 1]))


def _smallest(keys: np.ndarray, where: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the ``limit`` smallest keys (ties by position): the same set in any merge order."""
    order = np.lexsort((where[:, 1], where[:, 0], keys))
    return np.sort(order[:limit])


def _empty(limit: int, q: int, n_dirs: int, C: int) -> _Candidates:
    return _Candidates(
        limit,
        np.zeros(0), np.zeros((0, 2), np.int64), np.zeros((0, q)),
        np.full(2 * n_dirs, -np.inf), np.full((2 * n_dirs, 2), np.iinfo(np.int64).max, np.int64),
        np.zeros((2 * n_dirs, q)), np.full((2 * n_dirs, C), np.nan),
    )


def _block_pixels(block, nodata, strides):
    """The block's valid pixels as (N, C) rows, and their flat indices within the part."""
    values, axis = block.values, block.channel_axis
    C = values.shape[axis]
    rows = np.moveaxis(values, axis, -1).reshape(-1, C)
    mask, coords = block.aux[0], block.aux[1:]
    flat = np.zeros(rows.shape[0], dtype=np.int64)
    for coord, stride in zip(coords, strides):
        flat += np.asarray(coord, dtype=np.int64).reshape(-1) * stride
    valid = np.ones(rows.shape[0], dtype=bool) if mask is None else np.asarray(mask, bool).reshape(-1).copy()
    if values.dtype.kind == "f":
        valid &= np.isfinite(rows).all(axis=1)
    if nodata is not None:
        valid &= ~(rows == nodata).any(axis=1)
    return rows, flat, valid


def _candidates_of_block(block, space: _Subspace, limit: int, fraction: float, seed: int, nodata, strides):
    """Step 1 of the candidate pass: the block's sampled pixels and its extremes per direction."""
    rows, flat, valid = _block_pixels(block, nodata, strides[block.part])
    C = rows.shape[1]
    q, n_dirs = space.directions.shape
    result = _empty(limit, q, n_dirs, C)
    picked = np.flatnonzero(valid)
    step = max(256, CHUNK_VALUES // max(n_dirs, 1))
    for start in range(0, len(picked), step):
        sel = picked[start : start + step]
        y = rows[sel].astype(np.float64)
        z = y @ space.basis
        where = np.stack([np.full(len(sel), block.part, np.int64), flat[sel]], axis=1)
        keys = _draws(block.part, flat[sel], seed)
        in_sample = keys < fraction
        proj = (z - space.mean_z) @ space.directions  # (N, D)
        # argmax/argmin: the first of equal projections, as the merge prefers.
        best = np.concatenate([np.argmax(proj, axis=0), np.argmin(proj, axis=0)])
        value = np.concatenate([proj.max(axis=0), -proj.min(axis=0)])
        chunk = _Candidates(
            limit, keys[in_sample], where[in_sample], z[in_sample], value, where[best], z[best], y[best]
        )
        result = result.merge(chunk)
    return result


def _pixel_spectra(source: Source, where: np.ndarray, nodata) -> dict[tuple[int, int], np.ndarray]:
    """The spectra of the pixels at ``where`` ((part, flat index) rows)."""
    found: dict[tuple[int, int], np.ndarray] = {}
    wanted = {(int(p), int(i)) for p, i in where}
    on_disk = set()
    for part_no, index in wanted:
        part = source.parts[part_no]
        if isinstance(part.source, np.ndarray):
            at = list(np.unravel_index(index, part.spatial_shape))
            at.insert(part.channel_axis, slice(None))
            found[(part_no, index)] = np.asarray(part.source[tuple(at)], dtype=np.float64)
        else:
            on_disk.add((part_no, index))
    if on_disk:
        strides = _strides(source)
        wanted_flat = {p: np.array(sorted(i for q, i in on_disk if q == p), dtype=np.int64) for p, _ in on_disk}
        collected = gather_source(source, lambda b: _Picked.of_block(b, wanted_flat, nodata, strides))
        found.update(collected.spectra)
    return found


@dataclass
class _Picked:
    """Mergeable spectra of wanted pixels, by (part, flat index)."""

    spectra: dict

    def merge(self, other: "_Picked") -> "_Picked":
        return _Picked({**self.spectra, **other.spectra})

    @classmethod
    def of_block(cls, block, wanted: dict, nodata, strides) -> "_Picked":
        if block.part not in wanted:
            return cls({})
        rows, flat, _ = _block_pixels(block, nodata, strides[block.part])
        hits = np.flatnonzero(np.isin(flat, wanted[block.part]))
        return cls({(block.part, int(flat[j])): rows[j].astype(np.float64) for j in hits})


def _strides(source: Source) -> list[tuple[int, ...]]:
    """Per part, the C-order strides (in pixels) of its spatial axes."""
    out = []
    for part in source.parts:
        shape = part.spatial_shape
        out.append(tuple(int(np.prod(shape[d + 1 :], dtype=np.int64)) for d in range(len(shape))))
    return out


def _coordinates(parts) -> list[tuple[str, list]]:
    """Companion images giving each pixel's index along each spatial axis (no memory: broadcast views)."""
    ndim = max(len(p.spatial_shape) for p in parts)
    aux = []
    for d in range(ndim):
        images = []
        for part in parts:
            shape = part.spatial_shape
            if d >= len(shape):
                images.append(None)
                continue
            line = np.arange(shape[d], dtype=np.int64).reshape([-1 if i == d else 1 for i in range(len(shape))])
            images.append(np.broadcast_to(line, shape))
        aux.append((f"axis {d} index", images))
    return aux


# -- the methods, on the candidates' coordinates -----------------------------------------


def _atgp(points: np.ndarray, n: int) -> list[int]:
    """ATGP on ``points`` (M, d): the largest norm, then the largest part orthogonal to the picks."""
    residual = points.copy()
    picks: list[int] = []
    for _ in range(n):
        norms = np.einsum("ij,ij->i", residual, residual)
        norms[picks] = -1.0
        j = int(np.argmax(norms))
        picks.append(j)
        t = residual[j]
        size = math.sqrt(float(t @ t))
        if size > 0:
            t = t / size
            residual -= np.outer(residual @ t, t)
    return picks


def _cofactors(matrix: np.ndarray, column: int) -> np.ndarray:
    """The cofactors of ``matrix``'s column ``column``: det with that column = cofactors @ column."""
    n = matrix.shape[0]
    rest = np.delete(matrix, column, axis=1)
    out = np.empty(n)
    for r in range(n):
        out[r] = (-1) ** (r + column) * np.linalg.det(np.delete(rest, r, axis=0))
    return out


def _nfindr(points: np.ndarray, n: int, start: list[int]) -> list[int]:
    """N-FINDR on ``points`` (M, n-1): the largest simplex, one vertex replaced at a time."""
    picks = list(start)
    if n == 1:
        return picks
    lifted = np.concatenate([np.ones((points.shape[0], 1)), points], axis=1)  # (M, n)
    simplex = lifted[picks].T  # columns are the vertices
    volume = abs(np.linalg.det(simplex))
    for _ in range(NFINDR_MAX_SWEEPS):
        changed = False
        for i in range(n):
            # The volume with vertex i replaced by each pixel is linear in the pixel.
            volumes = np.abs(lifted @ _cofactors(simplex, i))
            j = int(np.argmax(volumes))
            if volumes[j] > volume * (1 + 1e-12) and j not in picks:
                picks[i] = j
                simplex[:, i] = lifted[j]
                volume = volumes[j]
                changed = True
        if not changed:
            break
    return picks


def _vca(z: np.ndarray, space: _Subspace, n: int, seed: int) -> list[int]:
    """VCA on the candidates, in the projection its SNR estimate picks (as vca.m)."""
    threshold = 15 + 10 * math.log10(n)
    if space.snr_db < threshold:
        x = z @ space.principal - space.pc_shift  # (M, n-1), centred
        c = math.sqrt(float(np.max(np.einsum("ij,ij->i", x, x)))) if x.shape[1] else 1.0
        y = np.concatenate([x, np.full((x.shape[0], 1), c)], axis=1)
    else:
        x = z @ space.top  # (M, n)
        scale = x @ space.top_mean
        scale[scale == 0] = np.finfo(float).tiny
        y = x / scale[:, None]
    rng = np.random.default_rng([seed, 0x0FCA])
    vertices = np.zeros((n, n))
    vertices[n - 1, 0] = 1.0
    picks = []
    for i in range(n):
        w = rng.random(n)
        f = w - vertices @ (np.linalg.pinv(vertices) @ w)
        norm = np.linalg.norm(f)
        f = f / norm if norm > 0 else f
        v = np.abs(y @ f)
        v[picks] = -1.0
        j = int(np.argmax(v))
        picks.append(j)
        vertices[:, i] = y[j]
    return picks


def find_endmembers(
    data,
    n: int,
    *,
    method: str = "atgp",
    channel_axis: int = -1,
    mask=None,
    nodata=None,
    sample: int | float | None = None,
    seed: int = 0,
    return_indices: bool = False,
):
    """The spectra of ``n`` endmembers (pure pixels) found in ``data``.

    Parameters
    ----------
    data : ndarray, np.memmap, str or path, dask.array.Array, or list of these
        Pixels with channels on ``channel_axis`` (TIFF files: the file's own
        channel axis unless given).
    n : int
        Number of endmembers, at most the number of channels.
    method : {"atgp", "nfindr", "vca"}
        The extraction method (see :mod:`pixelmix.learn.endmembers`).
    channel_axis : int
        The channel axis of array data.
    mask : ndarray of bool, optional
        True = the pixel may be picked (a list of masks for list data).
    nodata : number, optional
        Pixels with any channel equal to this are never picked (nor are
        pixels with NaN).
    sample : int or float, optional
        How many valid pixels the method sees besides the extreme pixels: a
        count (default 200000), or a fraction of the valid pixels. Unlike the
        fits' ``sample``, an integer here is a number of pixels, not a stride.
        Data with at most that many valid pixels are used whole.
    seed : int
        Fixes the sample, the extreme directions and VCA's random directions.
    return_indices : bool
        Also return where each endmember was found.

    Returns
    -------
    spectra : ndarray of float64, shape (n, C)
        The picked pixels' values, one endmember per row, in the order the
        method found them.
    where : ndarray of int64, shape (n, 2)
        Only with ``return_indices``: per endmember, the index of the array
        or file in ``data`` (0 for a single one) and the flat index of the
        pixel in its spatial shape (the shape without the channel axis;
        ``np.unravel_index(where[:, 1], shape)`` gives its coordinates).

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.endmembers import find_endmembers
    >>> rng = np.random.default_rng(0)
    >>> spectra = rng.random((3, 10))
    >>> abundances = rng.dirichlet(np.ones(3), size=(40, 40))
    >>> abundances[0, :3] = np.eye(3)  # a pure pixel of each material
    >>> cube = abundances @ spectra
    >>> found, where = find_endmembers(cube, 3, method="nfindr", return_indices=True)
    >>> sorted(where[:, 1].tolist())
    [0, 1, 2]
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {', '.join(map(repr, METHODS))}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    parts = describe(data, channel_axis)
    source = Source(data, channel_axis, aux=[("mask", mask), *_coordinates(parts)], parts=parts)
    C = source.parts[0].n_channels
    n = check_n_components(n, C, "find_endmembers", "the number of channels")
    moments = gather_source(
        source,
        lambda b: block_moments(b.values, b.channel_axis, mask=b.aux[0], nodata=nodata),
    )
    if moments.count < n:
        raise ValueError(
            f"{n} endmembers need at least {n} valid pixels but the data has {moments.count} "
            f"({moments.skipped} skipped for NaN/nodata); check mask= and nodata="
        )
    limit = _sample_size(sample, moments.count)
    fraction = 1.0 if limit >= moments.count else _fraction(limit, moments.count)
    space = _subspace(moments, n, seed)
    strides = _strides(source)
    found = gather_source(
        source, lambda b: _candidates_of_block(b, space, limit, fraction, seed, nodata, strides)
    )
    # The candidates: the sample and the extremes (an extreme may be in the sample too).
    seen = {(int(p), int(i)) for p, i in found.where}
    unique_extra = []
    for k in np.flatnonzero(np.isfinite(found.ext_value)):
        key = (int(found.ext_where[k, 0]), int(found.ext_where[k, 1]))
        if key not in seen:
            seen.add(key)
            unique_extra.append(k)
    where = np.concatenate([found.where, found.ext_where[unique_extra]]).astype(np.int64)
    z = np.concatenate([found.z, found.ext_z[unique_extra]])
    if len(where) < n:
        raise ValueError(f"only {len(where)} distinct valid pixels to pick {n} endmembers from")
    if method == "atgp":
        picks = _atgp(z @ space.top, n)
    elif method == "nfindr":
        top = _atgp(z @ space.top, n)
        picks = _nfindr(z @ space.principal - space.pc_shift, n, top)
    else:
        picks = _vca(z, space, n, seed)
    chosen = where[picks]
    spectra_of = {
        (int(found.ext_where[k, 0]), int(found.ext_where[k, 1])): found.ext_spectra[k]
        for k in range(len(found.ext_value)) if np.isfinite(found.ext_value[k])
    }
    missing = np.array([w for w in chosen if (int(w[0]), int(w[1])) not in spectra_of], dtype=np.int64)
    if len(missing):
        spectra_of.update(_pixel_spectra(source, missing.reshape(-1, 2), nodata))
    spectra = np.stack([spectra_of[(int(p), int(i))] for p, i in chosen]).astype(np.float64)
    return (spectra, chosen) if return_indices else spectra


def _sample_size(sample: Any, count: int) -> int:
    if sample is None:
        return DEFAULT_SAMPLE
    if isinstance(sample, bool):
        raise TypeError("sample must be a number of pixels (int) or a fraction (float), not a bool")
    if isinstance(sample, (int, np.integer)):
        if sample < 1:
            raise ValueError(f"sample={sample} must be a positive number of pixels")
        return int(sample)
    if isinstance(sample, (float, np.floating)):
        if not 0.0 < sample <= 1.0:
            raise ValueError(f"sample={sample} as a float must be a fraction in (0, 1]")
        return max(1, int(round(sample * count)))
    raise TypeError(f"sample must be an int (pixels) or a float (fraction), got {sample!r}")


def _fraction(limit: int, count: int) -> float:
    """A draw threshold that keeps comfortably more than ``limit`` of ``count`` pixels (then cut to it)."""
    expected = limit / count
    # Binomial spread: six standard deviations above, so the cut almost always binds.
    return min(1.0, expected + 6 * math.sqrt(expected * (1 - expected) / count) + 16 / count)
