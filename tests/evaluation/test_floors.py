"""The trivial floors: per-view blur and mean colour, and the choice of the blur's σ."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from shareverse_env.core.tiling import tile_views, untile_views
from shareverse_env.evaluation import floors as floors_module
from shareverse_env.evaluation.floors import (
    BLUR_SIGMAS,
    blur_sigma,
    blur_views,
    choose_blur_sigmas,
    gaussian_blur,
    mean_colour_views,
)


def _tiled(seed: int = 0, shape=(2, 16, 24, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_blur_views_blurs_each_view_on_its_own() -> None:
    frames = _tiled()
    out = blur_views(frames, 2.0)
    assert out.shape == frames.shape and out.dtype == np.uint8
    views = untile_views(frames)
    expected = tile_views(gaussian_blur(views.reshape(-1, 8, 12, 3), 2.0).reshape(views.shape))
    np.testing.assert_array_equal(out, expected)
    assert out.std() < frames.std() / 2  # noise is smoothed away
    assert blur_views(frames, 0.0) is not None
    np.testing.assert_array_equal(blur_views(frames, 0.0), frames)


def test_mean_colour_views_is_the_per_view_mean() -> None:
    frames = _tiled(1)
    out = mean_colour_views(frames)
    views = untile_views(frames).astype(np.float64)
    means = views.mean(axis=(-3, -2)).round()
    np.testing.assert_array_equal(untile_views(out)[:, :, 0, 0], means)
    assert (untile_views(out) == untile_views(out)[:, :, :1, :1]).all()


def test_floors_refuse_non_uint8_frames() -> None:
    with pytest.raises(TypeError, match="uint8 tiled frames"):
        blur_views(np.zeros((1, 8, 12, 3), np.float32), 1.0)


def test_choose_blur_sigmas_finds_the_best_blur_per_horizon() -> None:
    """Frames whose truth is a smooth version of the first frame: blur predicts it best, and
    the first chunk (a slight blur) wants less blur than the later ones (a heavy one)."""
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (1, 32, 48, 3), dtype=np.uint8)
    early = np.repeat(blur_views(first, 2.0)[:, None], 28, axis=1)
    late = np.repeat(blur_views(first, 8.0)[:, None], 28, axis=1)
    frames = np.concatenate([first[:, None], early, late], axis=1)  # (1, 57, ...)
    (sigma_first, sigma_later), means = choose_blur_sigmas([frames], (0.0, 2.0, 8.0))
    assert (sigma_first, sigma_later) == (2.0, 8.0)
    assert means[2.0][0] > means[0.0][0] and means[8.0][1] > means[2.0][1]
    with pytest.raises(ValueError, match="two chunks"):
        choose_blur_sigmas([frames[:, :29]], (1.0,))


def test_the_recorded_schedule() -> None:
    assert blur_sigma(0) == BLUR_SIGMAS[0] < BLUR_SIGMAS[1] == blur_sigma(1) == blur_sigma(9)


def test_doctests() -> None:
    result = doctest.testmod(floors_module)
    assert result.attempted > 0 and result.failed == 0
