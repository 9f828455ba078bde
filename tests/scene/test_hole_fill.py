"""Push-pull hole filling: exact where covered, a smooth continuation of the rim elsewhere, and
no colour across the tile borders of the four views."""

from __future__ import annotations

import numpy as np
import pytest

from shareverse_env.scene.hole_fill import EMPTY_GREY, push_pull_fill


def _views(h: int = 12, w: int = 18) -> tuple[np.ndarray, np.ndarray]:
    """Tiled frames (2, 2h, 2w, 3) of random colours and a random covered mask."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (2, 2 * h, 2 * w, 3), dtype=np.uint8)
    valid = rng.random((2, 2 * h, 2 * w)) < 0.6
    return rgb, valid


def test_covered_pixels_are_returned_unchanged() -> None:
    rgb, valid = _views()
    out = push_pull_fill(rgb, valid)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[valid], rgb[valid])


def test_a_hole_takes_the_colour_of_its_rim() -> None:
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[..., 1] = 90  # green everywhere the cache holds
    valid = np.ones((16, 24), bool)
    valid[2:6, 3:9] = False  # a hole inside the front view (8 x 12)
    rgb[~valid] = 255  # whatever the render left there must not show
    out = push_pull_fill(rgb, valid)
    np.testing.assert_array_equal(out[2:6, 3:9], np.broadcast_to([0, 90, 0], (4, 6, 3)))


def test_fill_blends_between_two_rims() -> None:
    """A gap between a dark left and a bright right side is filled monotonically."""
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:8, 8:12] = 200
    valid = np.zeros((16, 24), bool)
    valid[:8, :2] = True
    valid[:8, 10:12] = True
    out = push_pull_fill(rgb, valid)[4, :12, 0].astype(int)
    assert out[0] == 0 and out[11] == 200
    assert (np.diff(out) >= 0).all() and 0 < out[6] < 200


def test_views_do_not_leak_into_each_other() -> None:
    rgb = np.full((16, 24, 3), 250, np.uint8)
    valid = np.zeros((16, 24), bool)
    valid[:8, :12] = True  # only the front view is covered
    out = push_pull_fill(rgb, valid)
    assert (out[:8, :12] == 250).all()
    assert (out[:8, 12:] == EMPTY_GREY).all() and (out[8:] == EMPTY_GREY).all()


def test_leading_axes_are_kept() -> None:
    rgb, valid = _views()
    stacked = push_pull_fill(rgb[None], valid[None])
    np.testing.assert_array_equal(stacked[0], push_pull_fill(rgb, valid))


def test_bad_input_is_named() -> None:
    rgb, valid = _views()
    with pytest.raises(ValueError, match="uint8 rgb"):
        push_pull_fill(rgb.astype(np.float32), valid)
    with pytest.raises(ValueError, match="bool valid"):
        push_pull_fill(rgb, valid[:, :-1])
