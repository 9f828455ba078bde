"""The 2×2 tiling of a car's four views into one frame, for numpy arrays and torch tensors alike.

A tiled frame puts the views of :data:`~shareverse_env.core.geometry.VIEW_NAMES` row-major as
``[[front, rear], [left, right]]``. This module is the one place that layout is written down:
everything that splits a frame into its views or joins them back (the renderer, the scene
cache, the depth network, the metrics) calls :func:`tile_views` and :func:`untile_views`. Both
only move elements (no arithmetic), so the result is bit-identical whatever the array library,
and they return the same kind of array they are given.

Example:
    >>> import numpy as np, torch
    >>> views = np.arange(4 * 2 * 3).reshape(4, 2, 3, 1)  # four 2×3 one-channel views
    >>> tiled = tile_views(views)
    >>> tiled.shape, tiled[0, :, 0].tolist(), tiled[2:, 0, 0].tolist()
    ((4, 6, 1), [0, 1, 2, 6, 7, 8], [12, 15])
    >>> bool((untile_views(tiled) == views).all())
    True
    >>> torch.equal(tile_views(torch.from_numpy(views)), torch.from_numpy(tiled))
    True
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from einops import rearrange

ArrayT = TypeVar("ArrayT")
"""A numpy array or a torch tensor (anything einops can rearrange)."""

TILE_ROWS = 2
"""Rows of views in a tiled frame (front, rear on the first; left, right on the second)."""

TILE_COLS = 2
"""Columns of views in a tiled frame."""


def tile_views(views: ArrayT) -> ArrayT:
    """Tile ``(..., 4, H, W, C)`` views into ``(..., 2H, 2W, C)`` as ``[[front, rear], [left, right]]``.

    Works on numpy arrays and torch tensors; returns the same kind.

    Example:
        >>> import numpy as np
        >>> tile_views(np.zeros((5, 4, 8, 12, 3), np.uint8)).shape
        (5, 16, 24, 3)
    """
    if views.ndim < 4 or views.shape[-4] != TILE_ROWS * TILE_COLS:
        raise ValueError(f"expected 4 views on axis -4, got shape {tuple(views.shape)}")
    out = rearrange(views, "... (r c) h w ch -> ... (r h) (c w) ch", r=TILE_ROWS, c=TILE_COLS)
    return _fresh(out, views)


def untile_views(tiled: ArrayT) -> ArrayT:
    """Inverse of :func:`tile_views`: ``(..., 2H, 2W, C)`` → ``(..., 4, H, W, C)``.

    Works on numpy arrays and torch tensors; returns the same kind.

    Example:
        >>> import numpy as np
        >>> untile_views(np.zeros((5, 16, 24, 3), np.uint8)).shape
        (5, 4, 8, 12, 3)
    """
    if tiled.ndim < 3 or tiled.shape[-3] % TILE_ROWS or tiled.shape[-2] % TILE_COLS:
        raise ValueError(f"tiled frames need even height and width, got {tuple(tiled.shape)}")
    out = rearrange(tiled, "... (r h) (c w) ch -> ... (r c) h w ch", r=TILE_ROWS, c=TILE_COLS)
    return _fresh(out, tiled)


def _fresh(out: ArrayT, source: ArrayT) -> ArrayT:
    """``out``, copied when it is a view of ``source``: a rearrangement is a view only for
    degenerate shapes (views one pixel high), and the result must never alias its input."""
    if isinstance(out, np.ndarray):
        return out.copy() if np.may_share_memory(out, source) else out
    same = out.untyped_storage().data_ptr() == source.untyped_storage().data_ptr()
    return out.clone() if same else out
