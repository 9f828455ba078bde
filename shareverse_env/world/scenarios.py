"""Six two-agent interaction modes (paper Sec. 3.5, Fig. 2): where the cars start and where they go.

Each scenario places every agent on the right-hand lane of the town's roads with a lane-following
:class:`~shareverse_env.world.routes.Route` and a goal at the route's end, such that the first two
agents meet or see each other within the first chunk or two (about 20–40 m at town speed):

====================  =====================================================================
``head_on``           one straight road, opposite lanes: the cars drive towards each other
                      and pass (starts 44–76 m apart, meeting half-way).
``following``         one lane, same direction: the leader starts 15–30 m ahead.
``crossing``          an X-junction: the cars come from perpendicular roads and both go
                      straight on (each starts 20–36 m before the junction centre).
``t_junction``        a T-junction: one car drives along the through road, the other comes up
                      the stem and turns (left or right) into the through road.
``left_turn_across``  an X-junction: the cars approach from opposite sides; one goes straight,
                      the other turns left across its path.
``diverge``           one lane, same direction, towards a junction (an X, or a T reached by
                      its stem): one car turns left, the other right; which one leads is drawn.
====================  =====================================================================

Every basic layout is randomised as in the paper: the place in the town (a random site among all
that fit), the start points (shifted by up to ±8 m along the routes) and the end points (the goal
is 140–220 m of driving after the start: a distance drawn in that range, cut to the road there
is, then moved back by up to 10 m but never under 140 m). Routes continue beyond the
interaction: straight on where possible, turning at the town's edge, never passing a junction
twice.

The 140–220 m is :data:`TRAVEL_RANGE`, the default of ``make_scenario(..., travel_range=...)``
(the env's ``goal_distance``); any ``(lo, hi)`` with ``MIN_TRAVEL <= lo <= hi`` is met exactly:
every goal lies ``lo``–``hi`` metres along its route, ``(60, 60)`` included. A shorter range such
as ``(60, 90)`` suits reinforcement learning: the goal is then a few chunks away. Routes are built
as long as ``hi`` asks, but a town offers only so much road after a start (about 1–1.8 km in a
default 4×4-block town: every draw in towns 0–2 reaches 1000 m, few reach 1600 m). A site whose
routes fall short of ``lo`` fails that attempt; when no start in the town has ``lo`` metres of
road ahead, :func:`make_scenario` raises a one-line ``ValueError`` naming the range and the
longest route the town has.

More or fewer agents (``num_agents``):

* ``N = 1``: the scenario's first role alone, placed as it would be with its partner.
* ``N > 2``: agent ``k`` takes role ``k mod 2`` and follows that role's route: it starts 12–18 m
  behind the last car placed on that lane (further back if another car is in the way, or ahead
  of the column when there is no room behind) and drives the same distance.

Every start lies on its lane, on the road surface and clear of obstacles, at least
:data:`MIN_START_GAP` metres from every other start; every route is checked to be drivable from
start to goal (on the road, clear of parked cars and other static boxes).

Example:
    >>> import numpy as np
    >>> from shareverse_env.world.scene import BoxSet, GroundMap, Surface
    >>> from shareverse_env.world.town import RoadNetwork, Town
    >>> xs = np.arange(5) * 70.0                       # a 5×5 grid of roads 70 m apart
    >>> nodes = np.array([(x, y) for y in xs for x in xs])
    >>> edges = [(r * 5 + c, r * 5 + c + 1) for r in range(5) for c in range(4)]
    >>> edges += [(r * 5 + c, (r + 1) * 5 + c) for r in range(4) for c in range(5)]
    >>> ground = GroundMap((-20.0, -20.0), 1.0, np.zeros((320, 320, 3), np.uint8),
    ...                    np.full((320, 320), Surface.ROAD, np.uint8))
    >>> town = Town(0, (0, 0, 280, 280), RoadNetwork(nodes, np.array(edges)), ground, BoxSet.empty())
    >>> scenario = make_scenario(town, "crossing", 2, np.random.default_rng(0))
    >>> [plan.role for plan in scenario.agents]
    ['straight', 'crossing']
    >>> bool(np.linalg.norm(scenario.agents[0].start[:2] - scenario.agents[1].start[:2]) >= 8.0)
    True
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from shareverse_env.world.collision import CAR_HALF_EXTENT, first_collisions, rectangles_overlap
from shareverse_env.world.routes import (
    Route,
    edge_direction,
    extend_back,
    extend_forward,
    lane_route_stations,
    turn_at,
    turn_kind,
)
from shareverse_env.world.town import RoadNetwork, Town

SCENARIOS: tuple[str, ...] = (
    "head_on",
    "following",
    "crossing",
    "t_junction",
    "left_turn_across",
    "diverge",
)
"""The six two-agent interaction modes."""

ROLES: dict[str, tuple[str, str]] = {
    "head_on": ("forward", "oncoming"),
    "following": ("leader", "follower"),
    "crossing": ("straight", "crossing"),
    "t_junction": ("through", "turning_in"),
    "left_turn_across": ("straight", "left_turn"),
    "diverge": ("left_turn", "right_turn"),
}
"""Role of agent 0 and agent 1 in each scenario (extra agents repeat them)."""

MIN_START_GAP = 8.0
"""Least distance between any two agents' start positions, metres."""

