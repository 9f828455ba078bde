"""PSNR, SSIM and the detail ratio: known values, masks, batching, reference formulas, errors."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from shareverse_env.core.tiling import untile_views
from shareverse_env.evaluation import metrics as metrics_module
from shareverse_env.evaluation.metrics import (
    detail_ratio_tiled,
    gaussian_window,
    gradient_energy,
    psnr,
    ssim,
    ssim_map,
    ssim_tiled,
)

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


@pytest.fixture
def image() -> np.ndarray:
    """A smooth image with some texture, values well inside [0, 255]."""
    y, x = np.mgrid[0:40, 0:56]
    base = 128 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0)
    return np.stack([base, base * 0.8 + 20, 255 - base], axis=-1).round().astype(np.uint8)


def test_identical_images_give_infinite_psnr_unless_capped_and_ssim_one(image) -> None:
    assert psnr(image, image) == math.inf
    assert psnr(image, image, max_db=60.0) == 60.0
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)


def test_known_mse_gives_known_psnr(image) -> None:
    shifted = image + np.uint8(5)  # no overflow: the image stays below 250
    assert psnr(image, shifted) == pytest.approx(10 * math.log10(255**2 / 25))
    half = image.copy()
    half[:, :28] = 0  # the MSE is computed, not assumed: check against numpy directly
    mse = np.mean((image.astype(float) - half) ** 2)
    assert psnr(image, half) == pytest.approx(10 * math.log10(255**2 / mse))


def test_mask_selects_the_pixels(image) -> None:
    other = image.copy()
    other[:10] = 0  # differ only in the top rows
    mask = np.zeros(image.shape[:2], bool)
    mask[20:] = True
    assert psnr(image, other, mask=mask) == math.inf
    mask[5] = True  # one differing row inside the mask
    sq = (image[5].astype(float) - other[5]) ** 2
    mse = sq.sum() / (mask.sum() * 3)
    assert psnr(image, other, mask=mask) == pytest.approx(10 * math.log10(255**2 / mse))
    assert np.isnan(psnr(image, other, mask=np.zeros_like(mask)))
    assert np.isnan(ssim(image, other, mask=np.zeros_like(mask)))


def test_leading_batch_dimensions(image) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(-20, 21, (2, 3, *image.shape))
    batch = np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)
    ref = np.broadcast_to(image, batch.shape).copy()
    p, s = psnr(ref, batch), ssim(ref, batch)
    assert p.shape == s.shape == (2, 3)
    assert p[1, 2] == pytest.approx(psnr(image, batch[1, 2]))
    assert s[0, 1] == pytest.approx(ssim(image, batch[0, 1]))


def test_ssim_decreases_with_noise(image) -> None:
    rng = np.random.default_rng(1)
    scores = [
        ssim(image, np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8))
        for sigma in (2, 10, 40)
    ]
    assert 1 > scores[0] > scores[1] > scores[2]


def test_ssim_of_a_brightness_shift_of_a_flat_image() -> None:
    """Flat images: only the luminance term is left, (2·μa·μb + C1) / (μa² + μb² + C1)."""
    a = np.full((16, 16, 3), 100, np.uint8)
    b = np.full((16, 16, 3), 110, np.uint8)
    expected = (2 * 100 * 110 + C1) / (100**2 + 110**2 + C1)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-12)


def test_ssim_map_matches_the_window_formula(image) -> None:
    """Every map pixel is Wang et al.'s SSIM of the 11×11 Gaussian window around it."""
    rng = np.random.default_rng(2)
    other = np.clip(image + rng.normal(0, 15, image.shape), 0, 255).astype(np.uint8)
    smap = ssim_map(image, other)
    assert smap.shape == (40 - 10, 56 - 10)
    g = np.outer(gaussian_window(), gaussian_window())
    assert g.sum() == pytest.approx(1.0)
    for i, j in ((0, 0), (7, 31), (29, 45)):
        values = []
        for c in range(3):
            x = image[i : i + 11, j : j + 11, c].astype(float)
            y = other[i : i + 11, j : j + 11, c].astype(float)
            mx, my = (g * x).sum(), (g * y).sum()
            vx, vy = (g * (x - mx) ** 2).sum(), (g * (y - my) ** 2).sum()
            cov = (g * (x - mx) * (y - my)).sum()
            values.append(
                ((2 * mx * my + C1) * (2 * cov + C2)) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
            )
        assert smap[i, j] == pytest.approx(np.mean(values), abs=1e-9)
    assert ssim(image, other) == pytest.approx(smap.mean())
    assert ssim(other, image) == pytest.approx(ssim(image, other))


