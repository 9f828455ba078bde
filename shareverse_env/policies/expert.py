"""A route-following expert for the ShareVerse env: drives every car along its scenario route.

For each live agent it drives, the expert plans the next chunk in three steps:

1. **Route following.** Aim for the route pose ``cruise_speed × 2.8 s`` ahead of the car
   (never past the goal), shortened in bends so that the heading changes by at most
   ``max_turn`` per chunk (:func:`~shareverse_env.policies.tracking.route_action`).
2. **Time-to-collision rule.** Every other car whose centre lies on the agent's path ahead
   (within ``path_half_width`` of its route) is a leader. If, at the planned speed, the gap to a
   leader would close within the chunk plus ``headway`` seconds, the agent plans to end the
   chunk ``min_gap + headway × leader speed`` behind the leader's predicted position instead —
   it slows down, or stops.
3. **Chunk check.** The planned chunk is checked frame by frame against the town (kerbs,
   parked cars, buildings) and against the other cars' chunks; if it collides, the travel is
   cut back (75 %, 50 %, 25 %, then a stop) until it does not.

The agents are planned one at a time, the ones with a free road first, each against the chunks
already planned (for the agents not planned yet: their cars standing where they are). A later
agent may also not *end* its chunk where an earlier one can drive in the chunk after (its
"corridor"): standing in the way of a car that goes first is how two cars deadlock in a
junction. Cars the expert does not drive (say, a learner's) are predicted both to repeat their
last action and to stand still; done cars stand where they stopped. An action can move a car to
any pose within bounds, so standing still is always possible, and the expert never drives into
a car it can see coming.

Example:
    >>> import shareverse_env
    >>> from shareverse_env.policies import RouteFollowingExpert
    >>> env = shareverse_env.parallel_env(backend="world", scenario="following", max_cycles=3)
    >>> obs, infos = env.reset(seed=0)
    >>> expert = RouteFollowingExpert(env)
    >>> actions = expert(obs)
    >>> sorted(actions), all(env.action_space(a).contains(x) for a, x in actions.items())
    (['agent_0', 'agent_1'], True)
    >>> obs, rewards, terms, truncs, infos = env.step(actions)
    >>> [infos[a]["collision"] for a in sorted(infos)]
    [None, None]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from pettingzoo import ParallelEnv

from shareverse_env.core.geometry import CHUNK_FRAMES, plan_chunk
from shareverse_env.envs.parallel import ShareVerseParallelEnv
from shareverse_env.policies.tracking import (
    CHUNK_SECONDS,
    MAX_TURN_PER_CHUNK,
    route_action,
    turn_limited_distance,
)
from shareverse_env.world.collision import CAR_HALF_EXTENT, first_collisions, rectangles_overlap
from shareverse_env.world.routes import Route
from shareverse_env.world.vehicles import CAR_LENGTH

_CUTS = (1.0, 0.75, 0.5, 0.25)  # fractions of the planned travel tried before stopping


def shareverse_unwrapped(env: ParallelEnv, who: str) -> ShareVerseParallelEnv:
    """``env.unwrapped``, checked to be the ShareVerse env (``who`` names the caller in errors)."""
    raw = getattr(env, "unwrapped", env)
    if not isinstance(raw, ShareVerseParallelEnv):
        raise ValueError(
            f"{who}: env must be a ShareVerse parallel env (shareverse_env.parallel_env(...)) or a "
            f"wrapper around one; got {type(raw).__name__}"
        )
    return raw


def last_actions(env: ShareVerseParallelEnv) -> np.ndarray:
    """``(N, 3)`` each agent's previous action (zeros before the first step).

    The env keeps these privately; when it does not have them, every car is predicted to stand
    still, which only makes the expert less farsighted about cars it does not drive.
    """
    prev = getattr(env, "_prev_actions", None)
    n = env.config.num_agents
    if prev is None or np.shape(prev) != (n, 3):
        return np.zeros((n, 3))
    return np.asarray(prev, dtype=np.float64)


class RouteFollowingExpert:
    """Drives ``agents`` (default: all) of a ShareVerse env along their scenario routes.

    Args:
        env: the ShareVerse parallel env, or a wrapper around one; the expert reads the
            unwrapped env's scenario, town and :meth:`state` at every call.
        agents: the agents this expert drives; the others are treated as traffic it predicts.
        cruise_speed: target speed on straight road, m/s (8 m/s: 22.4 m per chunk).
        max_turn: largest heading change per chunk (rad); the car slows in bends to keep it.
        min_gap: bumper-to-bumper distance kept to a leader, metres.
        headway: time gap kept to a leader, seconds, on top of ``min_gap``.
        path_half_width: a car whose centre is this close to the agent's route is on its path.
        clearance: margin the chunk check keeps around every car footprint, metres.

    Calling the expert returns ``{agent: action}`` for the live agents it drives; the
    observations argument is accepted for the common policy signature and not used.

    Example:
        >>> import shareverse_env
        >>> env = shareverse_env.parallel_env(backend="world", scenario="crossing", max_cycles=2)
        >>> _ = env.reset(seed=1)
        >>> expert = RouteFollowingExpert(env, agents=["agent_1"], cruise_speed=6.0)
        >>> list(expert())
        ['agent_1']
    """

    def __init__(
        self,
        env: ParallelEnv,
        agents: Iterable[str] | None = None,
        *,
        cruise_speed: float = 8.0,
        max_turn: float = MAX_TURN_PER_CHUNK,
        min_gap: float = 4.0,
        headway: float = 1.0,
        path_half_width: float = 2.5,
        clearance: float = 0.3,
    ) -> None:
        self.env = env
        raw = shareverse_unwrapped(env, "RouteFollowingExpert")
        possible = list(raw.possible_agents)
        self.agents = possible if agents is None else list(agents)
        unknown = [a for a in self.agents if a not in possible]
        if unknown:
            raise ValueError(
                f"RouteFollowingExpert: agents {unknown} are not agents of the env; expected a "
                f"subset of {possible}"
            )
        for name, value in (
            ("cruise_speed", cruise_speed),
            ("max_turn", max_turn),
            ("path_half_width", path_half_width),
        ):
            if not value > 0:
                raise ValueError(f"RouteFollowingExpert: {name} must be > 0; got {value!r}")
        for name, value in (("min_gap", min_gap), ("headway", headway), ("clearance", clearance)):
            if not value >= 0:
                raise ValueError(f"RouteFollowingExpert: {name} must be ≥ 0; got {value!r}")
        self.cruise_speed = float(cruise_speed)
        self.max_turn = float(max_turn)
        self.min_gap = float(min_gap)
        self.headway = float(headway)
        self.path_half_width = float(path_half_width)
        self.clearance = float(clearance)

    def __call__(self, observations: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        raw = shareverse_unwrapped(self.env, "RouteFollowingExpert")
        if getattr(raw, "scenario", None) is None:
            raise RuntimeError("RouteFollowingExpert called before env.reset()")
        index = {a: k for k, a in enumerate(raw.possible_agents)}
        driven = [index[a] for a in raw.agents if a in self.agents]
        if not driven:
            return {}
        state = raw.state()
        poses = np.stack([state[:, 0], state[:, 1], np.arctan2(state[:, 3], state[:, 2])], -1)
        alive = state[:, 7] > 0.5
        standing = np.repeat(poses[:, None].astype(np.float64), CHUNK_FRAMES, axis=1)

        # What every car not planned yet does during the chunk: (A, F, 3) chunks, one or two each.
        prev = last_actions(raw)
        obstacles: dict[int, list[np.ndarray]] = {}
        for k in range(len(poses)):
            if alive[k] and k not in driven:
                obstacles[k] = [plan_chunk(poses[k], prev[k]), standing[k]]
            else:
                obstacles[k] = [standing[k]]

        actions: dict[str, np.ndarray] = {}
        corridors: list[np.ndarray] = []  # where the agents planned so far may drive next
        for k in self._order(raw, poses, driven):
            plan = raw.scenario.agents[k]
            route = plan.route
            s = float(route.project(poses[k, :2])[0])
            travel = min(self.cruise_speed * CHUNK_SECONDS, plan.goal_s - s)
            travel = turn_limited_distance(route, s, travel, float(poses[k, 2]), self.max_turn)
            travel = min(travel, self._leader_limit(raw, k, s, travel, obstacles))
            others = [c for j, chunks in obstacles.items() if j != k for c in chunks]
            action, chunk = self._safe_action(raw, poses[k], route, s, travel, others, corridors)
            actions[raw.possible_agents[k]] = action
            obstacles[k] = [chunk]
            corridors.append(self._corridor(route, chunk[-1]))
        return actions

    # ------------------------------------------------------------------ planning steps

    def _order(self, raw: ShareVerseParallelEnv, poses: np.ndarray, driven: list[int]) -> list[int]:
        """Driven agents with fewer cars ahead on their path first (leaders before followers)."""

        def cars_ahead(k: int) -> int:
            route = raw.scenario.agents[k].route
            others = np.delete(poses[:, :2], k, axis=0)
            if not len(others):
                return 0
            s = float(route.project(poses[k, :2])[0])
            s_o, lat_o = route.project(others)
            return int(np.sum((s_o > s) & (np.abs(lat_o) <= self.path_half_width)))

        return sorted(driven, key=lambda k: (cars_ahead(k), k))

    def _leader_limit(
        self,
        raw: ShareVerseParallelEnv,
        k: int,
        s: float,
        travel: float,
        obstacles: dict[int, list[np.ndarray]],
    ) -> float:
        """Travel this chunk that keeps the time-to-collision rule with every leader on the path."""
        route = raw.scenario.agents[k].route
        limit = np.inf
        for j, chunks in obstacles.items():
            if j == k:
                continue
            start, end = chunks[0][0, :2], chunks[0][-1, :2]
            (s0, s1), (l0, l1) = route.project(np.stack([start, end]))
            on_path = abs(l0) <= self.path_half_width and s0 > s
            if not on_path:
                continue
            gap = s0 - s - CAR_LENGTH
            ends_on_path = abs(l1) <= self.path_half_width and s1 >= s0
            lead_travel = s1 - s0 if ends_on_path else 0.0
            lead_speed = lead_travel / CHUNK_SECONDS
            closing = travel / CHUNK_SECONDS - lead_speed
            ttc = gap / closing if closing > 1e-6 else np.inf
            if ttc < CHUNK_SECONDS + self.headway:
                keep = self.min_gap + self.headway * lead_speed
                limit = min(limit, max(0.0, gap + lead_travel - keep))
        return float(limit)

    def _corridor(self, route: Route, end: np.ndarray) -> np.ndarray:
        """``(M, 3)`` route poses the car can reach in the chunk after ``end`` at cruise speed."""
        s = float(route.project(end[:2])[0])
        reach = self.cruise_speed * CHUNK_SECONDS + CAR_LENGTH
        return route.pose_at(s + np.arange(0.0, reach + 1.0, 1.0))

    def _blocks(self, pose: np.ndarray, corridors: list[np.ndarray]) -> bool:
        """Whether a car standing at ``pose`` would be in the way of an earlier-planned agent."""
        if not corridors:
            return False
        corridor = np.concatenate(corridors)
        hit = rectangles_overlap(
            pose[:2],
            CAR_HALF_EXTENT,
            pose[2],
            corridor[:, :2],
            CAR_HALF_EXTENT,
            corridor[:, 2],
            margin=self.clearance,
        )
        return bool(hit.any())

    def _safe_action(
        self,
        raw: ShareVerseParallelEnv,
        pose: np.ndarray,
        route: Route,
        s: float,
        travel: float,
        others: list[np.ndarray],
        corridors: list[np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        """The longest cut of ``travel`` whose chunk is clear of the town and of ``others``, and
        that does not end in the way of the agents planned before (their ``corridors``).

        When every such chunk ends in someone's way — the car already stands there — the longest
        clear chunk wins: moving on is how the car gets out of the way.
        """
        stop = np.zeros(3, dtype=np.float32)
        candidates = [route_action(pose, route, travel * f, self.max_turn, s) for f in _CUTS]
        candidates = [a for a in candidates if np.any(a != 0.0)] + [stop]
        obstacles = np.stack(others) if others else np.zeros((0, CHUNK_FRAMES, 3))
        active = np.zeros(1 + len(obstacles), dtype=bool)
        active[0] = True
        clear: list[tuple[np.ndarray, np.ndarray]] = []
        for action in candidates:
            chunk = plan_chunk(pose, action.astype(np.float64))
            cars = np.concatenate([chunk[None], obstacles])
            hit = first_collisions(raw.town, cars, active, margin=self.clearance)[0]
            if hit is not None and hit.frame == 0:
                # Within the clearance where it stands (a car stopped close by): judge the chunk
                # by actual contact instead, or the car could never move away.
                hit = first_collisions(raw.town, cars, active)[0]
            if hit is not None and hit.frame == 0:
                # Already touching something where it stands (possible only when collisions do
                # not end the episode): no chunk can be clear, so keep following the route.
                return candidates[0], plan_chunk(pose, candidates[0].astype(np.float64))
            if hit is None:
                if not self._blocks(chunk[-1], corridors):
                    return action, chunk
                clear.append((action, chunk))
        if clear:
            return clear[0]
        return stop, plan_chunk(pose, stop.astype(np.float64))