START_SHIFT = 8.0
"""Starts move by up to ± this many metres along their routes."""

END_SHIFT = 10.0
"""Goals move back by up to this many metres along their routes (less near the range's ``lo``)."""

TRAVEL_RANGE = (140.0, 220.0)
"""Default driving distance from start to goal, metres: every goal lies in it."""

MIN_TRAVEL = 60.0
"""Least ``lo`` of a travel range (metres): shorter routes leave no room past the interaction."""

PASS_DISTANCE = 25.0
"""Every route continues at least this far beyond the interaction point (metres)."""

EXTRA_SPACING = (12.0, 18.0)
"""Distance between an extra agent and the car ahead of it on the same lane (metres)."""

APPROACH = 28.0
"""Distance from a start to the junction centre in the junction scenarios (before the shift)."""

HEAD_ON_APPROACH = 30.0
"""Distance from each start to the meeting point in ``head_on`` (before the shift)."""

FOLLOW_GAP = (15.0, 30.0)
"""Distance between leader and follower in ``following``."""

DIVERGE_APPROACH = 22.0
"""Distance from the leading car to the junction centre in ``diverge`` (before the shift)."""

DIVERGE_GAP = (15.0, 25.0)
"""Distance between the two cars in ``diverge``."""

_LOOK_AHEAD = 300.0  # metres of road appended after the interaction before slicing
# A route must run a goal distance beyond its start, which can lie a few metres before the core's
# end, and lane corners cut shorter than the centreline extend_forward measures: ask for this
# much more road than ``hi`` (80 m keeps the default range at exactly _LOOK_AHEAD).
_LOOK_AHEAD_SLACK = 80.0
_EPS = 1e-6  # metres: tolerance of the goal-distance checks against rounding
_ROUTE_CHECK_STEP = 1.0  # spacing of the poses that check a route is drivable
_PARKED_INFLATE = 0.5  # metres added around cars when checking routes against parked goals
_PARKED_CLEARANCE = 6.0  # a route ends this far before a car parked at another's goal


@dataclass(frozen=True)
class AgentPlan:
    """One agent's part in a scenario.

    Attributes:
        start: ``(3,)`` start pose ``(x, y, yaw)`` on the lane; the route's first pose.
        route: the lane-following reference path from the start to the goal.
        goal: ``(2,)`` xy of the goal, the route's last point.
        goal_s: arc length of the goal along ``route`` (its length).
        role: the agent's role in the scenario (see :data:`ROLES`).
        follows: for agents beyond the first two, the index of the agent whose role and route
            this one shares; ``None`` for agents 0 and 1.

    Example:
        >>> import numpy as np
        >>> route = Route.from_points(np.array([[0.0, -1.75], [80.0, -1.75]]))
        >>> plan = AgentPlan(start=route.pose_at(0.0), route=route, goal=route.points[-1],
        ...                  goal_s=route.length, role="leader")
        >>> plan.goal.tolist(), plan.goal_s
        ([80.0, -1.75], 80.0)
    """

    start: np.ndarray
    route: Route
    goal: np.ndarray
    goal_s: float
    role: str = ""
    follows: int | None = None