def test_masked_ssim_averages_the_map_over_masked_window_centres(image) -> None:
    other = np.clip(image.astype(int) - 30, 0, 255).astype(np.uint8)
    mask = np.zeros(image.shape[:2], bool)
    mask[10:20, 5:50] = True
    smap = ssim_map(image, other)
    expected = smap[mask[5:-5, 5:-5]].mean()
    assert ssim(image, other, mask=mask) == pytest.approx(expected)


def test_ssim_tiled_keeps_windows_inside_each_view() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    b = np.clip(a + rng.normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    per_view = ssim(untile_views(a), untile_views(b))  # (2, 4)
    assert ssim_tiled(a, b) == pytest.approx(per_view.mean(axis=1))
    mask = np.zeros((2, 64, 96), bool)
    mask[:, :32, :48] = True  # the front view only
    assert ssim_tiled(a, b, mask=mask) == pytest.approx(per_view[:, 0])


@pytest.mark.parametrize(
    ("a", "b", "mask", "error", "message"),
    [
        (np.zeros((8, 8, 3)), np.zeros((8, 8, 3)), None, TypeError, "uint8"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8), None, ValueError, "same shape"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), None, ValueError, r"\(\.\.\., H, W, 3\)"),
        (np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 4), np.uint8), None, ValueError, "H, W, 3"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), np.ones((8, 8)), TypeError, "bool"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), np.ones((8, 7), bool), ValueError, "mask must have shape"),
    ],
)  # fmt: skip
def test_bad_input_is_named(a, b, mask, error, message) -> None:
    with pytest.raises(error, match=message):
        psnr(a, b, mask=mask)


def test_ssim_needs_a_whole_window() -> None:
    small = np.zeros((8, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="at least 11"):
        ssim(small, small)


def test_gradient_energy_is_the_mean_squared_luma_difference() -> None:
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, (2, 9, 13, 3), dtype=np.uint8)
    luma = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    dy, dx = np.diff(luma, axis=1), np.diff(luma, axis=2)
    expected = ((dy**2).sum(axis=(1, 2)) + (dx**2).sum(axis=(1, 2))) / (dy[0].size + dx[0].size)
    assert gradient_energy(img) == pytest.approx(expected)
    assert gradient_energy(np.full((5, 5, 3), 77, np.uint8)) == 0.0


def test_detail_ratio_tells_blur_from_detail_and_noise(image) -> None:
    rng = np.random.default_rng(5)
    truth = np.concatenate([np.concatenate([image, image[::-1]], 1)] * 2, 0)  # (80, 112, 3)
    truth = np.clip(truth + rng.normal(0, 20, truth.shape), 0, 255).astype(np.uint8)
    box = sum(
        np.roll(truth.astype(np.float64), (dy, dx), (0, 1))
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )
    blurred = (box / 9).round().astype(np.uint8)
    noisy = np.clip(truth + rng.normal(0, 30, truth.shape), 0, 255).astype(np.uint8)
    frames = np.stack([truth, blurred, noisy])
    ratio = detail_ratio_tiled(frames, np.stack([truth] * 3))
    assert ratio[0] == 1.0
    assert ratio[1] < 0.5 < 1.5 < ratio[2]


def test_detail_ratio_ignores_the_borders_between_views() -> None:
    # Four flat views of different colours: no detail inside any view, only at the tile seams.
    flat = np.zeros((32, 48, 3), np.uint8)
    flat[:16, 24:] = 80
    flat[16:, :24] = 160
    flat[16:, 24:] = 240
    truth = np.random.default_rng(6).integers(0, 256, flat.shape, dtype=np.uint8)
    assert detail_ratio_tiled(flat, truth) == 0.0
    assert math.isnan(detail_ratio_tiled(truth, flat))  # a flat truth: no reference detail


def test_detail_ratio_bad_input() -> None:
    with pytest.raises(ValueError, match="even height and width"):
        detail_ratio_tiled(np.zeros((9, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        detail_ratio_tiled(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., H, W, 3\); got \(8, 8\)"):
        gradient_energy(np.zeros((8, 8), np.uint8))
    with pytest.raises(TypeError, match="uint8 images"):
        gradient_energy(np.zeros((8, 8, 3), np.float32))


def test_doctests() -> None:
    result = doctest.testmod(metrics_module)
    assert result.attempted > 0 and result.failed == 0
