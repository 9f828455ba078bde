"""The shared base of the image wrappers: transform every frame an agent observes, the same way.

A ShareVerse step returns two views of the same chunk for each agent: the observation (the
chunk's last frame) and ``infos[agent]["frames"]`` (all 28 new frames; one frame after
``reset``). :class:`FrameTransformWrapper` applies one frame transform to both, so that wrappers
stacked on top (:class:`~shareverse_env.wrappers.StackChunkFrames`) see frames in the same form
as the observation. Subclasses implement :meth:`FrameTransformWrapper.transform_space` and
:meth:`FrameTransformWrapper.transform` (vectorised over leading axes).

Example:
    >>> import numpy as np, shareverse_env
    >>> class Invert(FrameTransformWrapper):
    ...     def transform_space(self, space, agent):
    ...         image_space(space, "Invert", agent)  # raises unless an image space
    ...         return space
    ...     def transform(self, frames, agent):
    ...         return 255 - frames
    >>> env = Invert(shareverse_env.parallel_env(backend="world", max_cycles=2))
    >>> obs, infos = env.reset(seed=0)
    >>> obs["agent_0"].shape, infos["agent_0"]["frames"].shape
    ((128, 192, 3), (1, 128, 192, 3))
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv
from pettingzoo.utils.wrappers import BaseParallelWrapper


def image_space(
    space: gymnasium.Space, wrapper: str, agent: str, channels: tuple[int, ...] | None = None
) -> tuple[tuple[int, ...], bool]:
    """Check that ``space`` is a uint8 image ``Box`` and return ``(shape, has_channel_axis)``.

    Accepted shapes are ``(H, W)`` and ``(H, W, C)``; ``channels`` restricts ``C`` (and rules
    out ``(H, W)``). Raises ``ValueError`` naming ``wrapper``, the agent's space and the form
    expected.
    """
    if channels is None:
        expected = "a uint8 image Box of shape (H, W) or (H, W, C)"
    else:
        expected = "a uint8 image Box of shape (H, W, C) with C in " + str(channels)
    ok = (
        isinstance(space, gymnasium.spaces.Box)
        and space.dtype == np.uint8
        and len(space.shape) in (2, 3)
        and min(space.shape) > 0
    )
    if ok and channels is not None:
        ok = len(space.shape) == 3 and space.shape[-1] in channels
    if not ok:
        raise ValueError(f"{wrapper}: observation_space({agent!r}) must be {expected}; got {space}")
    return tuple(space.shape), len(space.shape) == 3


class FrameTransformWrapper(BaseParallelWrapper):
    """Apply :meth:`transform` to every observation and to ``infos[agent]["frames"]``.

    The wrapped spaces are computed once per possible agent, in the constructor, so that bad
    input fails when the wrapper is built rather than at the first step.
    """

    def __init__(self, env: ParallelEnv) -> None:
        super().__init__(env)
        self._spaces = {
            a: self.transform_space(env.observation_space(a), a) for a in env.possible_agents
        }

    @abstractmethod
    def transform_space(self, space: gymnasium.Space, agent: str) -> gymnasium.Space:
        """The observation space of ``agent`` after the transform (validate ``space`` here)."""

    @abstractmethod
    def transform(self, frames: np.ndarray, agent: str) -> np.ndarray:
        """Transform ``frames`` of shape ``(..., *space.shape)``; leading axes are kept."""

    def observation_space(self, agent: str) -> gymnasium.Space:
        return self._spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        observations, infos = self.env.reset(seed=seed, options=options)
        return self._apply(observations, infos)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        observations, rewards, terminations, truncations, infos = self.env.step(actions)
        observations, infos = self._apply(observations, infos)
        return observations, rewards, terminations, truncations, infos

    def _apply(
        self, observations: dict[str, Any], infos: dict[str, dict[str, Any]]
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        observations = {a: self.transform(np.asarray(o), a) for a, o in observations.items()}
        out = {}
        for agent, info in infos.items():
            if "frames" in info:
                # A new dict: the inner env's infos stay as they were.
                info = {**info, "frames": self.transform(np.asarray(info["frames"]), agent)}
            out[agent] = info
        return observations, out