@dataclass(frozen=True)
class Scenario:
    """A named interaction: one :class:`AgentPlan` per agent.

    Attributes:
        name: one of :data:`SCENARIOS`.
        agents: the plans, agent ``k`` first to last.
        seed: the seed the scenario was drawn with;
            ``make_scenario(town, name, len(agents), seed)`` draws it again.

    Example:
        >>> import numpy as np
        >>> route = Route.from_points(np.array([[0.0, -1.75], [80.0, -1.75]]))
        >>> plan = AgentPlan(route.pose_at(0.0), route, route.points[-1], route.length, "leader")
        >>> info = Scenario("following", (plan,), seed=7).to_info(0)
        >>> info["name"], info["role"], info["route_length"], info["route"][:2]
        ('following', 'leader', 80.0, [[0.0, -1.75], [5.0, -1.75]])
    """

    name: str
    agents: tuple[AgentPlan, ...]
    seed: int

    def __len__(self) -> int:
        return len(self.agents)

    def to_info(self, index: int, spacing: float = 5.0) -> dict[str, Any]:
        """A JSON-friendly description of agent ``index``'s part (route points every ``spacing`` m)."""
        plan = self.agents[index]
        return {
            "name": self.name,
            "index": int(index),
            "role": plan.role,
            "follows": plan.follows,
            "seed": int(self.seed),
            "start": [round(float(v), 4) for v in plan.start],
            "goal": [round(float(v), 4) for v in plan.goal],
            "goal_s": round(float(plan.goal_s), 4),
            "route": np.round(plan.route.downsample(spacing), 3).tolist(),
            "route_length": round(float(plan.route.length), 4),
        }


# --------------------------------------------------------------------------------------------
# Drafting the two roles at one site
# --------------------------------------------------------------------------------------------


@dataclass
class _Draft:
    role: str
    route: Route  # the full route the agent's route is cut from
    start_s: float
    goal_s: float
    past_s: float  # the interaction point: goals stay PASS_DISTANCE beyond it


@dataclass
class _Placed:
    draft: _Draft
    start_s: float
    goal_s: float
    follows: int | None


class _NoFit(Exception):
    """This site cannot host the scenario with these draws."""


class _ShortRoom(_NoFit):
    """A role's route has less drivable road after its start than the goal distance's ``lo``."""


class _OutOfReach(ValueError):
    """No route the town offers is as long as the asked goal distance's ``lo``.

    Attributes:
        longest: the most metres of drivable route after any start that was drawn.
    """

    def __init__(self, message: str, longest: float) -> None:
        super().__init__(message)
        self.longest = longest


class _NoSites(ValueError):
    """The town has no place of the kind a scenario needs (no X-junction, say)."""


def _out_of_reach(
    range_name: str, travel_range: tuple[float, float], seed: int, name: str | None, longest: float
) -> str:
    """The one-line message of :class:`_OutOfReach` (``name`` ``None``: no scenario fits)."""
    lo, hi = travel_range
    what, whose = (
        ("any scenario", "all routes") if name is None else (f"scenario {name!r}", "its routes")
    )
    return (
        f"town {seed} cannot host {what}: {range_name}=({lo:g}, {hi:g}) is out of reach, "
        f"{whose} there run at most {math.floor(longest)} m from their starts (routes never pass "
        "a junction twice); ask for a lo below that"
    )


@dataclass
class _Travel:
    """The goal distance asked of one :func:`make_scenario` call, and the room routes offered."""

    lo: float
    hi: float
    longest: float = 0.0  # most metres of drivable route after any start seen so far

    @property
    def look_ahead(self) -> float:
        """Metres of road to append after a role's core: enough for a goal ``hi`` away."""
        return max(_LOOK_AHEAD, self.hi + _LOOK_AHEAD_SLACK)


