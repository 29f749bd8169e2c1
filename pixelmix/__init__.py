"""pixelmix: fast 1x1 channel mixing for multispectral and hyperspectral stacks.

Importing pixelmix compiles nothing and imports no heavy library: the Numba
kernels compile on first use (and are cached on disk).

Examples
--------
>>> import numpy as np
>>> import pixelmix as pm
>>> m = pm.Mixer([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], output_names=["rg", "b"])
>>> m(np.ones((4, 4, 3), dtype=np.uint8)).shape
(4, 4, 2)
"""

from . import ops
from .mixer import Mixer, mix
from .ops import Program, load
from . import presets
from .learn import estimate_rank, find_endmembers, fit_lda, fit_lstsq, fit_mnf, fit_pca, fit_spillover, unmixer
from .networks import from_torch

__version__ = "0.1.0"

__all__ = ["Mixer", "Program", "mix", "load", "ops", "__version__"]
__all__ += ["fit_pca", "fit_mnf", "fit_lda", "fit_lstsq", "unmixer", "from_torch", "presets"]
__all__ += ["find_endmembers", "estimate_rank", "fit_spillover"]
