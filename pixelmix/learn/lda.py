"""Linear discriminant analysis from streamed per-class moments.

The discriminant directions maximise between-class over within-class
variance: the generalised eigenvectors of ``(S_b, S_w)``, scaled so each
output has unit pooled within-class variance (the unbiased estimate, with
``n - n_classes`` degrees of freedom: scikit-learn's
``LinearDiscriminantAnalysis.transform`` divides by ``n`` instead, so its
outputs are these times ``sqrt(n / (n - n_classes))``, up to sign).

Steps (for Dask or multi-file drivers):

1. ``lda_block_statistics(values, channel_axis, labels)`` returns the
   block's :class:`~pixelmix.learn.stats.GroupMoments` (label 0 = unlabelled);
2. ``GroupMoments.merge`` combines them;
3. ``solve_lda(group_moments, n_components, input_names=)`` returns the Mixer.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..mixer import Mixer
from .gather import gather_source
from .solve import blas_on_one_thread, check_n_components, fix_signs, input_names
from .source import Source
from .stats import GroupMoments, block_moments

__all__ = ["fit_lda", "lda_block_statistics", "solve_lda"]


def lda_block_statistics(values, channel_axis=-1, labels=None) -> GroupMoments:
    """Step 1: per-label moments of one block (label 0 left out)."""
    if labels is None:
        raise ValueError("LDA needs labels: an integer image with the data's spatial shape")
    return block_moments(values, channel_axis, labels=labels)


@blas_on_one_thread
def solve_lda(
    groups: GroupMoments,
    n_components: int | None = None,
    *,
    input_names: Sequence[str] | None = None,
) -> Mixer:
    """Step 3: the LDA mixer from merged per-class moments."""
    import scipy.linalg

    classes = sorted(label for label, m in groups.groups.items() if m.count > 0)
    if len(classes) < 2:
        raise ValueError(
            f"LDA needs at least two classes with labelled, valid pixels, got "
            f"{len(classes)} ({classes}); label 0 means unlabelled"
        )
    moments = [groups.groups[c] for c in classes]
    n_channels = moments[0].n_channels
    counts = np.array([m.count for m in moments], dtype=np.float64)
    total = float(counts.sum())
    means = np.array([m.mean for m in moments])
    overall = counts @ means / total
    within = sum(m.scatter for m in moments)
    centred = means - overall
    between = (centred * counts[:, None]).T @ centred
    n_max = min(len(classes) - 1, n_channels)
    if n_components is None:
        k = n_max
    else:
        k = check_n_components(
            n_components, n_max, "LDA", f"at most n_classes - 1 = {len(classes) - 1} and the "
            f"number of channels {n_channels}"
        )
    dof = total - len(classes)
    if dof <= 0:
        raise ValueError(f"LDA needs more labelled pixels ({int(total)}) than classes ({len(classes)})")
    pooled = within / dof
    try:
        values, vectors = scipy.linalg.eigh((between + between.T) / 2, (pooled + pooled.T) / 2)
    except np.linalg.LinAlgError as exc:
        raise ValueError(
            "the within-class covariance is singular (a constant or duplicated channel?); "
            "drop such channels or fit PCA first and run LDA on the components"
        ) from exc
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    # eigh normalises v' pooled v = 1: unit within-class variance per output,
    # pooled with n - n_classes degrees of freedom (scikit-learn divides by n,
    # so its outputs are ours times sqrt(n / (n - n_classes))).
    weights = vectors[:, :k].T
    weights *= fix_signs(weights)[:, None]
    values = np.maximum(values, 0.0)
    ratio = values / values.sum() if values.sum() > 0 else values
    return Mixer(
        weights,
        -weights @ overall,
        input_names=input_names,
        output_names=[f"LD{i + 1}" for i in range(k)],
        metadata={
            "method": "lda",
            "n_components": k,
            "classes": classes,
            "class_counts": counts.astype(int).tolist(),
            "class_means": means,
            "priors": counts / total,
            "mean": overall,
            "eigenvalues": values[:k],
            "explained_variance_ratio": ratio[:k],
            "n_pixels": int(total),
        },
    )


def fit_lda(data, labels, n_components: int | None = None, *, channel_axis: int = -1) -> Mixer:
    """Linear discriminant analysis of labelled pixels, as a Mixer.

    Parameters
    ----------
    data : ndarray, np.memmap, str or path, dask.array.Array, or list of these
        Pixels with channels on ``channel_axis``.
    labels : ndarray of int
        The data's spatial shape (a list for list data): the class of each
        pixel, 0 for unlabelled pixels (left out of the fit).
    n_components : int, optional
        Discriminants kept; at most ``n_classes - 1`` (the default) and C.
    channel_axis : int
        The channel axis of array data.

    Returns
    -------
    Mixer
        Outputs "LD1", ...: the discriminant axes, centred on the overall
        mean, with unit pooled within-class variance; ``metadata`` holds
        ``classes``, ``class_means``, ``priors``, ``explained_variance_ratio``.

    Examples
    --------
    >>> import numpy as np
    >>> import pixelmix as pm
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat(np.array([1, 2, 0]), 100).reshape(10, 30)
    >>> x = rng.normal(size=(10, 30, 4)) + labels[..., None] * [3.0, 0, 0, 0]
    >>> lda = pm.fit_lda(x, labels)
    >>> lda.output_names, lda.metadata["classes"]
    (('LD1',), [1, 2])
    """
    if labels is None:
        raise ValueError("labels is None; pass an integer image with the data's spatial shape")
    source = Source(data, channel_axis, aux=[("labels", labels)])
    groups = gather_source(source, lambda b: lda_block_statistics(b.values, b.channel_axis, b.aux[0]))
    return solve_lda(groups, n_components, input_names=input_names(source.parts))
