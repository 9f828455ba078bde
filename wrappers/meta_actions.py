"""Five high-level driving commands instead of raw pose deltas: ``Discrete(5)`` meta-actions.

Each agent driven through this wrapper follows a *current route*: at first its scenario route;
turning commands replace it with the right-hand-lane route of the road network that turns at
the next junction (like CARLA's LEFT / RIGHT road options). Every step the chosen command sets
the car's target speed and the wrapper turns it into the pose delta that drives that far along
the current route (slower in bends: :func:`shareverse_env.policies.tracking.route_action`).

=====  ==============  ==========================================================================
index  name            effect
=====  ==============  ==========================================================================
0      ``keep_lane``   follow the current route; speed up by ``speed_step`` towards
                       ``cruise_speed``
1      ``turn_left``   from now on turn left at the next junction (where the car can still
                       start the turn and the road exists), then keep following the road; speed as
                       ``keep_lane``. Elsewhere the same as ``keep_lane``
2      ``turn_right``  the same, turning right
3      ``slow_down``   follow the current route; slow down by ``speed_step`` (not below 0)
4      ``stop``        stand still (speed 0)
=====  ==============  ==========================================================================

Speeds start at 0 after ``reset`` (cars start at rest). ``infos[agent]["meta_action"]`` reports
the command, the resulting speed and whether the route changed. Leaving the scenario route costs
progress reward, as with any action: the reward still measures the scenario's route.

Example:
    >>> import shareverse_env
    >>> from shareverse_env.wrappers import MetaActions
    >>> env = MetaActions(shareverse_env.parallel_env(backend="world", scenario="crossing"))
    >>> obs, infos = env.reset(seed=0)
    >>> env.action_space("agent_0")
    Discrete(5)
    >>> obs, rewards, terms, truncs, infos = env.step({"agent_0": 0, "agent_1": 2})
    >>> infos["agent_1"]["meta_action"]["name"], infos["agent_1"]["meta_action"]["speed"]
    ('turn_right', 3.0)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv
from pettingzoo.utils.wrappers import BaseParallelWrapper

from shareverse_env.policies.expert import shareverse_unwrapped
from shareverse_env.policies.tracking import CHUNK_SECONDS, MAX_TURN_PER_CHUNK, route_action
from shareverse_env.world.routes import Route, extend_forward, lane_route, turn_at
from shareverse_env.world.town import RoadNetwork

META_ACTIONS: tuple[str, ...] = ("keep_lane", "turn_left", "turn_right", "slow_down", "stop")
"""Names of the meta-actions, by index."""

_LOOK_AHEAD = 300.0  # metres of road planned after a turn
_RENEW_BEFORE = 40.0  # a route of the wrapper's own is extended when less than this is left
_ALIGNED = 0.5  # cos of the largest angle between the car and a lane it is said to drive on


class MetaActions(BaseParallelWrapper):
    """``Discrete(5)`` meta-actions for ``agents`` (default all); see the module docstring.

    Args:
        env: a ShareVerse parallel env (or a wrapper around one) with pose-delta actions.
        agents: the agents that take meta-actions; the others keep their inner action spaces.
        cruise_speed: top speed of ``keep_lane`` and the turns, m/s.
        speed_step: change of the target speed per ``keep_lane``/``slow_down`` step, m/s.
        max_turn: largest heading change per chunk (rad); cars slow down in bends to keep it.

    Raises:
        ValueError: for an env that is not the ShareVerse env, unknown agents, inner action
            spaces that are not the ``(3,)`` pose-delta ``Box``, or non-positive speeds; at
            ``step``, for an action that is not an integer in ``[0, 5)``.
    """

    def __init__(
        self,
        env: ParallelEnv,
        agents: Iterable[str] | None = None,
        *,
        cruise_speed: float = 8.0,
        speed_step: float = 3.0,
        max_turn: float = MAX_TURN_PER_CHUNK,
    ) -> None:
        super().__init__(env)
        self._raw = shareverse_unwrapped(env, "MetaActions")
        possible = list(env.possible_agents)
        self.meta_agents = possible if agents is None else list(agents)
        unknown = [a for a in self.meta_agents if a not in possible]
        if unknown:
            raise ValueError(
                f"MetaActions: agents {unknown} are not agents of the env; expected a subset of "
                f"{possible}"
            )
        for agent in self.meta_agents:
            space = env.action_space(agent)
            if not isinstance(space, gymnasium.spaces.Box) or space.shape != (3,):
                raise ValueError(
                    f"MetaActions: action_space({agent!r}) must be the pose-delta Box of shape "
                    f"(3,) = (forward, lateral, yaw); got {space}"
                )
        for name, value in (("cruise_speed", cruise_speed), ("speed_step", speed_step)):
            if not value > 0:
                raise ValueError(f"MetaActions: {name} must be > 0; got {value!r}")
        self.cruise_speed = float(cruise_speed)
        self.speed_step = float(speed_step)
        self.max_turn = float(max_turn)
        self._space = gymnasium.spaces.Discrete(len(META_ACTIONS))
        self.speeds: dict[str, float] = {}
        self.routes: dict[str, Route] = {}
        self._own_route: dict[str, bool] = {}

    def action_space(self, agent: str) -> gymnasium.Space:
        return self._space if agent in self.meta_agents else self.env.action_space(agent)

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        result = self.env.reset(seed=seed, options=options)
        plans = self._raw.scenario.agents
        index = {a: k for k, a in enumerate(self._raw.possible_agents)}
        self.speeds = dict.fromkeys(self.meta_agents, 0.0)
        self.routes = {a: plans[index[a]].route for a in self.meta_agents}
        self._own_route = dict.fromkeys(self.meta_agents, False)
        return result

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if not self.routes:
            raise RuntimeError("MetaActions: step() called before reset()")
        inner = dict(actions)
        reports: dict[str, dict[str, Any]] = {}
        state = self._raw.state()
        index = {a: k for k, a in enumerate(self._raw.possible_agents)}
        for agent, action in actions.items():
            if agent not in self.meta_agents:
                continue
            k = index[agent]
            pose = np.array([state[k, 0], state[k, 1], np.arctan2(state[k, 3], state[k, 2])])
            inner[agent], reports[agent] = self._pose_delta(
                agent, self._command(agent, action), pose
            )
        observations, rewards, terminations, truncations, infos = self.env.step(inner)
        infos = {
            a: {**info, "meta_action": reports[a]} if a in reports else info
            for a, info in infos.items()
        }
        return observations, rewards, terminations, truncations, infos

    # ------------------------------------------------------------------ commands

    def _command(self, agent: str, action: Any) -> int:
        value = np.asarray(action)
        if (
            value.shape not in ((), (1,))
            or not np.issubdtype(value.dtype, np.integer)
            or not 0 <= int(value.reshape(())) < len(META_ACTIONS)
        ):
            raise ValueError(
                f"MetaActions: action of {agent} must be an integer in [0, {len(META_ACTIONS)}) "
                f"= {dict(enumerate(META_ACTIONS))}; got {action!r}"
            )
        return int(value.reshape(()))

    def _pose_delta(self, agent: str, command: int, pose: np.ndarray) -> tuple[np.ndarray, dict]:
        name = META_ACTIONS[command]
        changed = False
        if name in ("turn_left", "turn_right"):
            route = _turn_route(self._raw.town.roads, pose, name.removeprefix("turn_"))
            if route is not None:
                self.routes[agent], self._own_route[agent], changed = route, True, True
        elif self._own_route[agent]:
            s = float(self.routes[agent].project(pose[:2])[0])
            if self.routes[agent].length - s < _RENEW_BEFORE:
                route = _turn_route(self._raw.town.roads, pose, None)
                if route is not None:
                    self.routes[agent], changed = route, True
        speed = self.speeds[agent]
        if name == "stop":
            speed = 0.0
        elif name == "slow_down":
            speed = max(0.0, speed - self.speed_step)
        else:
            speed = min(self.cruise_speed, speed + self.speed_step)
        self.speeds[agent] = speed
        delta = route_action(pose, self.routes[agent], speed * CHUNK_SECONDS, self.max_turn)
        return delta, {"name": name, "speed": speed, "route_changed": changed}


def _locate(roads: RoadNetwork, pose: np.ndarray) -> tuple[int, int, float] | None:
    """The lane the car drives on: ``(a, b, metres left to b)``, or ``None`` when no lane points
    the car's way (it drives against the traffic or across the road)."""
    if not len(roads.edges):
        return None
    ends = np.concatenate([roads.edges, roads.edges[:, ::-1]])  # both directions of every road
    a, b = roads.nodes[ends[:, 0]], roads.nodes[ends[:, 1]]
    length = np.linalg.norm(b - a, axis=1)
    d = (b - a) / length[:, None]
    right = np.stack([d[:, 1], -d[:, 0]], axis=1)
    start = a + right * (roads.lane_width / 2)
    along = np.clip(np.einsum("ij,ij->i", pose[:2] - start, d), 0.0, length)
    dist = np.linalg.norm(start + along[:, None] * d - pose[:2], axis=1)
    aligned = d @ np.array([np.cos(pose[2]), np.sin(pose[2])]) >= _ALIGNED
    if not aligned.any():
        return None
    best = int(np.argmin(np.where(aligned, dist, np.inf)))
    return int(ends[best, 0]), int(ends[best, 1]), float(length[best] - along[best])


def _turn_route(roads: RoadNetwork, pose: np.ndarray, turn: str | None) -> Route | None:
    """The lane route from the car's road on, turning ``turn`` at the next junction (``None``:
    straight on where possible), or ``None`` when there is no such road or it is too late."""
    found = _locate(roads, pose)
    if found is None:
        return None
    a, b, left_to_b = found
    path = [a, b]
    if turn is not None:
        if left_to_b < roads.road_half_width:  # the turn would have started already
            return None
        c = turn_at(roads, a, b, turn)
        if c is None:
            return None
        path.append(c)
    path = extend_forward(roads, path, _LOOK_AHEAD)
    try:
        return lane_route(roads, path)
    except ValueError:  # roads too short for the turns: keep the current route
        return None
