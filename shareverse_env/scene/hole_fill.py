"""Holes of a cache render filled by push-pull: a smooth continuation of the colours around them.

A cache render leaves holes where no frame has seen the scene. The cheapest fill that continues
the scene around a hole is *push-pull*: average the covered pixels down an image pyramid (each
level keeps its colour sum and its covered share), then come back up, each level's pixels taking
their own average where they are covered and the coarser level's (bilinearly upsampled) colour
where they are not, blended by the covered share. Covered pixels keep their exact values; a hole
gets the colours of its rim, spreading smoothly inwards; a view with nothing covered is mid-grey.

Views are filled one by one: a tiled ``(…, 2H, 2W)`` frame holds four cameras, and colour must
not leak across the tile borders.

This is the ``cache_fill`` reference of :mod:`shareverse_env.evaluation` — the fill any
generator of the holes has to beat.

Example:
    >>> import numpy as np
    >>> rgb = np.zeros((8, 12, 3), np.uint8); rgb[:, :, 0] = 200  # four 4 x 6 views, all red
    >>> valid = np.zeros((8, 12), bool); valid[:, :3] = True  # left half of the left views
    >>> out = push_pull_fill(rgb, valid)
    >>> out[1, :6, 0].tolist(), out[1, 6:, 0].tolist()  # filled from the rim; nothing covered
    ([200, 200, 200, 200, 200, 200], [128, 128, 128, 128, 128, 128])
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from shareverse_env.core.tiling import tile_views, untile_views

EMPTY_GREY = 128.0
"""Colour of a view with no covered pixel."""


def _push_pull(colour: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``colour (N, 3, H, W)`` (any values where ``weight`` is 0) and ``weight (N, 1, H, W)``
    in [0, 1] → ``(N, 3, H, W)``: exact where ``weight`` is 1, filled elsewhere."""
    sums, weights = [colour * weight], [weight]
    while max(sums[-1].shape[-2:]) > 1:
        # ceil_mode keeps odd edges; the same divisor cancels in sum / weight
        sums.append(F.avg_pool2d(sums[-1], 2, ceil_mode=True))
        weights.append(F.avg_pool2d(weights[-1], 2, ceil_mode=True))
    coarse_weight = weights[-1].clamp_min(1e-8)
    filled = torch.where(
        weights[-1] > 0, sums[-1] / coarse_weight, torch.full_like(sums[-1], EMPTY_GREY)
    )
    for level_sum, level_weight in zip(reversed(sums[:-1]), reversed(weights[:-1]), strict=True):
        up = F.interpolate(filled, size=level_sum.shape[-2:], mode="bilinear", align_corners=False)
        # level_sum is colour * share: the share of own colour, the rest from the coarser level
        own = level_sum / level_weight.clamp_min(1e-8)
        filled = level_weight * own + (1.0 - level_weight) * up
    return filled


def push_pull_fill(rgb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Tiled frames ``rgb (..., 2H, 2W, 3)`` uint8 with their holes (``~valid (..., 2H, 2W)``)
    filled by push-pull, view by view; covered pixels are returned unchanged."""
    rgb = np.asarray(rgb)
    valid = np.asarray(valid, dtype=bool)
    if rgb.dtype != np.uint8 or rgb.shape[-1] != 3 or valid.shape != rgb.shape[:-1]:
        raise ValueError(
            f"push_pull_fill needs uint8 rgb (..., 2H, 2W, 3) and bool valid (..., 2H, 2W); got "
            f"{rgb.dtype} {rgb.shape} and {valid.shape}"
        )
    lead, tiled_hw = rgb.shape[:-3], rgb.shape[-3:-1]
    views = untile_views(rgb.reshape(-1, *tiled_hw, 3))  # (N, 4, H, W, 3)
    masks = untile_views(valid.reshape(-1, *tiled_hw)[..., None])  # (N, 4, H, W, 1)
    height, width = views.shape[2:4]
    colour = torch.from_numpy(views.astype(np.float32)).reshape(-1, height, width, 3)
    weight = torch.from_numpy(masks.astype(np.float32)).reshape(-1, height, width, 1)
    filled = _push_pull(colour.permute(0, 3, 1, 2), weight.permute(0, 3, 1, 2))
    filled = filled.permute(0, 2, 3, 1).reshape(views.shape).numpy()
    out = np.clip(np.rint(filled), 0, 255).astype(np.uint8)
    out = np.where(masks, views, out)  # exact where covered, whatever the float rounding
    return tile_views(out).reshape(*lead, *tiled_hw, 3)
