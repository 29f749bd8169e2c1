"""Zarr and OME-Zarr output: one image group per input.

An image group holds one array ``"0"`` (and ``"1"``, ``"2"``, ... for the
reduced levels of a pyramid). When the image's axes can be put in
OME-Zarr's ``t, c, z, y, x`` order the group is OME-Zarr (v0.4, on Zarr
format 2: ``multiscales`` with the axes, their units and the scale of each
level, ``omero`` with the channel names, colours and display windows; see
:mod:`pixelmix.io.ome_zarr`) and the arrays are stored in that order;
otherwise they are plain Zarr arrays in the image's own axis order. Either
way the ``pixelmix`` attribute records the stored axes, the channel names
and the provenance. An input of several series becomes a group of image
groups ``"0"``, ``"1"``, ... (OME-Zarr's ``bioformats2raw.layout``).
:func:`find_images` and :func:`describe_image` read outputs back
(``pixelmix info out.zarr``). ``zarr`` is imported only when a group is opened.

Examples
--------
>>> import os, tempfile
>>> import numpy as np, zarr
>>> from pixelmix.io.zarr import ZarrImage
>>> path = os.path.join(tempfile.mkdtemp(), "out.zarr", "img")
>>> image = ZarrImage(path, shape=(4, 5, 2), dtype=np.float32, axes="YXS", channel_axis=2,
...                   channel_names=["a", "b"])
>>> image.stored_shape
(2, 4, 5)
>>> image.write((slice(0, 4), slice(0, 5), slice(0, 2)), np.ones((4, 5, 2), np.float32))
>>> g = zarr.open_group(path, mode="r")
>>> [a["name"] for a in g.attrs["multiscales"][0]["axes"]], float(np.asarray(g["0"]).sum())
(['c', 'y', 'x'], 40.0)
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import ome_zarr
from .names import clean_names

__all__ = ["ZarrImage", "is_zarr_path", "is_complete", "open_group", "ome_permutation", "stored_shape", "dir_size",
           "read_provenance", "wait_for_writes", "find_images", "describe_image", "is_zarr_group"]

# OME-Zarr (v0.4) axes: the order OME-Zarr requires, and tifffile letter -> axis name.
_OME_ORDER = "tczyx"
_OME_LETTERS = {"T": "t", "C": "c", "S": "c", "Z": "z", "Y": "y", "X": "x"}
# Zarr chunks of the image plane (rows, columns); other axes get chunks of 1.
PLANE_CHUNK = 1024


def is_zarr_path(path: str | os.PathLike) -> bool:
    """True when ``path`` names a Zarr store (ends in ``.zarr``).

    Examples
    --------
    >>> from pixelmix.io.zarr import is_zarr_path
    >>> is_zarr_path("out.ZARR"), is_zarr_path("out")
    (True, False)
    """
    return Path(path).suffix.lower() == ".zarr"


def ome_permutation(axes: str, channel_axis: int) -> list[int] | None:
    """Permutation putting ``axes`` in OME-Zarr order, or None if OME-Zarr cannot hold them.

    Examples
    --------
    >>> from pixelmix.io.zarr import ome_permutation
    >>> ome_permutation("ZCYX", 1), ome_permutation("QCYX", 1)
    ([1, 0, 2, 3], None)
    """
    names = []
    for i, letter in enumerate(axes):
        if i == channel_axis:
            names.append("c")
        elif letter in _OME_LETTERS and letter not in "CS":
            names.append(_OME_LETTERS[letter])
        else:
            return None
    if len(set(names)) != len(names) or not {"y", "x"} <= set(names) or len(names) > 5:
        return None
    return sorted(range(len(names)), key=lambda i: _OME_ORDER.index(names[i]))


def stored_shape(shape: Sequence[int], axes: str, channel_axis: int) -> tuple[int, ...]:
    """The shape of an image of ``shape`` and ``axes`` as its group stores it.

    Examples
    --------
    >>> from pixelmix.io.zarr import stored_shape
    >>> stored_shape((3, 2, 16, 16), "ZCYX", 1), stored_shape((2, 3, 8, 8), "QCYX", 1)
    ((2, 3, 16, 16), (2, 3, 8, 8))
    """
    perm = ome_permutation(axes, channel_axis)
    return tuple(shape) if perm is None else tuple(shape[p] for p in perm)


def _ome_attrs(
    names: list[str], calibration, channel_names, stem: str, *, shapes, dtype, colors=None
) -> dict[str, Any]:
    """``multiscales`` (one dataset per level of ``shapes``, stored order) and ``omero`` attributes."""
    axes, scale = ome_zarr.axes_and_scale(names, calibration)
    datasets = []
    for level, shape in enumerate(shapes):
        # a reduced level's pixels are larger by the reduction along each spatial axis
        factors = [shapes[0][i] / shape[i] if name in "zyx" else 1.0 for i, name in enumerate(names)]
        datasets.append({
            "path": str(level),
            "coordinateTransformations": [{"type": "scale", "scale": [v * f for v, f in zip(scale, factors)]}],
        })
    c = names.index("c")
    return {
        "multiscales": [{"version": "0.4", "name": stem, "axes": axes, "datasets": datasets}],
        "omero": ome_zarr.omero(channel_names, dtype, n=shapes[0][c], colors=colors),
    }


def open_group(path: Path, mode: str):
    """Open (or with ``mode="w"``/``"a"`` create) the Zarr group at ``path``, Zarr format 2."""
    import zarr

    if int(zarr.__version__.split(".")[0]) >= 3:
        # OME-Zarr v0.4 is defined on Zarr format 2.
        return zarr.open_group(str(path), mode=mode, zarr_format=2)
    return zarr.open_group(str(path), mode=mode)


def _create_array(group, shape, chunks, dtype, name: str = "0"):
    if hasattr(group, "create_array"):
        return group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
    return group.create_dataset(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0)


def is_complete(path: Path, shape, dtype) -> bool:
    """Whether ``path`` holds an image group with array "0" of (stored) ``shape`` and ``dtype``.

    Of a group of several images (one per series), the first image's.
    """
    try:
        array = open_group(path, "r")["0"]
        if not hasattr(array, "shape"):  # a group of series: image "0"
            array = array["0"]
        return tuple(array.shape) == tuple(shape) and np.dtype(array.dtype) == np.dtype(dtype)
    except Exception:
        return False


def read_provenance(path: Path) -> dict[str, Any] | None:
    """The provenance record of the image group at ``path`` (None when it has none or is unreadable)."""
    try:
        record = open_group(path, "r").attrs.get("pixelmix", {}).get("provenance")
    except Exception:
        return None
    return record if isinstance(record, dict) else None


def wait_for_writes() -> None:
    """Wait until every write Zarr has started in this process has ended (Zarr 3).

    Zarr 3 writes the chunks of one assignment concurrently on its own event
    loop; when one of them fails (a full disk) the assignment raises at once
    while the others go on. Removing the group then races with them: they
    recreate its files, and their own failures are printed as asyncio
    tracebacks. Waiting for them all, and collecting their errors, ends
    both. Zarr 2 writes synchronously: nothing to wait for.
    """
    try:
        from zarr.core.sync import sync
    except ImportError:
        return

    async def settle() -> None:
        me = asyncio.current_task()
        for _ in range(1000):  # a finished write may start a few more (metadata): bounded rounds
            pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
            if not pending:
                return
            await asyncio.gather(*pending, return_exceptions=True)

    sync(settle())


def dir_size(path: Path) -> int:
    """Bytes of all the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class ZarrImage:
    """A new image group at ``path``, written slab by slab in the image's own axes.

    Parameters
    ----------
    path : path-like
        The group to create (replaced if it exists).
    shape, dtype, axes, channel_axis
        The image, in its own axis order (tifffile letters), e.g. from
        :func:`pixelmix.io.write.output_layout`.
    channel_names : sequence of str, optional
    calibration : dict, optional
        ``TiffStack.calibration`` (:func:`pixelmix.io.ome_zarr.zarr_calibration`):
        ``PhysicalSize*`` and ``TimeIncrement`` with their units go to the
        axes and the scale.
    provenance : dict, optional
        JSON-ready record of how the image was made.
    name : str, optional
        The image's name in the OME metadata (default: the last part of ``path``).
    levels : sequence of shapes, optional
        The reduced levels of a pyramid (same axes), stored as arrays
        ``"1"``, ``"2"``, ... and datasets of the multiscale with their scale.
    colors : sequence, optional
        The input channels' OME ``Color`` values (when the output channels are them).

    Call :meth:`finish` when every block is written: it sets the omero
    display windows from the data.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        shape: Sequence[int],
        dtype,
        axes: str,
        channel_axis: int,
        channel_names: Sequence[str] | None = None,
        calibration: dict[str, Any] | None = None,
        provenance: dict[str, Any] | None = None,
        name: str | None = None,
        levels: Sequence[Sequence[int]] = (),
        colors: Sequence | None = None,
    ):
        path = Path(path)
        self.dtype = np.dtype(dtype)
        # Names may come from any mixer file or input: only storable text goes in.
        channel_names = clean_names(channel_names)
        perm = ome_permutation(axes, channel_axis)
        self.channel_axis = channel_axis
        self.perm = perm
        self.order = list(range(len(shape))) if perm is None else perm
        self.stored_shape = stored_shape(shape, axes, channel_axis)
        stored = self.stored_shape
        chunks = [1] * len(stored)
        spatial = [i for i, a in enumerate(self.order) if a != channel_axis][-2:]
        for i in spatial:
            chunks[i] = min(stored[i], PLANE_CHUNK)
        if perm is None:
            chunks[self.order.index(channel_axis)] = stored[self.order.index(channel_axis)]
        group = open_group(path, "w")
        self.group = group
        shapes = [stored] + [stored_shape(level, axes, channel_axis) for level in levels]
        if perm is not None:
            ome_names = [_OME_LETTERS.get(axes[p], "c") if p != channel_axis else "c" for p in perm]
            group.attrs.update(_ome_attrs(ome_names, calibration or {}, channel_names, name or path.name,
                                          shapes=shapes, dtype=self.dtype, colors=colors))
        group.attrs.update({
            "pixelmix": {
                "axes": "".join(axes[p] for p in self.order),
                "channel_names": None if channel_names is None else list(channel_names),
                "provenance": provenance,
            }
        })
        self.arrays = [
            _create_array(group, shape, tuple(min(c, n) for c, n in zip(chunks, shape)), self.dtype, str(level))
            for level, shape in enumerate(shapes)
        ]
        self.array = self.arrays[0]
        n = shape[channel_axis]
        self._low = np.full(n, np.inf)
        self._high = np.full(n, -np.inf)

    def write(self, index: tuple[slice, ...], block: np.ndarray, level: int = 0) -> None:
        """Store ``block``, all channels of the image at ``index`` (its channel entry is ignored).

        ``level`` is the pyramid level (0: full resolution, whose data range
        sets the display windows).
        """
        target = tuple(slice(None) if i == self.channel_axis else index[i] for i in self.order)
        self.arrays[level][target] = block if self.perm is None else np.transpose(block, self.perm)
        if level == 0 and block.size:
            values = np.moveaxis(block, self.channel_axis, 0).reshape(block.shape[self.channel_axis], -1)
            # fmin/fmax skip NaN (missing pixels) without warnings
            self._low = np.fmin(self._low, np.fmin.reduce(values, axis=1).astype(np.float64))
            self._high = np.fmax(self._high, np.fmax.reduce(values, axis=1).astype(np.float64))

    def finish(self) -> None:
        """Set the omero display windows from the range of the data written to level 0."""
        if "omero" in self.group.attrs:
            self.group.attrs["omero"] = ome_zarr.windows(self.group.attrs["omero"], self._low, self._high, self.dtype)


def is_zarr_group(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory holding a Zarr group (format 2 or 3).

    Examples
    --------
    >>> import tempfile
    >>> from pixelmix.io.zarr import is_zarr_group
    >>> is_zarr_group(tempfile.mkdtemp())
    False
    """
    path = Path(path)
    return path.is_dir() and any((path / name).is_file() for name in (".zgroup", "zarr.json"))


