"""The figure of ``pixelmix fit --report``: explained variance (or SNR) and the first components."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.read import open_stack
from .common import UsageError


def fit_report(mixer, path: str, out: str, *, channel_axis=None, n_images: int = 4) -> None:
    """Save a figure: explained variance (or SNR) and the first component images of ``path``.

    The components are those of the first slab of ``path`` (its first
    plane), subsampled to about 512 pixels a side. Needs matplotlib.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--report needs matplotlib: pip install 'pixelmix[report]'") from None

    with open_stack(path, channel_axis=channel_axis) as stack:
        # The first slab (up to 64 MB), first plane: enough to see the components.
        index, slab = next(stack.iter_slabs(prefetch=0))
        axis = stack.channel_axis
        comps = mixer.apply(slab, channel_axis=axis)
    comps = np.moveaxis(comps, axis, 0)
    comps = comps.reshape((comps.shape[0], -1) + comps.shape[-2:])[:, 0]
    step = max(1, max(comps.shape[1:]) // 512)
    comps = comps[:, ::step, ::step]
    meta = mixer.metadata
    if "explained_variance_ratio" in meta:
        values, label = 100 * np.asarray(meta["explained_variance_ratio"], float), "explained variance (%)"
    elif "snr" in meta:
        values, label = np.asarray(meta["snr"], float), "signal-to-noise ratio"
    else:
        values, label = np.linalg.norm(mixer.weights, axis=1), "weight norm"
    n = min(n_images, comps.shape[0])
    fig, axes = plt.subplots(1, n + 1, figsize=(3.2 * (n + 1), 3.2), squeeze=False)
    ax = axes[0, 0]
    ax.bar(np.arange(1, len(values) + 1), values, color="tab:blue")
    ax.set_xlabel("component")
    ax.set_ylabel(label)
    ax.set_title(f"{meta.get('method', 'fit')}: {mixer.n_inputs} -> {mixer.n_outputs}")
    names = mixer.output_names or [f"component {i + 1}" for i in range(mixer.n_outputs)]
    for i in range(n):
        ax = axes[0, i + 1]
        img = comps[i]
        lo, hi = np.nanpercentile(img, [1, 99]) if np.isfinite(img).any() else (0, 1)
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(names[i])
        ax.axis("off")
    fig.suptitle(Path(path).name)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
