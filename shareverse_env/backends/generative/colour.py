"""Colour anchoring: hold each camera's palette to the episode's first frames.

A model that continues its own output drifts in colour: every chunk inherits the last chunk's
tint and adds its own, and the scene cache archives the tint (docs/long_horizon.md measured a
default episode drifting from the weather's grey or blue to orange). The first frames are
exact, and a camera's mean colour changes far less along a drive than the drift does (the
protocol's ``repeat`` floor measures how much). With strength ``s``, each generated frame's
per-view, per-channel mean is moved the fraction ``s`` of the way to the first frame's: a
shift of the whole view, so the model's structure and detail are untouched.

Example:
    >>> import numpy as np
    >>> first = np.full((1, 8, 12, 3), 100, np.uint8)          # one car's tiled first frame
    >>> frames = np.full((1, 2, 8, 12, 3), 140, np.uint8)      # two frames drifted by +40
    >>> out = anchor_colour(frames, view_channel_means(first), 0.5)
    >>> int(out[0, 0, 0, 0, 0]), out.dtype.name
    (120, 'uint8')
"""

from __future__ import annotations

import numpy as np

from shareverse_env.core.tiling import tile_views, untile_views


def view_channel_means(frames: np.ndarray) -> np.ndarray:
    """Per-view, per-channel means ``(..., 4, 3)`` of tiled frames ``(..., 2H, 2W, 3)``."""
    return untile_views(np.asarray(frames)).astype(np.float32).mean(axis=(-3, -2))


def anchor_colour(frames: np.ndarray, reference: np.ndarray, strength: float) -> np.ndarray:
    """``frames`` ``(N, F, 2H, 2W, 3)`` uint8 with each view's channel means moved
    ``strength`` of the way to ``reference`` ``(N, 4, 3)``; uint8 again."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"colour anchor strength must be in [0, 1]; got {strength}")
    if strength == 0.0:
        return frames
    views = untile_views(np.asarray(frames)).astype(np.float32)  # (N, F, 4, H, W, 3)
    means = views.mean(axis=(-3, -2), keepdims=True)
    target = np.asarray(reference, np.float32)[:, None, :, None, None, :]
    views += strength * (target - means)
    return tile_views(np.clip(np.rint(views), 0, 255).astype(np.uint8))
