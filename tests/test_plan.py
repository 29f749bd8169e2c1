"""The plan: contiguous pieces of a non-contiguous call, and the tiles of the GPU."""

import numpy as np
import pytest

import pixelmix as pm
from pixelmix import config
from pixelmix.plan import SlabPlan, plan_slabs, tiles


@pytest.mark.parametrize("k", [1, 3, 7])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_pieces_write_every_output_channel(rng, monkeypatch, k, axis):
    """Non-contiguous input and output, cut into many pieces, with fewer or more outputs than inputs."""
    monkeypatch.setattr(config, "CHUNK_BYTES", 256)
    shape = [6, 9, 10]
    shape[axis] = 3
    x = rng.random(tuple(shape))[::-1]  # negative strides: pieces are copied
    m = pm.Mixer(rng.standard_normal((k, 3)), rng.standard_normal(k))
    out_shape = list(shape)
    out_shape[axis] = k
    out = np.zeros(tuple(out_shape)[::-1]).T  # Fortran order: written through buffers
    m(x, channel_axis=axis, out=out)
    np.testing.assert_array_equal(out, m(np.ascontiguousarray(x), channel_axis=axis))


def test_slab_plan_is_lazy_and_indexable():
    plan = plan_slabs((10**6, 10**6, 3), 2, 1, max_bytes=2**20)
    assert isinstance(plan, SlabPlan) and len(plan) == 10**6 * 3  # computed, never listed
    first, last = plan[0], plan[-1]
    assert first == (slice(0, 1), slice(0, 349525), slice(0, 3))
    assert last[0] == slice(10**6 - 1, 10**6) and last[1].stop == 10**6


def test_tiles_cover_the_view_once():
    seen = np.zeros((5, 13), int)
    for a0, a1, b0, b1 in tiles(5, 13, 4):
        assert (a1 - a0) * (b1 - b0) <= 4
        seen[a0:a1, b0:b1] += 1
    assert (seen == 1).all()