def _role_route(
    roads: RoadNetwork,
    core: list[int],
    anchor: int,
    back: float,
    rng: np.random.Generator,
    ahead: float = _LOOK_AHEAD,
) -> tuple[Route, float, float]:
    """Route along ``core`` extended ``back`` metres behind and ``ahead`` metres (or until it is
    boxed in) beyond it.

    Returns the route, the anchor's *approach station* (where the car would be beside the node
    centre had it kept straight on in its approach lane: distances to a junction measured from
    it are the same for every turn) and the anchor's station on the route itself.
    """
    path = extend_back(roads, core, back)
    path = extend_forward(roads, path, ahead, rng)
    try:
        route, stations = lane_route_stations(roads, path)
    except ValueError as err:
        raise _NoFit(str(err)) from err
    i = path.index(anchor)
    station = float(stations[i])
    if 0 < i < len(path) - 1 and turn_kind(roads, path[i - 1], anchor, path[i + 1]) != "straight":
        d_in = edge_direction(roads, path[i - 1], anchor)
        margin = roads.road_half_width
        entry = roads.nodes[anchor] + roads.lane_offset(d_in) - margin * d_in
        s_entry = float(route.project(entry)[0])
        return route, s_entry + margin, station
    return route, station, station


def _goal(
    route: Route,
    start_s: float,
    past_s: float,
    rng: np.random.Generator,
    margin: float,
    travel: _Travel,
) -> float:
    """The goal's station on ``route``: ``travel.lo``–``travel.hi`` metres after ``start_s``.

    The drawn distance is cut to the road there is (``margin`` before the route's end), then the
    goal moves back by up to :data:`END_SHIFT` — never under ``lo``, so that a range such as
    ``(60, 60)`` is met exactly instead of always falling short of it. The shift's range shrinks
    only for draws within ``END_SHIFT`` of ``lo``; others draw from the full ``END_SHIFT``.
    """
    end = min(start_s + rng.uniform(travel.lo, travel.hi), route.length - margin)
    reach = end - start_s
    if start_s >= 0.0:
        travel.longest = max(travel.longest, route.length - margin - start_s)
    # Always one draw, so that a failed attempt moves the generator as a successful one does.
    goal = end - rng.uniform(0.0, min(END_SHIFT, max(reach - travel.lo, 0.0)))
    if start_s < 0.0:
        raise _NoFit("route too short")
    if reach < travel.lo - _EPS:  # _EPS: start + lo - start is not always lo in floating point
        raise _ShortRoom(f"less than {travel.lo:g} m of route after the start")
    if goal < past_s + PASS_DISTANCE:
        raise _NoFit("route too short")
    return goal


def _shift(rng: np.random.Generator) -> float:
    return float(rng.uniform(-START_SHIFT, START_SHIFT))


