"""Streaming first and second moments of pixels: count, mean, C x C scatter.

The statistics every fit needs are gathered one block at a time, in one pass,
in O(C^2) memory, and two partial results merge exactly (Chan, Golub and
LeVeque's pairwise update), so blocks, files and Dask chunks can be
processed in any order and combined afterwards.

Functions
---------
``block_moments(values, channel_axis, ...)``
    The :class:`Moments` of one block (an ndarray with channels on
    ``channel_axis``): honours a boolean ``mask`` (True = use), skips pixels
    with NaN or a channel equal to ``nodata`` (and counts them), subsamples
    with ``sample=`` and, with ``pair=``, gathers the differences between
    neighbouring pixels that noise estimates need. Blocks of float16, int8,
    uint32 or non-native byte order are first converted exactly to
    :func:`pixelmix.plan.working_dtype`; complex or bool blocks are refused.
``Moments.merge`` / :func:`merge`
    Combine partial results.

How it stays accurate
---------------------
Within a block, a Numba kernel (:func:`_pack`) gathers the valid pixels of a
tile into a float64 buffer (in the input's memory order), minus a *shift*: the
mean of the block's first tile. The shifted sum and cross-product (a BLAS
``syrk``) are accumulated tile by tile and turned into a mean and a
centred scatter matrix at the end of the block. Because the shift is close
to the mean, no large numbers cancel: uint16 data around 60000 with a
variance of 0.01 keeps its covariance to ~12 digits, where the textbook
``E[xx'] - E[x]E[x]'`` loses it all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ..plan import dtype_problem, view3, working_dtype

__all__ = ["Moments", "GroupMoments", "block_moments", "merge", "PAIRS", "parse_sample"]

# Neighbour pairs for difference-based noise estimates: name -> kernel code.
PAIRS = {None: 0, "right": 1, "lower": 2, "diagonal": 3}

# Scratch per tile: about this many float64 values (4 MiB).
TILE_VALUES = 2**19


def _kernels():
    """Compile (on first use) and return the Numba packing kernel."""
    global _pack
    if _pack is None:
        from numba import njit

        _pack = njit(cache=True, nogil=True)(_pack_py)
    return _pack


_pack = None


def _pack_py(x3, a, b0, b1, mask, use_mask, nodata, use_nodata, stride, threshold, seed,
             pair, n_cols, n_rows, shift, buf, cand, partner):
    """Gather the valid pixels of one tile into ``buf``, minus ``shift[c]``.

    ``buf`` is ``buf[j, c]`` (pixel by channel) for channels-last input and
    ``buf[c, j]`` otherwise, so that both reading and writing run along
    memory; either way its transpose-product is one BLAS ``syrk``.

    The tile is pixels ``a * B + b`` for ``b0 <= b < b1`` of the (A, C, B)
    view ``x3`` (channels last: B == 1 and the tile runs along A instead, as
    ``a0 = b0 .. b1``). A pixel is kept when it is selected by the sampling
    rule (every ``stride``-th pixel, then a hash of ``(seed, p)`` below
    ``threshold``), lies in ``mask``, and has no NaN and no channel equal to
    ``nodata``. With ``pair`` > 0 the value gathered is the difference with
    the neighbour to the right (1), below (2) or diagonally below-right (3),
    rows and columns being the last two spatial axes (``n_rows`` x
    ``n_cols``); both pixels must be valid.

    Returns ``(n_kept, n_skipped)``: skipped counts the selected, unmasked
    pixels dropped for NaN or nodata.
    """
    A, C, B = x3.shape
    channels_last = B == 1
    # 1. Candidates: sampling, mask and neighbour geometry (no pixel values read).
    n = 0
    for t in range(b0, b1):
        p = t if channels_last else a * B + t
        if stride > 1 and p % stride != 0:
            continue
        if threshold < 1.0:
            # splitmix64 of (seed, p): a fixed pseudo-random subset, no RNG state.
            z = np.uint64(p) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
            if np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0) >= threshold:
                continue
        if use_mask and not mask[p]:
            continue
        q = p
        if pair > 0:
            col = p % n_cols
            row = (p // n_cols) % n_rows
            if pair != 2:
                if col == n_cols - 1:
                    continue
                q += 1
            if pair != 1:
                if row == n_rows - 1:
                    continue
                q += n_cols
            if use_mask and not mask[q]:
                continue
        cand[n] = p
        partner[n] = q
        n += 1
    # 2. Values, converted to float64 and shifted; a pixel with NaN or nodata
    # gets ok = False. Loop order follows the memory layout of x3.
    ok = np.ones(n, dtype=np.bool_)
    if channels_last:
        for j in range(n):
            p = cand[j]
            q = partner[j]
            for c in range(C):
                v = x3[p, c, 0]
                fv = np.float64(v)
                if fv != fv or (use_nodata and v == nodata):
                    ok[j] = False
                if pair > 0:
                    w = x3[q, c, 0]
                    fw = np.float64(w)
                    if fw != fw or (use_nodata and w == nodata):
                        ok[j] = False
                    fv = fv - fw
                buf[j, c] = fv - shift[c]
    else:
        for c in range(C):
            row = x3[a, c]
            out = buf[c]
            s = shift[c]
            for j in range(n):
                v = row[cand[j] - a * B]
                fv = np.float64(v)
                if fv != fv or (use_nodata and v == nodata):
                    ok[j] = False
                if pair > 0:
                    w = row[partner[j] - a * B]
                    fw = np.float64(w)
                    if fw != fw or (use_nodata and w == nodata):
                        ok[j] = False
                    fv = fv - fw
                out[j] = fv - s
    # 3. Compact the kept pixels to the front (rare: only when some were bad).
    kept = 0
    for j in range(n):
        if ok[j]:
            if kept != j:
                for c in range(C):
                    if channels_last:
                        buf[kept, c] = buf[j, c]
                    else:
                        buf[c, kept] = buf[c, j]
                cand[kept] = cand[j]
            kept += 1
    return kept, n - kept


@dataclass
class Moments:
    """Count, mean and centred scatter matrix of a set of C-channel pixels.

    ``scatter`` is ``sum((x - mean)(x - mean)^T)``; the sample covariance is
    ``scatter / (count - 1)``. ``skipped`` counts pixels left out for NaN or
    nodata. Merge partial results with :meth:`merge` (exact, any order).
    """

    count: int
    mean: np.ndarray
    scatter: np.ndarray
    skipped: int = 0

    @classmethod
    def empty(cls, n_channels: int) -> "Moments":
        return cls(0, np.zeros(n_channels), np.zeros((n_channels, n_channels)), 0)

    @property
    def n_channels(self) -> int:
        return self.mean.shape[0]

    def covariance(self, ddof: int = 1) -> np.ndarray:
        """``scatter / (count - ddof)``."""
        if self.count <= ddof:
            raise ValueError(
                f"a covariance needs more than {ddof} pixel(s), got {self.count}; "
                f"check mask=, nodata= and sample= (fewer pixels were used than you think)"
            )
        return self.scatter / (self.count - ddof)

    def merge(self, other: "Moments") -> "Moments":
        """The moments of both sets of pixels together."""
        if other.n_channels != self.n_channels:
            raise ValueError(
                f"cannot merge statistics of {self.n_channels} and {other.n_channels} channels"
            )
        if other.count == 0:
            return Moments(self.count, self.mean, self.scatter, self.skipped + other.skipped)
        if self.count == 0:
            return Moments(other.count, other.mean, other.scatter, self.skipped + other.skipped)
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        scatter = self.scatter + other.scatter + np.outer(delta, delta) * (self.count * other.count / n)
        return Moments(n, mean, scatter, self.skipped + other.skipped)

    def to_dict(self) -> dict:
        """JSON-ready form (lists), e.g. to send between processes."""
        return {"count": self.count, "mean": self.mean.tolist(), "scatter": self.scatter.tolist(),
                "skipped": self.skipped}

    @classmethod
    def from_dict(cls, d: dict) -> "Moments":
        return cls(int(d["count"]), np.asarray(d["mean"], float), np.asarray(d["scatter"], float),
                   int(d.get("skipped", 0)))


@dataclass
class GroupMoments:
    """:class:`Moments` per integer label (the classes of a discriminant fit)."""

    groups: dict[int, Moments] = field(default_factory=dict)

    def merge(self, other: "GroupMoments") -> "GroupMoments":
        out = dict(self.groups)
        for label, m in other.groups.items():
            out[label] = out[label].merge(m) if label in out else m
        return GroupMoments(out)


def merge(parts: Iterable):
    """Merge any number of partial statistics (Moments, GroupMoments, ...) into one.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.stats import block_moments, merge
    >>> x = np.arange(12.0).reshape(6, 2)
    >>> m = merge([block_moments(x[:2], -1), block_moments(x[2:], -1)])
    >>> m.count, m.mean.tolist()
    (6, [5.0, 6.0])
    """
    total = None
    for part in parts:
        total = part if total is None else total.merge(part)
    if total is None:
        raise ValueError("nothing to merge: the data held no blocks (is it empty?)")
    return total


def parse_sample(sample) -> tuple[int, float]:
    """``sample=`` as ``(stride, fraction)``: an int keeps every n-th pixel, a float that fraction."""
    if sample is None:
        return 1, 1.0
    if isinstance(sample, bool):
        raise TypeError("sample must be a fraction in (0, 1] or a positive integer stride, not a bool")
    if isinstance(sample, (int, np.integer)):
        if sample < 1:
            raise ValueError(f"sample={sample} is not a valid stride; use a positive integer")
        return int(sample), 1.0
    if isinstance(sample, (float, np.floating)):
        if not 0.0 < sample <= 1.0:
            raise ValueError(
                f"sample={sample} is not a fraction in (0, 1]; pass e.g. 0.1 for a tenth of "
                f"the pixels, or an integer stride"
            )
        return 1, float(sample)
    raise TypeError(f"sample must be a float fraction or an integer stride, got {sample!r}")


def _x3(values: np.ndarray, axis: int) -> np.ndarray:
    """The (A, C, B) view of a block, contiguous, native and read-only (one kernel type per dtype).

    Types the kernel is not compiled for (float16, int8, uint32, 64-bit
    integers, any non-native byte order) are converted exactly to their
    working type first, in the same copy that makes the block contiguous.
    """
    x = np.ascontiguousarray(values, dtype=working_dtype(values.dtype))
    x3 = view3(x, axis).view(np.ndarray)
    x3.flags.writeable = False
    return x3


class _Accumulator:
    """Shifted sum and cross-product of one block, per group."""

    def __init__(self, n_channels: int):
        self.c = n_channels
        self.shift = None
        self.groups: dict[int, list] = {}  # label -> [count, sum, cross]

    def add(self, buf: np.ndarray, labels: np.ndarray | None) -> None:
        if buf.shape[1] == 0:
            return
        if self.shift is None:
            # The first tile's mean: close to the block mean, so nothing cancels.
            self.shift = buf.mean(axis=1)
            buf -= self.shift[:, None]
        if labels is None:
            self._add(0, buf)
            return
        for label in np.unique(labels):
            self._add(int(label), buf[:, labels == label])

    def _add(self, label: int, buf: np.ndarray) -> None:
        acc = self.groups.get(label)
        if acc is None:
            acc = self.groups[label] = [0, np.zeros(self.c), np.zeros((self.c, self.c))]
        acc[0] += buf.shape[1]
        acc[1] += buf.sum(axis=1)
        acc[2] += buf @ buf.T  # NumPy calls BLAS syrk for a @ a.T (either memory order)

    def moments(self, label: int, skipped: int) -> Moments:
        acc = self.groups.get(label)
        if acc is None:
            return Moments(0, np.zeros(self.c), np.zeros((self.c, self.c)), skipped)
        n, s, q = acc
        scatter = q - np.outer(s, s) / n
        scatter = (scatter + scatter.T) / 2
        return Moments(n, self.shift + s / n, scatter, skipped)


def block_moments(
    values: np.ndarray,
    channel_axis: int = -1,
    *,
    mask: np.ndarray | None = None,
    nodata=None,
    sample=None,
    seed: int = 0,
    pair: str | None = None,
    labels: np.ndarray | None = None,
):
    """Moments of the pixels of one block (step 1 of every fit).

    Parameters
    ----------
    values : ndarray
        The block: any number of dimensions, channels on ``channel_axis``.
    channel_axis : int
        The channel axis (negative counts from the end).
    mask : ndarray of bool, optional
        The block's spatial shape (``values.shape`` without the channel axis);
        True marks pixels to use.
    nodata : number, optional
        Pixels with any channel equal to this are skipped, like NaN pixels.
    sample : float or int, optional
        A fraction in (0, 1] of the pixels (a fixed pseudo-random subset that
        depends on ``seed`` and the pixel's position in the block), or an
        integer stride (every n-th pixel).
    seed : int
        Varies the subset of ``sample=`` between blocks.
    pair : {None, "right", "lower", "diagonal"}
        Gather the differences between each pixel and its neighbour instead of
        the pixels (rows and columns are the last two spatial axes).
    labels : ndarray of int, optional
        The block's spatial shape; returns :class:`GroupMoments` of the pixels
        of each non-zero label (0 = unlabelled, left out).

    Returns
    -------
    Moments or GroupMoments

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.stats import block_moments
    >>> x = np.array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [np.nan, 8.0]]])
    >>> m = block_moments(x, channel_axis=-1)
    >>> m.count, m.skipped, m.mean.tolist()
    (3, 1, [3.0, 4.0])
    """
    values = np.asarray(values)
    if values.ndim < 1:
        raise ValueError("a block needs at least a channel axis")
    problem = dtype_problem(values.dtype)
    if problem is not None:
        raise TypeError(problem)
    axis = channel_axis % values.ndim
    spatial = values.shape[:axis] + values.shape[axis + 1:]
    stride, threshold = parse_sample(sample)
    if pair not in PAIRS:
        raise ValueError(f"pair={pair!r} is not one of {', '.join(map(repr, PAIRS))}")
    if pair is not None:
        if len(spatial) < (1 if pair == "right" else 2):
            raise ValueError(
                f"noise from {pair!r} neighbours needs {1 if pair == 'right' else 2} spatial "
                f"axes but the data has {len(spatial)}; pass noise='right' or a noise covariance"
            )
        n_cols = spatial[-1]
        n_rows = spatial[-2] if len(spatial) >= 2 else 1
    else:
        n_cols = n_rows = 1
    flat_mask = _aux(mask, spatial, "mask", np.bool_)
    flat_labels = _aux(labels, spatial, "labels", None)
    if flat_labels is not None and flat_labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer image, got dtype {flat_labels.dtype}")
    if nodata is not None and values.dtype.kind in "iu":
        info = np.iinfo(values.dtype)
        if not info.min <= nodata <= info.max:
            nodata = None  # cannot occur in this dtype
    x3 = _x3(values, axis)
    A, C, B = x3.shape
    kernel = _kernels()
    tile = max(256, TILE_VALUES // max(C, 1))
    buf = np.empty((tile, C) if B == 1 else (C, tile))
    cand = np.empty(tile, dtype=np.int64)
    partner = np.empty(tile, dtype=np.int64)
    acc = _Accumulator(C)
    no_mask = np.zeros(1, dtype=np.bool_)
    skipped = 0
    outer, inner = (1, A) if B == 1 else (A, B)
    for a in range(outer):
        for b0 in range(0, inner, tile):
            b1 = min(inner, b0 + tile)
            shift = acc.shift if acc.shift is not None else np.zeros(C)
            kept, bad = kernel(
                x3, a, b0, b1,
                no_mask if flat_mask is None else flat_mask, flat_mask is not None,
                0.0 if nodata is None else float(nodata), nodata is not None,
                stride, threshold, np.uint64(seed % 2**63), PAIRS[pair], n_cols, n_rows,
                shift, buf, cand, partner,
            )
            skipped += bad
            values_ck = buf[:kept].T if B == 1 else buf[:, :kept]  # (C, kept) either way
            tile_labels = None
            if flat_labels is not None:
                tile_labels = flat_labels[cand[:kept]]
                keep = tile_labels != 0
                if not keep.all():
                    tile_labels = tile_labels[keep]
                    values_ck = values_ck[:, keep]
            acc.add(values_ck, tile_labels)
    if flat_labels is None:
        return acc.moments(0, skipped)
    return GroupMoments({label: acc.moments(label, 0) for label in acc.groups})


def _aux(arr, spatial: tuple[int, ...], name: str, dtype) -> np.ndarray | None:
    """A per-pixel image (mask, labels) flattened in the block's pixel order."""
    if arr is None:
        return None
    arr = np.asarray(arr)
    if arr.shape != spatial:
        raise ValueError(
            f"{name} has shape {arr.shape} but the data's pixels have shape {spatial} "
            f"(the data's shape without its channel axis)"
        )
    if dtype is np.bool_ and arr.dtype != np.bool_:
        raise TypeError(f"{name} must be a boolean array (True = use the pixel), got dtype {arr.dtype}")
    return np.ascontiguousarray(arr).reshape(-1)
