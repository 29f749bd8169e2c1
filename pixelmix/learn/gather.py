"""Steps 1 and 2 of a fit: map a per-block statistics function over the data, merge.

Each fitting module (:mod:`~pixelmix.learn.pca`, ``mnf``, ``lda``, ``lstsq``)
defines a block function (step 1), whose results merge (step 2), and a solve
function (step 3). :func:`gather_source` picks the driver for a
:class:`~pixelmix.learn.source.Source`: a serial merge over
:meth:`Source.blocks <pixelmix.learn.source.Source.blocks>` for in-memory
data and files, or :func:`pixelmix.learn.chunked.merge_chunks` (map on
Dask's scheduler, tree-reduce) when some part is a Dask array. Both are
handed the block function; both read through the source.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from .chunked import merge_chunks
from .solve import check_n_components, fix_signs, input_names, symmetric_eigh
from .source import Part, Source
from .stats import merge

# The solve helpers lived here; kept importable for code that imports them from gather.
__all__ = ["gather", "gather_source", "input_names", "fix_signs", "check_n_components", "symmetric_eigh"]


def gather_source(source: Source, block_fn: Callable[..., Any], *, max_bytes: int | None = None):
    """Merge ``block_fn(block)`` over every block of ``source``, in memory or on Dask.

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.gather import gather_source
    >>> from pixelmix.learn.source import Source
    >>> from pixelmix.learn.stats import block_moments
    >>> x = np.arange(24.0).reshape(6, 2, 2)
    >>> m = gather_source(Source(x), lambda b: block_moments(b.values, b.channel_axis), max_bytes=32)
    >>> m.count, m.mean.tolist()
    (12, [11.0, 12.0])
    """
    if source.is_lazy:  # per-chunk statistics on Dask's scheduler, merged in a tree
        return merge_chunks(source, block_fn, max_bytes=max_bytes)
    return merge(block_fn(block) for block in source.blocks(max_bytes))


def gather(
    data,
    channel_axis,
    block_fn: Callable[..., Any],
    *,
    aux: Sequence[tuple[str, Any]] = (),
    parts: list[Part] | None = None,
    max_bytes: int | None = None,
):
    """Merge ``block_fn(block)`` over every block of ``data`` (steps 1 and 2 of a fit).

    ``gather_source(Source(data, channel_axis, aux=aux, parts=parts), block_fn)``:
    ``data`` is anything a fit accepts, ``aux`` its companion images (see
    :class:`~pixelmix.learn.source.Source`).

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.learn.gather import gather
    >>> from pixelmix.learn.stats import block_moments
    >>> x = np.arange(24.0).reshape(6, 2, 2)
    >>> mask = np.arange(12).reshape(6, 2) % 2 == 0
    >>> m = gather(x, -1, lambda b: block_moments(b.values, b.channel_axis, mask=b.aux[0]),
    ...            aux=[("mask", mask)])
    >>> m.count, m.mean.tolist()
    (6, [10.0, 11.0])
    """
    source = Source(data, channel_axis, aux=aux, parts=parts)
    return gather_source(source, block_fn, max_bytes=max_bytes)
