"""How many pixels a constrained unmixing held at a constraint, for the batch report.

An exact NNLS / FCLS solve holds an abundance at exactly 0.0 where the
non-negativity constraint binds (:mod:`pixelmix.kernels.unmix`), so a pixel
"hit a constraint" when one of its abundances is 0.0. Counted for programs
that end with a non-negative :class:`~pixelmix.unmixer.Unmixer` and a float
output (an integer output rounds small abundances to 0 too).
"""

from __future__ import annotations

import numpy as np

from ..unmixer import Unmixer


class HeldAtZero:
    """Counts, over the outputs it is shown, the pixels with an abundance held at 0.

    Examples
    --------
    >>> import numpy as np
    >>> import pixelmix as pm
    >>> from pixelmix.jobs.constraints import HeldAtZero
    >>> u = pm.unmixer(np.eye(2, 3), nonneg=True)
    >>> count = HeldAtZero(u, channel_axis=-1, dtype=np.float32)
    >>> count.add(u(np.array([[1.0, -1.0, 0.0], [1.0, 2.0, 0.0]], np.float32)))
    >>> count.hits, count.pixels
    (1, 2)
    """

    def __init__(self, program, *, channel_axis: int, dtype):
        last = program.steps[-1] if hasattr(program, "steps") else program
        counted = isinstance(last, Unmixer) and last.nonneg and np.dtype(dtype).kind == "f"
        self.k = last.n_outputs - int(last.residual) if counted else 0
        self.axis = channel_axis
        self.hits = self.pixels = 0

    def add(self, out: np.ndarray) -> None:
        """Count the pixels of one output block (channels on the channel axis)."""
        if not self.k:
            return
        held = (np.moveaxis(out, self.axis, 0)[: self.k] == 0).any(axis=0)
        self.hits += int(np.count_nonzero(held))
        self.pixels += held.size