def _back_room(num_agents: int) -> float:
    # Room behind the first start for the extra agents of one role.
    extra = max(0, (num_agents - 1) // 2)
    return 50.0 + extra * (EXTRA_SPACING[1] + 4.0)


def _draft_head_on(roads, site, rng, n, travel) -> list[_Draft]:
    a, b = site
    length = float(np.linalg.norm(roads.nodes[b] - roads.nodes[a]))
    t = rng.uniform(0.3, 0.7) * length  # the meeting point, t metres from a towards b
    back = HEAD_ON_APPROACH + START_SHIFT + _back_room(n)
    route_a, sa, _ = _role_route(roads, [a, b], a, back, rng, travel.look_ahead)
    route_b, sb, _ = _role_route(roads, [b, a], b, back, rng, travel.look_ahead)
    meet_a, meet_b = sa + t, sb + (length - t)
    margin = roads.road_half_width
    start_a = meet_a - HEAD_ON_APPROACH + _shift(rng)
    start_b = meet_b - HEAD_ON_APPROACH + _shift(rng)
    roles = ROLES["head_on"]
    return [
        _Draft(
            roles[0], route_a, start_a, _goal(route_a, start_a, meet_a, rng, margin, travel), meet_a
        ),
        _Draft(
            roles[1], route_b, start_b, _goal(route_b, start_b, meet_b, rng, margin, travel), meet_b
        ),
    ]


def _draft_following(roads, site, rng, n, travel) -> list[_Draft]:
    a, b = site
    length = float(np.linalg.norm(roads.nodes[b] - roads.nodes[a]))
    gap = rng.uniform(*FOLLOW_GAP)
    back = FOLLOW_GAP[1] + _back_room(n)
    route, sa, _ = _role_route(roads, [a, b], a, back, rng, travel.look_ahead)
    lead = sa + rng.uniform(0.2, 0.8) * length + _shift(rng)
    follow = lead - gap
    margin = roads.road_half_width
    roles = ROLES["following"]
    lead_goal = _goal(route, lead, lead, rng, margin, travel)
    follow_goal = _goal(route, follow, lead, rng, margin, travel)
    return [
        _Draft(roles[0], route, lead, lead_goal, lead),
        _Draft(roles[1], route, follow, follow_goal, lead),
    ]


def _draft_two_approaches(
    roads, junction, cores: tuple[list[int], list[int]], roles, rng, n, travel
) -> list[_Draft]:
    margin = roads.road_half_width
    back = APPROACH + START_SHIFT + _back_room(n)
    drafts = []
    for core, role in zip(cores, roles, strict=True):
        route, sj, past = _role_route(roads, core, junction, back, rng, travel.look_ahead)
        start = sj - APPROACH + _shift(rng)
        goal = _goal(route, start, past, rng, margin, travel)
        drafts.append(_Draft(role, route, start, goal, past))
    return drafts


def _draft_crossing(roads, site, rng, n, travel) -> list[_Draft]:
    j, na, nb = site
    cores = ([na, j, turn_at(roads, na, j, "straight")], [nb, j, turn_at(roads, nb, j, "straight")])
    return _draft_two_approaches(roads, j, cores, ROLES["crossing"], rng, n, travel)


def _draft_t_junction(roads, site, rng, n, travel) -> list[_Draft]:
    j, p, q, stem, turn = site
    cores = ([p, j, q], [stem, j, turn_at(roads, stem, j, turn)])
    return _draft_two_approaches(roads, j, cores, ROLES["t_junction"], rng, n, travel)


def _draft_left_turn_across(roads, site, rng, n, travel) -> list[_Draft]:
    j, na = site
    nb = turn_at(roads, na, j, "straight")
    cores = ([na, j, nb], [nb, j, turn_at(roads, nb, j, "left")])
    return _draft_two_approaches(roads, j, cores, ROLES["left_turn_across"], rng, n, travel)


def _draft_diverge(roads, site, rng, n, travel) -> list[_Draft]:
    j, na = site
    margin = roads.road_half_width
    back = DIVERGE_APPROACH + START_SHIFT + DIVERGE_GAP[1] + _back_room(n)
    lead_dist = DIVERGE_APPROACH + _shift(rng)
    follow_dist = lead_dist + rng.uniform(*DIVERGE_GAP)
    left_leads = bool(rng.random() < 0.5)
    drafts = []
    for turn, role in zip(("left", "right"), ROLES["diverge"], strict=True):
        core = [na, j, turn_at(roads, na, j, turn)]
        route, sj, past = _role_route(roads, core, j, back, rng, travel.look_ahead)
        leads = (turn == "left") == left_leads
        start = sj - (lead_dist if leads else follow_dist)
        goal = _goal(route, start, past, rng, margin, travel)
        drafts.append(_Draft(role, route, start, goal, past))
    return drafts


# --------------------------------------------------------------------------------------------
# Sites: every place in the town where a scenario's basic layout fits
# --------------------------------------------------------------------------------------------


def _perpendicular(roads: RoadNetwork, j: int, a: int, b: int) -> bool:
    return abs(float(edge_direction(roads, a, j) @ edge_direction(roads, b, j))) < 0.01


def _sites(roads: RoadNetwork, name: str) -> tuple[list[tuple], str]:
    """Candidate sites in a fixed order, and what the scenario needs (for error messages)."""
    kinds = [roads.junction_kind(j) for j in range(len(roads.nodes))]
    xs = [j for j, k in enumerate(kinds) if k == "X"]
    if name in ("head_on", "following"):
        sites = [(int(a), int(b)) for a, b in roads.edges] + [
            (int(b), int(a)) for a, b in roads.edges
        ]
        return sites, "a road"
    if name == "crossing":
        sites = [
            (j, na, nb)
            for j in xs
            for na in roads.neighbours(j)
            for nb in roads.neighbours(j)
            if _perpendicular(roads, j, na, nb)
        ]
        return sites, "an X-junction (a node joining 4 roads)"
    if name == "left_turn_across":
        return [
            (j, na) for j in xs for na in roads.neighbours(j)
        ], "an X-junction (a node joining 4 roads)"
    if name == "t_junction":
        sites = []
        for j, kind in enumerate(kinds):
            if kind != "T":
                continue
            for stem in roads.neighbours(j):
                through = [n for n in roads.neighbours(j) if n != stem]
                if turn_at(roads, through[0], j, "straight") != through[1]:
                    continue  # stem is one of the collinear pair; try the next neighbour
                for p, q in (through, through[::-1]):
                    for turn in ("left", "right"):
                        if turn_at(roads, stem, j, turn) is not None:
                            sites.append((j, p, q, stem, turn))
        return sites, "a T-junction (a node joining 3 roads, two of them in line)"
    if name == "diverge":
        sites = [
            (j, na)
            for j, kind in enumerate(kinds)
            if kind in ("X", "T")
            for na in roads.neighbours(j)
            if turn_at(roads, na, j, "left") is not None
            and turn_at(roads, na, j, "right") is not None
        ]
        return (
            sites,
            "a junction with both a left and a right exit (an X, or a T entered by its stem)",
        )
    raise ValueError(f"unknown scenario {name!r}; choose from {SCENARIOS}")


_DRAFTERS: dict[str, Callable[..., list[_Draft]]] = {
    "head_on": _draft_head_on,
    "following": _draft_following,
    "crossing": _draft_crossing,
    "t_junction": _draft_t_junction,
    "left_turn_across": _draft_left_turn_across,
    "diverge": _draft_diverge,
}


# --------------------------------------------------------------------------------------------
# Placing N agents and checking them
# --------------------------------------------------------------------------------------------


def _place_extras(
    drafts: list[_Draft], num_agents: int, rng: np.random.Generator, margin: float, lo: float
) -> list[_Placed]:
    """Every agent's draft (its role and full route), start, goal and the agent it follows.

    An extra agent drives as far as its role's first agent, and at least ``lo`` metres (the
    goal distance's lower bound) where the route's end cuts that short.
    """
    placed = [_Placed(d, d.start_s, d.goal_s, None) for d in drafts[:num_agents]]
    xy = [d.route.pose_at(d.start_s)[:2] for d in drafts[:num_agents]]
    gap = max(MIN_START_GAP, EXTRA_SPACING[0] - 2.0)

    def clear(route: Route, s: float) -> bool:
        p = route.pose_at(s)[:2]
        return all(np.linalg.norm(p - q) >= gap for q in xy)

    for k in range(len(drafts), num_agents):
        r = k % len(drafts)
        base = drafts[r]
        travel = base.goal_s - base.start_s
        on_lane = [p.start_s for p in placed if p.draft is base]
        spacing = rng.uniform(*EXTRA_SPACING)
        s_new = None
        s = min(on_lane) - spacing
        while s >= 0.0:  # behind the column, further back while another car is in the way
            if clear(base.route, s):
                s_new = s
                break
            s -= 2.0
        if s_new is None:  # no room behind: ahead of the column
            s = max(on_lane) + spacing
            while s + lo <= base.route.length - margin:
                if clear(base.route, s):
                    s_new = s
                    break
                s += 2.0
        if s_new is None:
            raise _NoFit("no room for the extra agents")
        goal = min(s_new + travel, base.route.length - margin)
        if goal - s_new < lo - _EPS:
            raise _NoFit("no room for the extra agents")
        placed.append(_Placed(base, s_new, goal, r))
        xy.append(base.route.pose_at(s_new)[:2])
    return placed


def _stop_before_parked_goals(placed: list[_Placed], lo: float) -> None:
    """Shorten routes that would run into a car parked at another agent's goal (never under
    ``lo`` metres from the start: the goal distance's lower bound).

    An agent that reaches its goal is done, but its car stays where it stopped. A route that
    runs into that spot ends :data:`_PARKED_CLEARANCE` metres before it instead, unless the car
    is sure to pass first: only a car ahead on the same lane (the leader of a column passing the
    follower's goal) keeps its route. A car from another approach (turning into the road behind
    the through car's goal, say) may have to yield or slow for its turn, so comparing distances
    cannot tell which car gets there first.
    """
    half = CAR_HALF_EXTENT + _PARKED_INFLATE
    for _ in range(4 * len(placed) + 1):  # goals only move back, so this settles quickly
        changed = False
        for j, pj in enumerate(placed):
            s = np.arange(pj.start_s, pj.goal_s, _ROUTE_CHECK_STEP)
            poses = pj.draft.route.pose_at(s)
            for i, pi in enumerate(placed):
                if i == j:
                    continue
                parked = pi.draft.route.pose_at(pi.goal_s)
                hit = rectangles_overlap(
                    poses[:, :2], half, poses[:, 2], parked[:2], half, parked[2]
                )
                if not hit.any():
                    continue
                s_hit = float(s[np.argmax(hit)])
                if pj.draft.route is pi.draft.route and pj.start_s > pi.start_s:
                    continue  # j drives ahead of i on the same lane: it passes before i parks
                goal = s_hit - _PARKED_CLEARANCE
                if goal - pj.start_s < lo - _EPS or goal < pj.draft.past_s + PASS_DISTANCE:
                    raise _NoFit("a route runs into another agent's goal")
                pj.goal_s = goal
                s, poses = s[s <= goal], poses[s <= goal]
                changed = True
        if not changed:
            return
    raise _NoFit("a route runs into another agent's goal")


def _check(town: Town, plans: list[AgentPlan]) -> str | None:
    """Why these plans are not acceptable, or ``None``."""
    starts = np.array([p.start for p in plans])
    gaps = np.linalg.norm(starts[:, None, :2] - starts[None, :, :2], axis=-1)
    gaps[np.diag_indices(len(plans))] = np.inf
    if gaps.min() < MIN_START_GAP:
        return "starts too close"
    if any(hit is not None for hit in first_collisions(town, starts[:, None, :])):
        return "a start is off the road or blocked"
    for plan in plans:
        s = np.arange(0.0, plan.route.length, _ROUTE_CHECK_STEP)
        poses = plan.route.pose_at(np.append(s, plan.route.length))
        if first_collisions(town, poses[None], check_cars=False)[0] is not None:
            return "a route leaves the road or runs into an obstacle"
    return None


def _attempt(
    town: Town,
    name: str,
    site: tuple,
    num_agents: int,
    rng: np.random.Generator,
    travel: _Travel,
) -> list[AgentPlan]:
    drafts = _DRAFTERS[name](town.roads, site, rng, num_agents, travel)
    placed = _place_extras(drafts, num_agents, rng, town.roads.road_half_width, travel.lo)
    _stop_before_parked_goals(placed, travel.lo)
    plans = []
    for p in placed:
        route = p.draft.route.slice(p.start_s, p.goal_s)
        plans.append(
            AgentPlan(
                start=route.pose_at(0.0),
                route=route,
                goal=route.points[-1].copy(),
                goal_s=route.length,
                role=p.draft.role,
                follows=p.follows,
            )
        )
    reason = _check(town, plans)
    if reason is not None:
        raise _NoFit(reason)
    return plans


def _make(
    town: Town,
    name: str,
    num_agents: int,
    rng: np.random.Generator,
    travel_range: tuple[float, float],
    range_name: str = "travel_range",
) -> tuple[AgentPlan, ...]:
    sites, needs = _sites(town.roads, name)
    if not sites:
        raise _NoSites(
            f"town {town.seed} cannot host scenario {name!r}: it needs {needs}, and has none"
        )
    travel = _Travel(*travel_range)
    reasons: dict[str, int] = {}
    short_room = False
    for index in rng.permutation(len(sites)):
        for _ in range(2):  # two draws of the shifts per site
            try:
                return tuple(_attempt(town, name, sites[index], num_agents, rng, travel))
            except _NoFit as err:
                short_room |= isinstance(err, _ShortRoom)
                reasons[str(err)] = reasons.get(str(err), 0) + 1
    if short_room and travel.longest < travel.lo - _EPS:
        # No start anywhere had lo metres of road ahead: say what the town allows, in one line.
        raise _OutOfReach(
            _out_of_reach(range_name, travel_range, town.seed, name, travel.longest),
            travel.longest,
        )
    summary = "; ".join(f"{why} ({count}×)" for why, count in sorted(reasons.items()))
    longest = f" (the longest found runs {travel.longest:.0f} m)" if short_room else ""
    raise ValueError(
        f"town {town.seed} cannot host scenario {name!r} with {num_agents} agent(s): none of its "
        f"{len(sites)} candidate sites ({needs}) fits — {summary}. Each role needs about "
        f"{APPROACH:.0f} m of straight road before the interaction and {travel.lo:g} m "
        f"({range_name}'s lo) of drivable route after its start{longest}."
    )


def check_travel_range(value: Any, name: str = "travel_range") -> tuple[float, float]:
    """``value`` as a ``(lo, hi)`` pair of floats, or a ValueError naming ``name``.

    Shared by :func:`make_scenario` and the env's ``goal_distance`` so both reject the same
    values with the same message.

    >>> check_travel_range((60, 90))
    (60.0, 90.0)
    """
    expected = f"expected two finite numbers (lo, hi) with {MIN_TRAVEL:g} <= lo <= hi (metres)"
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if len(items) != 2 or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in items
    ):
        raise ValueError(f"{name}={value!r} is invalid: {expected}")
    lo, hi = float(items[0]), float(items[1])
    if not (np.isfinite(lo) and np.isfinite(hi) and MIN_TRAVEL <= lo <= hi):
        raise ValueError(f"{name}={value!r} is invalid: {expected}")
    return lo, hi


