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
``route``  ``Box((K, 2), float32)``            only with ``route_points=K > 0``: the route
                                               ahead in the ego frame, m: its points
                                               ``route_spacing · k`` metres (k = 1..K) along
                                               the route beyond the ego pose's projection onto
                                               it; points past the route's end are its end
                                               (the goal)
=========  ==================================  ================================================

Everything comes from the public infos of the env (``infos[agent]["poses"]`` and
``infos[agent]["scenario"]["goal"]``, and ``["route"]`` for the route), so any image wrappers
may sit below this one. The route ahead is what a policy needs to follow its route through
junctions (CARLA's leaderboard hands agents their route the same way). It is read from the
scenario's route points, every 5 m, so it cuts the corners of turns a little (up to about 0.4 m
in left turns and 0.7 m in the tighter right ones).

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

    With ``route_points=K`` a ``route`` key adds the next ``K`` route points, ``route_spacing``
    metres apart, in the ego frame:

    >>> env = DictObservation(env.env, route_points=4, route_spacing=5.0)
    >>> obs, infos = env.reset(seed=0)
    >>> route = obs["agent_0"]["route"]  # straight ahead: cars start on their route
    >>> route.shape, route[:, 0].round(2).tolist(), bool(abs(route[:, 1]).max() < 0.01)
    ((4, 2), [5.0, 10.0, 15.0, 20.0], True)
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv
from pettingzoo.utils.wrappers import BaseParallelWrapper

from shareverse_env.core.geometry import FPS, world_to_ego, wrap_angle
from shareverse_env.world.routes import Route


class DictObservation(BaseParallelWrapper):
    """``{"image", "pose", "speed", "goal"}`` (and ``"route"``) observations; see the module
    docstring.

    Args:
        env: the env to wrap; its observation spaces must be ``Box`` images.
        route_points: ``K``, how many points of the route ahead the ``"route"`` key holds;
            0 (the default) leaves the key out.
        route_spacing: metres along the route between consecutive ``"route"`` points (and
            from the ego pose's projection onto the route to the first point).

    Raises:
        ValueError: when ``route_points`` is not a non-negative int or ``route_spacing`` not a
            positive finite number; when the wrapped observation space is not a ``Box`` (e.g.
            already a ``Dict``); or at ``reset``/``step`` when the infos lack ``poses``, the
            scenario's ``goal`` or (with ``route_points > 0``) its ``route``.
    """

    def __init__(
        self, env: ParallelEnv, *, route_points: int = 0, route_spacing: float = 5.0
    ) -> None:
        if (
            isinstance(route_points, bool)
            or not isinstance(route_points, numbers.Integral)
            or route_points < 0
        ):
            raise ValueError(
                f"DictObservation: route_points must be a non-negative int (0: no route); "
                f"got {route_points!r}"
            )
        if (
            isinstance(route_spacing, bool)
            or not isinstance(route_spacing, numbers.Real)
            or not math.isfinite(route_spacing)
            or route_spacing <= 0
        ):
            raise ValueError(
                f"DictObservation: route_spacing must be a positive finite float (metres); "
                f"got {route_spacing!r}"
            )
        super().__init__(env)
        self.route_points = int(route_points)
        self.route_spacing = float(route_spacing)
        # agent -> (the scenario's identity, its route); emptied at reset.
        self._routes: dict[str, tuple[tuple, Route]] = {}
        self._spaces: dict[str, gymnasium.spaces.Dict] = {}
        for agent in env.possible_agents:
            image = env.observation_space(agent)
            if not isinstance(image, gymnasium.spaces.Box):
                raise ValueError(
                    f"DictObservation: observation_space({agent!r}) must be a Box (the image); "
                    f"got {image}"
                )
            spaces = {
                "image": image,
                "pose": gymnasium.spaces.Box(
                    np.array([-np.inf, -np.inf, -np.pi], np.float32),
                    np.array([np.inf, np.inf, np.pi], np.float32),
                    dtype=np.float32,
                ),
                "speed": gymnasium.spaces.Box(0.0, np.inf, (1,), np.float32),
                "goal": gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32),
            }
            if self.route_points:
                spaces["route"] = gymnasium.spaces.Box(
                    -np.inf, np.inf, (self.route_points, 2), np.float32
                )
            self._spaces[agent] = gymnasium.spaces.Dict(spaces)

    def observation_space(self, agent: str) -> gymnasium.spaces.Dict:
        return self._spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, Any]]]:
        self._routes.clear()
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
        scenario = info.get("scenario", {})
        goal = scenario.get("goal")
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
        observation = {
            "image": image,
            "pose": pose.astype(np.float32),
            "speed": np.array([speed], dtype=np.float32),
            "goal": goal_ego.astype(np.float32),
        }
        if self.route_points:
            route = self._route(agent, scenario)
            s0, _ = route.project(pose[:2])
            s = s0 + self.route_spacing * np.arange(1, self.route_points + 1)
            ahead = route.pose_at(s)[:, :2]  # clipped to the route's end
            observation["route"] = world_to_ego(pose, ahead).astype(np.float32)
        return observation

    def _route(self, agent: str, scenario: dict[str, Any]) -> Route:
        """The agent's route, built from ``scenario["route"]`` once per scenario."""
        key = (
            scenario.get("name"),
            scenario.get("seed"),
            scenario.get("index"),
            scenario.get("route_length"),
        )
        cached = self._routes.get(agent)
        if cached is not None and cached[0] == key:
            return cached[1]
        points = scenario.get("route")
        shape = np.shape(points) if points is not None else None
        if shape is None or len(shape) != 2 or shape[0] < 2 or shape[1] not in (2, 3):
            raise ValueError(
                f"DictObservation: route_points > 0 needs infos[{agent!r}]['scenario']['route'] "
                f"as (P ≥ 2, 2) points, as the ShareVerse env's infos give; got "
                f"{'no route' if shape is None else f'shape {shape}'}"
            )
        route = Route.from_points(np.asarray(points, dtype=np.float64)[:, :2])
        self._routes[agent] = (key, route)
        return route