def _is_image(group) -> bool:
    attrs = group.attrs
    return "multiscales" in attrs or ("pixelmix" in attrs and "0" in group and hasattr(group["0"], "shape"))


def find_images(path: str | os.PathLike) -> list[Path] | None:
    """The image groups at ``path``: itself when it is one, else the images it holds; None if no Zarr group.

    A store of ``pixelmix apply -o out.zarr`` holds one image group per
    input, and the group of an input of several series one per series.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from pixelmix.io.zarr import ZarrImage, find_images, open_group
    >>> store = os.path.join(tempfile.mkdtemp(), "out.zarr")
    >>> _ = open_group(store, "w")
    >>> _ = ZarrImage(os.path.join(store, "a"), shape=(1, 8, 8), dtype=np.uint8, axes="CYX", channel_axis=0)
    >>> [p.name for p in find_images(store)]
    ['a']
    """
    path = Path(path)
    if is_zarr_group(path):
        try:
            group = open_group(path, "r")
        except Exception:
            return None
        if _is_image(group):
            return [path]
        children = list(group.group_keys())
    elif path.is_dir() and is_zarr_path(path):  # a store whose root group was never written
        children = [p.name for p in path.iterdir() if is_zarr_group(p)]
    else:
        return None
    found: list[Path] = []
    for name in sorted(children, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k)):
        found.extend(find_images(path / name) or [])
    return found


