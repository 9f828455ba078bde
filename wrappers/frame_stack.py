"""Observe the last ``k`` frames of each chunk, stacked: motion within a single step.

Every step renders 28 new frames per agent (2.8 s at 10 fps), but the observation is only the
last one. ``StackChunkFrames(env, k)`` returns the chunk's last ``k`` frames instead, oldest
first, as one array ``(k, *frame_shape)`` — unlike Gymnasium's ``FrameStackObservation`` it needs
no memory across steps, because the frames come from ``infos[agent]["frames"]``. After ``reset``
there is a single frame, repeated ``k`` times (the cars start at rest).

Put it after the wrappers that change the frames (:class:`SelectViews`,
:class:`ResizeObservation`, :class:`GrayscaleObservation`): they transform
``infos[agent]["frames"]`` too, so the stack comes in the same form.

Example:
    >>> import shareverse_env
    >>> from shareverse_env.wrappers import GrayscaleObservation, StackChunkFrames
    >>> env = StackChunkFrames(GrayscaleObservation(shareverse_env.parallel_env(backend="world")), 4)
    >>> obs, infos = env.reset(seed=0)
    >>> obs["agent_0"].shape
    (4, 128, 192, 1)
    >>> obs, *_ = env.step({a: env.action_space(a).low * 0 + [8.0, 0.0, 0.0] for a in env.agents})
    >>> env.observation_space("agent_0").contains(obs["agent_0"])
    True
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv
from pettingzoo.utils.wrappers import BaseParallelWrapper

from shareverse_env.core.geometry import NEW_FRAMES_PER_CHUNK


class StackChunkFrames(BaseParallelWrapper):
    """The last ``k`` frames of the chunk, ``(k, *frame_shape)``, oldest first.

    Args:
        env: a parallel env whose observation is the chunk's last frame (a ``Box``) and whose
            infos carry the chunk's frames in ``infos[agent]["frames"]``.
        k: frames to stack, ``1 ≤ k ≤ 28`` (the new frames of one chunk).

    Raises:
        ValueError: for ``k`` out of range or an observation space that is not a ``Box``.
    """

    def __init__(self, env: ParallelEnv, k: int) -> None:
        if (
            not isinstance(k, int | np.integer)
            or isinstance(k, bool)
            or not 1 <= k <= NEW_FRAMES_PER_CHUNK
        ):
            raise ValueError(
                f"StackChunkFrames: k must be an integer in [1, {NEW_FRAMES_PER_CHUNK}] (the new "
                f"frames of one chunk); got {k!r}"
            )
        config = getattr(getattr(env, "unwrapped", env), "config", None)
        if k > 1 and getattr(config, "chunk_frames", "all") == "last":
            raise ValueError(
                f"StackChunkFrames: k={k} needs the chunk's frames, but the env keeps only the "
                "last one (chunk_frames='last'); make it with chunk_frames='all'"
            )
        super().__init__(env)
        self.k = int(k)
        self._spaces: dict[str, gymnasium.spaces.Box] = {}
        for agent in env.possible_agents:
            space = env.observation_space(agent)
            if not isinstance(space, gymnasium.spaces.Box) or not space.shape:
                raise ValueError(
                    f"StackChunkFrames: observation_space({agent!r}) must be a Box of one frame "
                    f"(e.g. (H, W, C)); got {space}"
                )
            low = np.repeat(space.low[None], self.k, axis=0)
            high = np.repeat(space.high[None], self.k, axis=0)
            self._spaces[agent] = gymnasium.spaces.Box(low, high, dtype=space.dtype)

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        observations, infos = self.env.reset(seed=seed, options=options)
        return {a: self._stack(a, infos) for a in observations}, infos

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        observations, rewards, terminations, truncations, infos = self.env.step(actions)
        stacked = {a: self._stack(a, infos) for a in observations}
        return stacked, rewards, terminations, truncations, infos

    def _stack(self, agent: str, infos: dict[str, dict[str, Any]]) -> np.ndarray:
        frames = infos.get(agent, {}).get("frames")
        shape = self._spaces[agent].shape[1:]
        if frames is None or np.ndim(frames) != len(shape) + 1 or np.shape(frames)[1:] != shape:
            got = "nothing" if frames is None else f"shape {np.shape(frames)}"
            raise ValueError(
                f"StackChunkFrames: infos[{agent!r}]['frames'] must hold the chunk's frames "
                f"(F, *{shape}); got {got}. Wrap the ShareVerse env, or wrappers that keep "
                "infos['frames'] in step with the observation"
            )
        frames = np.asarray(frames)[-self.k :]
        if len(frames) < self.k:  # after reset: one frame, the car at rest
            pad = np.repeat(frames[:1], self.k - len(frames), axis=0)
            frames = np.concatenate([pad, frames])
        return np.ascontiguousarray(frames)
