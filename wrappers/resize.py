"""Resize every observed frame to ``(h, w)`` with an antialiased linear filter.

Pure numpy and exact: each output pixel is a weighted mean of the input pixels under a triangle
filter that widens when shrinking (as PIL's bilinear resize does), so downscaling does not
alias, and upscaling is ordinary bilinear interpolation. The transform is separable, one small
matrix per axis, and runs on all 28 frames of a chunk at once.

Resizing the tiled 2×2 frame blends a pixel or two across the seams between views; apply
:class:`~shareverse_env.wrappers.SelectViews` first when that matters.

Example:
    >>> import shareverse_env
    >>> from shareverse_env.wrappers import ResizeObservation
    >>> env = ResizeObservation(shareverse_env.parallel_env(backend="world"), (64, 96))
    >>> obs, infos = env.reset(seed=0)
    >>> obs["agent_0"].shape, obs["agent_0"].dtype.name
    ((64, 96, 3), 'uint8')
    >>> env.observation_space("agent_0").contains(obs["agent_0"])
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv
from shareverse_env.wrappers.base import FrameTransformWrapper, image_space


@lru_cache(maxsize=32)
def resample_matrix(size_in: int, size_out: int) -> np.ndarray:
    """``(size_out, size_in)`` float32 weights of the antialiased linear filter (rows sum to 1).

    Example:
        >>> resample_matrix(2, 4).astype(float).round(2).tolist()      # upscaling: bilinear
        [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]]
        >>> resample_matrix(4, 2).astype(float).round(2).tolist()      # shrinking: wider
        [[0.43, 0.43, 0.14, 0.0], [0.0, 0.14, 0.43, 0.43]]
    """
    scale = size_in / size_out
    support = max(scale, 1.0)  # the triangle widens with the shrink factor: antialiasing
    centres = (np.arange(size_out) + 0.5) * scale
    x = np.arange(size_in) + 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(x[None, :] - centres[:, None]) / support)
    # Near the borders part of the filter falls outside the image: renormalise (edge clamp).
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


class ResizeObservation(FrameTransformWrapper):
    """Resize each agent's frames (observation and ``infos["frames"]``) to ``shape = (h, w)``.

    Args:
        env: a parallel env whose observations are uint8 images ``(H, W)`` or ``(H, W, C)``.
        shape: the output ``(height, width)`` in pixels, positive integers.

    Raises:
        ValueError: for a bad ``shape`` or an observation space that is not a uint8 image.
    """

    def __init__(self, env: ParallelEnv, shape: Sequence[int]) -> None:
        size = tuple(shape) if isinstance(shape, Sequence) else ()
        if len(size) != 2 or not all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in size
        ):
            raise ValueError(
                f"ResizeObservation: shape must be (height, width), two positive integers; "
                f"got {shape!r}"
            )
        self.shape = (int(size[0]), int(size[1]))
        super().__init__(env)

    def transform_space(self, space: gymnasium.Space, agent: str) -> gymnasium.Space:
        shape, has_channels = image_space(space, "ResizeObservation", agent)
        out = self.shape + shape[2:] if has_channels else self.shape
        return gymnasium.spaces.Box(0, 255, out, np.uint8)

    def transform(self, frames: np.ndarray, agent: str) -> np.ndarray:
        has_channels = len(self._spaces[agent].shape) == 3
        x = frames if has_channels else frames[..., None]
        rows = resample_matrix(x.shape[-3], self.shape[0])
        cols = resample_matrix(x.shape[-2], self.shape[1])
        # Two stacked matmuls of fixed shapes: each frame is summed in the same order whatever
        # the batch (an optimised einsum picks its contraction by shape, so a chunk's last frame
        # could round differently from the same frame resized alone).
        x = x.astype(np.float32)
        tall = rows @ x.reshape(*x.shape[:-2], -1)  # (..., o, w * c)
        tall = tall.reshape(*tall.shape[:-1], x.shape[-2], x.shape[-1])
        out = np.swapaxes(np.swapaxes(tall, -1, -2) @ cols.T, -1, -2)  # (..., o, p, c)
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        return out if has_channels else out[..., 0]
