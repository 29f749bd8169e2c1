"""Zarr and OME-Zarr output: one image group per input.

An image group holds one array ``"0"``. When the image's axes can be put in
OME-Zarr's ``t, c, z, y, x`` order the group is OME-Zarr (v0.4, on Zarr
format 2: ``multiscales`` with the axes and the physical pixel sizes,
``omero`` with the channel names) and the array is stored in that order;
otherwise it is a plain Zarr array in the image's own axis order. Either
way the ``pixelmix`` attribute records the stored axes, the channel names
and the provenance. ``zarr`` is imported only when a group is opened.

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

from .names import clean_names

__all__ = ["ZarrImage", "is_zarr_path", "is_complete", "open_group", "ome_permutation", "stored_shape", "dir_size",
           "read_provenance", "wait_for_writes"]

# OME-Zarr (v0.4) axes: tifffile letter -> (name, type), in the order OME-Zarr requires.
_OME_ORDER = "tczyx"
_OME_LETTERS = {"T": "t", "C": "c", "S": "c", "Z": "z", "Y": "y", "X": "x"}
_OME_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
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


def _ome_attrs(names: list[str], calibration, channel_names, stem: str) -> dict[str, Any]:
    scale = []
    axes = []
    for name in names:
        axis: dict[str, Any] = {"name": name, "type": _OME_TYPES[name]}
        size = calibration.get(f"PhysicalSize{name.upper()}") if name in "zyx" else None
        unit = str(calibration.get(f"PhysicalSize{name.upper()}Unit", "")).lower()
        if size is not None and unit in ("µm", "um", "micrometer", "micron"):
            axis["unit"] = "micrometer"
        scale.append(float(size) if size else 1.0)
        axes.append(axis)
    attrs: dict[str, Any] = {
        "multiscales": [
            {
                "version": "0.4",
                "name": stem,
                "axes": axes,
                "datasets": [
                    {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
                ],
            }
        ]
    }
    if channel_names is not None:
        attrs["omero"] = {
            "version": "0.4",
            "channels": [{"label": str(n), "active": True} for n in channel_names],
        }
    return attrs


def open_group(path: Path, mode: str):
    """Open (or with ``mode="w"``/``"a"`` create) the Zarr group at ``path``, Zarr format 2."""
    import zarr

    if int(zarr.__version__.split(".")[0]) >= 3:
        # OME-Zarr v0.4 is defined on Zarr format 2.
        return zarr.open_group(str(path), mode=mode, zarr_format=2)
    return zarr.open_group(str(path), mode=mode)


def _create_array(group, shape, chunks, dtype):
    if hasattr(group, "create_array"):
        return group.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
    return group.create_dataset("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0)


def is_complete(path: Path, shape, dtype) -> bool:
    """Whether ``path`` holds an image group with array "0" of (stored) ``shape`` and ``dtype``."""
    try:
        array = open_group(path, "r")["0"]
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
        ``TiffStack.calibration``: OME ``PhysicalSize*`` go to the scale.
    provenance : dict, optional
        JSON-ready record of how the image was made.
    name : str, optional
        The image's name in the OME metadata (default: the last part of ``path``).
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
    ):
        path = Path(path)
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
        if perm is not None:
            ome_names = [_OME_LETTERS.get(axes[p], "c") if p != channel_axis else "c" for p in perm]
            group.attrs.update(_ome_attrs(ome_names, calibration or {}, channel_names, name or path.name))
        group.attrs.update({
            "pixelmix": {
                "axes": "".join(axes[p] for p in self.order),
                "channel_names": None if channel_names is None else list(channel_names),
                "provenance": provenance,
            }
        })
        self.array = _create_array(group, stored, tuple(chunks), np.dtype(dtype))

    def write(self, index: tuple[slice, ...], block: np.ndarray) -> None:
        """Store ``block``, all channels of the image at ``index`` (its channel entry is ignored)."""
        target = tuple(slice(None) if i == self.channel_axis else index[i] for i in self.order)
        self.array[target] = block if self.perm is None else np.transpose(block, self.perm)
