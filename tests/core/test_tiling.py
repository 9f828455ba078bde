"""The 2×2 tiling of the four views, the one implementation for numpy arrays and torch tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shareverse_env.core.tiling import tile_views, untile_views


def test_tiling_layout_and_round_trip():
    views = np.stack([np.full((2, 3, 1), i) for i in range(4)])  # view index as pixel value
    tiled = tile_views(views)
    assert tiled.shape == (4, 6, 1)
    assert tiled[0, 0, 0] == 0 and tiled[0, 3, 0] == 1  # top row: front, rear
    assert tiled[2, 0, 0] == 2 and tiled[2, 3, 0] == 3  # bottom row: left, right
    np.testing.assert_array_equal(untile_views(tiled), views)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, bool])
def test_numpy_and_torch_agree_bit_for_bit(dtype):
    rng = np.random.default_rng(0)
    views = (rng.random((2, 3, 4, 8, 12, 5)) * 255).astype(dtype)
    tiled = tile_views(views)
    assert tiled.dtype == views.dtype and tiled.flags.c_contiguous
    as_torch = tile_views(torch.from_numpy(views))
    assert isinstance(as_torch, torch.Tensor)
    assert as_torch.numpy().tobytes() == tiled.tobytes()
    back = untile_views(torch.from_numpy(tiled))
    assert back.numpy().tobytes() == views.tobytes() == untile_views(tiled).tobytes()


def test_results_never_alias_the_input():
    # One-pixel-high views are the shape for which a rearrangement could be a mere view.
    for views in (np.zeros((4, 1, 3, 2)), torch.zeros(4, 1, 3, 2)):
        tiled = tile_views(views)
        tiled[...] = 1
        assert not views.any()
        back = untile_views(tiled)
        back[...] = 2
        assert (tiled == 1).all()


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="4 views on axis -4"):
        tile_views(np.zeros((3, 2, 2, 1)))
    with pytest.raises(ValueError, match="even height and width"):
        untile_views(np.zeros((5, 4, 1)))
