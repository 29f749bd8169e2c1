"""The scikit-image plugin against scikit-image: ``pixelmix bench --suite skimage``.

Every function of :mod:`pixelmix_skimage` next to its namesake in
:mod:`skimage.color`, on one RGB uint8 image of 4096 x 4096 pixels
(512 x 512 with ``--quick``), channels last, as scikit-image users call
them. The inverse conversions (``yuv2rgb``, ``hed2rgb``, ...) get the same
uint8 image, read as values of their colour space: the work per pixel does
not depend on the values (``tiny``: 32 x 32). ``mix_channels`` mixes the three channels into
two with a random matrix; scikit-image's counterpart is the
``img_as_float(image) @ matrix.T`` that its own ``_convert`` runs.

Both sides return the same float64 arrays; the times include allocating
them.
"""

from __future__ import annotations

import numpy as np

from . import Case, Impl, speedup

# Speed-ups over scikit-image that issue 14 asks for (the floors).
GOALS = {"rgb2hed": 5.0}


def _pair(name: str, image: np.ndarray):
    """(pixelmix's call, scikit-image's call) of function ``name`` on ``image``."""
    import pixelmix_skimage as pxs
    from skimage import color

    ours, theirs = getattr(pxs, name), getattr(color, name)
    if name == "separate_stains":
        return (lambda: ours(image, color.hdx_from_rgb)), (lambda: theirs(image, color.hdx_from_rgb))
    if name == "combine_stains":
        return (lambda: ours(image, color.rgb_from_hdx)), (lambda: theirs(image, color.rgb_from_hdx))
    return (lambda: ours(image)), (lambda: theirs(image))


SIDES = {"full": 4096, "quick": 512, "tiny": 32}


def cases(size: str, backend: str) -> list[Case]:
    import pixelmix_skimage as pxs
    from pixelmix_skimage.backend import FUNCTIONS
    from skimage.util import img_as_float

    side = SIDES[size]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    label = f"uint8 RGB {side}x{side}"
    out = []
    for name in FUNCTIONS:
        ours, theirs = _pair(name, image)
        k = 1 if name == "rgb2gray" else 3
        out.append(
            Case(
                name=f"{name}: {label} -> float64",
                impls={"pixelmix_skimage": Impl(ours, "pixelmix"), "scikit-image": Impl(theirs, "skimage")},
                bytes_moved=image.nbytes + image.size // 3 * k * 8,
                summarize=lambda t, goal=GOALS.get(name): [speedup(t, "pixelmix_skimage", "scikit-image", goal)],
            )
        )
    matrix = rng.standard_normal((2, 3))
    out.append(
        Case(
            name=f"mix_channels 3 -> 2: {label} -> float64",
            impls={
                "pixelmix_skimage": Impl(lambda: pxs.mix_channels(image, matrix), "pixelmix"),
                "scikit-image (img_as_float @ m.T)": Impl(lambda: img_as_float(image) @ matrix.T, "numpy"),
            },
            bytes_moved=image.nbytes + image.size // 3 * 2 * 8,
            notes=["scikit-image has no public C -> K mix; this is what its _convert does"],
        )
    )
    return out