def describe_image(path: str | os.PathLike) -> dict[str, Any]:
    """What an image group holds: shape, axes, dtype, channel names, scale and units, levels.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from pixelmix.io.zarr import ZarrImage, describe_image
    >>> path = os.path.join(tempfile.mkdtemp(), "out.zarr", "a")
    >>> image = ZarrImage(path, shape=(2, 8, 8), dtype=np.float32, axes="CYX", channel_axis=0,
    ...                   channel_names=["x", "y"], calibration={"PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
    >>> d = describe_image(path)
    >>> d["shape"], d["axes"], d["channel_names"], d["scale"], d["units"]
    ([2, 8, 8], 'cyx', ['x', 'y'], [1.0, 0.5, 0.5], [None, 'micrometer', 'micrometer'])
    """
    path = Path(path)
    group = open_group(path, "r")
    attrs = dict(group.attrs)
    own = attrs.get("pixelmix") or {}
    record: dict[str, Any] = {"path": str(path), "kind": "ome-zarr" if "multiscales" in attrs else "zarr"}
    if "multiscales" in attrs:
        multiscale = attrs["multiscales"][0]
        paths = [d["path"] for d in multiscale["datasets"]]
        record["axes"] = "".join(a["name"] for a in multiscale["axes"])
        record["units"] = [a.get("unit") for a in multiscale["axes"]]
        scale = [t for t in multiscale["datasets"][0].get("coordinateTransformations", []) if t.get("type") == "scale"]
        record["scale"] = scale[0]["scale"] if scale else None
        record["name"] = multiscale.get("name")
    else:
        paths = sorted((k for k in group.array_keys() if k.isdigit()), key=int)
        record["axes"] = own.get("axes")
    arrays = [group[p] for p in paths]
    record["shape"] = list(arrays[0].shape)
    record["dtype"] = np.dtype(arrays[0].dtype).name
    record["levels"] = [list(a.shape) for a in arrays]
    labels = [c.get("label") for c in (attrs.get("omero") or {}).get("channels", [])]
    record["channel_names"] = own["channel_names"] if "channel_names" in own else (labels or None)
    return record
