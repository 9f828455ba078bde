"""Add the ego state to the image: a ``Dict`` observation for policies that need to know where
they are going.

=========  ==================================  ================================================
key        space                               meaning
=========  ==================================  ================================================
``image``  the wrapped observation space       the frame(s) the inner env observes
``pose``   ``Box((3,), float32)``              ego ``(x, y, yaw)`` in the world frame (m, rad),
                                               at the chunk's last frame
``speed``  ``Box((1,), float32)``, ≥ 0          speed over the chunk's last frame interval, m/s
                                               (0 after ``reset``: cars start at rest)
``goal``   ``Box((2,), float32)``              the goal in the ego frame (x forward, y left), m
=========  ==================================  ================================================

Everything comes from the public infos of the env (``infos[agent]["poses"]`` and
``infos[agent]["scenario"]["goal"]``), so any image wrappers may sit below this one.

Example:
    >>> import shareverse_env
    >>> from shareverse_env.wrappers import DictObservation
    >>> env = DictObservation(shareverse_env.parallel_env(backend="world", scenario="following"))
    >>> obs, infos = env.reset(seed=0)
    >>> sorted(obs["agent_0"]), obs["agent_0"]["speed"].tolist()
    (['goal', 'image', 'pose', 'speed'], [0.0])
    >>> obs, *_ = env.step({a: env.action_space(a).low * 0 + [14.0, 0.0, 0.0] for a in env.agents})
    >>> round(float(obs["agent_0"]["speed"][0]), 1)
    5.0
    >>> env.observation_space("agent_0").contains(obs["agent_0"])
    True
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv
from pettingzoo.utils.wrappers import BaseParallelWrapper

from shareverse_env.geometry import FPS, world_to_ego, wrap_angle


class DictObservation(BaseParallelWrapper):
    """``{"image", "pose", "speed", "goal"}`` observations; see the module docstring.

    Raises:
        ValueError: when the wrapped observation space is not a ``Box`` (e.g. already a
            ``Dict``), or at ``reset``/``step`` when the infos lack ``poses`` or the scenario's
            ``goal``.
    """

    def __init__(self, env: ParallelEnv) -> None:
        super().__init__(env)
        self._spaces: dict[str, gymnasium.spaces.Dict] = {}
        for agent in env.possible_agents:
            image = env.observation_space(agent)
            if not isinstance(image, gymnasium.spaces.Box):
                raise ValueError(
                    f"DictObservation: observation_space({agent!r}) must be a Box (the image); "
                    f"got {image}"
                )
            self._spaces[agent] = gymnasium.spaces.Dict(
                {
                    "image": image,
                    "pose": gymnasium.spaces.Box(
                        np.array([-np.inf, -np.inf, -np.pi], np.float32),
                        np.array([np.inf, np.inf, np.pi], np.float32),
                        dtype=np.float32,
                    ),
                    "speed": gymnasium.spaces.Box(0.0, np.inf, (1,), np.float32),
                    "goal": gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32),
                }
            )

    def observation_space(self, agent: str) -> gymnasium.spaces.Dict:
        return self._spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, Any]]]:
        observations, infos = self.env.reset(seed=seed, options=options)
        return {a: self._observe(a, o, infos) for a, o in observations.items()}, infos

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        observations, rewards, terminations, truncations, infos = self.env.step(actions)
        observations = {a: self._observe(a, o, infos) for a, o in observations.items()}
        return observations, rewards, terminations, truncations, infos

    def _observe(
        self, agent: str, image: Any, infos: dict[str, dict[str, Any]]
    ) -> dict[str, np.ndarray]:
        info = infos.get(agent, {})
        poses = info.get("poses")
        goal = info.get("scenario", {}).get("goal")
        if poses is None or goal is None or np.ndim(poses) != 2 or np.shape(poses)[1] != 3:
            raise ValueError(
                f"DictObservation: infos[{agent!r}] must carry 'poses' (F, 3) and "
                f"'scenario' with a 'goal' (x, y), as the ShareVerse env's infos do; got keys "
                f"{sorted(info)}"
            )
        poses = np.asarray(poses, dtype=np.float64)
        pose = poses[-1].copy()
        pose[2] = wrap_angle(pose[2])
        speed = np.linalg.norm(poses[-1, :2] - poses[-2, :2]) * FPS if len(poses) > 1 else 0.0
        goal_ego = world_to_ego(pose, np.asarray(goal, dtype=np.float64))
        return {
            "image": image,
            "pose": pose.astype(np.float32),
            "speed": np.array([speed], dtype=np.float32),
            "goal": goal_ego.astype(np.float32),
        }
