"""Convert every observed RGB frame to grayscale (ITU-R BT.601 luma, as PIL and OpenCV do).

Example:
    >>> import shareverse_env
    >>> from shareverse_env.wrappers import GrayscaleObservation
    >>> env = GrayscaleObservation(shareverse_env.parallel_env(backend="world"))
    >>> obs, infos = env.reset(seed=0)
    >>> obs["agent_0"].shape, infos["agent_0"]["frames"].shape
    ((128, 192, 1), (1, 128, 192, 1))
    >>> flat = GrayscaleObservation(shareverse_env.parallel_env(backend="world"), keep_dim=False)
    >>> flat.observation_space("agent_0").shape
    (128, 192)
"""

from __future__ import annotations

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv
from shareverse_env.wrappers.base import FrameTransformWrapper, image_space

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
"""BT.601 weights of R, G and B."""


class GrayscaleObservation(FrameTransformWrapper):
    """Grayscale frames: ``(H, W, 1)`` with ``keep_dim=True`` (default), else ``(H, W)``.

    Raises:
        ValueError: when the observations are not uint8 RGB images ``(H, W, 3)`` (for instance
            already grayscale).
    """

    def __init__(self, env: ParallelEnv, keep_dim: bool = True) -> None:
        self.keep_dim = bool(keep_dim)
        super().__init__(env)

    def transform_space(self, space: gymnasium.Space, agent: str) -> gymnasium.Space:
        shape, _ = image_space(space, "GrayscaleObservation", agent, channels=(3,))
        out = (*shape[:2], 1) if self.keep_dim else shape[:2]
        return gymnasium.spaces.Box(0, 255, out, np.uint8)

    def transform(self, frames: np.ndarray, agent: str) -> np.ndarray:
        gray = np.clip(np.rint(frames.astype(np.float32) @ LUMA), 0, 255).astype(np.uint8)
        return gray[..., None] if self.keep_dim else gray
