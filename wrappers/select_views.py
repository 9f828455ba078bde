"""Keep some of the four camera views of each agent's tiled frame.

The env tiles the views as ``[[front, rear], [left, right]]``. ``SelectViews(env, views)`` cuts
the chosen views out and lays them side by side, left to right in the order given: one view is
that view (``(H, W, 3)``), two are ``(H, 2W, 3)``, and so on. View names are those of
:data:`shareverse_env.core.geometry.VIEW_NAMES`.

Wrap the env itself (or wrappers that keep the tiled RGB frame): the wrapper checks that it gets
``(2H, 2W, 3)`` uint8 frames.

Example:
    >>> import shareverse_env
    >>> from shareverse_env.wrappers import SelectViews
    >>> env = SelectViews(shareverse_env.parallel_env(backend="world"), views=("left", "front"))
    >>> obs, infos = env.reset(seed=0)
    >>> obs["agent_0"].shape, infos["agent_0"]["frames"].shape
    ((64, 192, 3), (1, 64, 192, 3))
    >>> env.observation_space("agent_0").contains(obs["agent_0"])
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv
from shareverse_env.wrappers.base import FrameTransformWrapper, image_space

from shareverse_env.core.geometry import VIEW_NAMES


class SelectViews(FrameTransformWrapper):
    """Observe only ``views`` (names from ``VIEW_NAMES``), side by side in the given order.

    Args:
        env: a ShareVerse parallel env, or a wrapper that keeps its tiled RGB frames.
        views: one view name or a sequence of distinct names.

    Raises:
        ValueError: for an unknown, repeated or missing view name, or an observation space that
            is not a tiled ``(2H, 2W, 3)`` uint8 frame (e.g. after grayscale or resizing to odd
            sizes).
    """

    def __init__(self, env: ParallelEnv, views: str | Sequence[str] = ("front",)) -> None:
        names = (views,) if isinstance(views, str) else tuple(views)
        unknown = [v for v in names if v not in VIEW_NAMES]
        if not names or unknown or len(set(names)) != len(names):
            raise ValueError(
                f"SelectViews: views must be distinct names from {VIEW_NAMES} (at least one); "
                f"got {views!r}"
            )
        self.views = names
        self._index = [VIEW_NAMES.index(v) for v in names]
        super().__init__(env)

    def transform_space(self, space: gymnasium.Space, agent: str) -> gymnasium.Space:
        shape, _ = image_space(space, "SelectViews", agent, channels=(3,))
        height, width, _ = shape
        if height % 2 or width % 2:
            raise ValueError(
                f"SelectViews: observation_space({agent!r}) must be the 2×2 tiled frame "
                f"(2H, 2W, 3) with even height and width; got shape {shape}"
            )
        h, w = height // 2, width // 2
        return gymnasium.spaces.Box(0, 255, (h, w * len(self._index), 3), np.uint8)

    def transform(self, frames: np.ndarray, agent: str) -> np.ndarray:
        h, w = frames.shape[-3] // 2, frames.shape[-2] // 2
        # Row-major tiles: view i sits at row i // 2, column i % 2.
        tiles = [
            frames[..., (i // 2) * h : (i // 2 + 1) * h, (i % 2) * w : (i % 2 + 1) * w, :]
            for i in self._index
        ]
        return np.ascontiguousarray(np.concatenate(tiles, axis=-2))