def make_scenario(
    town: Town,
    name: str | None = None,
    num_agents: int = 2,
    rng: np.random.Generator | int | None = None,
    travel_range: tuple[float, float] = TRAVEL_RANGE,
    *,
    range_name: str = "travel_range",
) -> Scenario:
    """Draw a scenario in ``town``.

    Args:
        town: the town.
        name: one of :data:`SCENARIOS`; ``None`` draws one (and falls back to the others, in a
            random order, when the town cannot host it).
        num_agents: number of agents (≥ 1); see the module docstring for how agents beyond the
            first two are placed.
        rng: a generator (one integer is drawn from it), an integer seed, or ``None`` (fresh
            entropy). The result is deterministic given the generator's state or the seed.
        travel_range: ``(lo, hi)`` metres of driving from start to goal; every goal lies
            ``lo``–``hi`` metres along its route (drawn per role, cut to the road there is, then
            moved back by up to :data:`END_SHIFT` but never under ``lo``);
            ``MIN_TRAVEL <= lo <= hi``. Shorter than the default makes shorter episodes (the
            env's ``goal_distance``). Routes never pass a junction twice, so a town offers only
            so much road after a start: a ``lo`` beyond every route it has raises.
        range_name: what error messages call ``travel_range`` (the env passes
            ``"goal_distance"``).

    Raises:
        ValueError: for an unknown name, ``num_agents < 1`` or a bad ``travel_range``, or when
            the town cannot host the scenario anywhere; the message says what is missing. When
            no route in the town runs ``lo`` metres, the message is one line naming
            ``range_name``, the asked range and the longest route there is.
    """
    if name is not None and name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose from {SCENARIOS}")
    if not isinstance(num_agents, int | np.integer) or num_agents < 1:
        raise ValueError(f"num_agents must be an integer ≥ 1; got {num_agents!r}")
    travel = check_travel_range(travel_range, range_name)
    if isinstance(rng, np.random.Generator):
        seed = int(rng.integers(2**31 - 1))
    elif rng is None:
        seed = int(np.random.default_rng().integers(2**31 - 1))
    else:
        seed = int(rng)
    gen = np.random.default_rng(seed)
    if name is not None:
        return Scenario(name, _make(town, name, int(num_agents), gen, travel, range_name), seed)
    order = [SCENARIOS[i] for i in gen.permutation(len(SCENARIOS))]
    errors: list[ValueError] = []
    for candidate in order:
        try:
            plans = _make(town, candidate, int(num_agents), gen, travel, range_name)
            return Scenario(candidate, plans, seed)
        except ValueError as err:
            errors.append(err)
    reach = [err.longest for err in errors if isinstance(err, _OutOfReach)]
    if reach and all(isinstance(err, _OutOfReach | _NoSites) for err in errors):
        # Only the distance stands in the way (or no site at all): one line, as for one name.
        longest = max(reach)
        raise _OutOfReach(_out_of_reach(range_name, travel, town.seed, None, longest), longest)
    # One line: the first scenario's reason stands for the others (they fail the same way).
    raise ValueError(
        f"town {town.seed} cannot host any of the {len(order)} scenarios with {num_agents} "
        f"agent(s); the first tried, {order[0]!r}: {errors[0]}"
    )
