"""Lane-following reference paths through the road network, and helpers to choose node paths.

A :class:`Route` is a densely sampled curve (points every ~0.5 m, the heading of the tangent at
each point, and the cumulative arc length ``s``). Scenarios give every agent one, rewards measure
progress along it, and the minimap draws it.

:func:`lane_route` turns a list of consecutive road-network nodes into the route a car drives
when it keeps to the right-hand lane (:meth:`RoadNetwork.lane_offset`):

* along each road the route runs straight down the lane centre, ``lane_width / 2`` right of the
  centreline;
* at a node where the path turns it leaves the incoming lane ``turn_margin`` before the node
  centre (default: the road half-width, i.e. where the junction square begins) and follows a
  quarter circle onto the outgoing lane, reaching it ``turn_margin`` after the node. A right turn
  hugs the near kerb corner with radius ``turn_margin - lane_width / 2`` (4.25 m for the default
  cross-section); a left turn sweeps wide around the junction centre with radius
  ``turn_margin + lane_width / 2`` (7.75 m). Both arcs stay inside the junction square;
* at a node where the path goes straight on, the route simply continues.

The route starts and ends at the lane point beside the first and last node centres. U-turns are
not supported.

Example:
    >>> import numpy as np
    >>> from shareverse_env.world.town import RoadNetwork
    >>> roads = RoadNetwork(nodes=np.array([[0.0, 0.0], [60.0, 0.0], [60.0, 60.0]]),
    ...                     edges=np.array([[0, 1], [1, 2]]))
    >>> route = lane_route(roads, [0, 1, 2])        # east, then a left turn to the north
    >>> route.points[0].tolist()                     # the lane right of the centreline
    [0.0, -1.75]
    >>> route.points[-1].tolist(), round(float(np.degrees(route.headings[-1])))
    ([61.75, 60.0], 90)
    >>> bool(np.all(np.diff(route.s) <= 0.5 + 1e-9))
    True
    >>> turn_at(roads, 0, 1, "left"), turn_at(roads, 0, 1, "right")
    (2, None)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from shareverse_env.core.geometry import wrap_angle
from shareverse_env.world.town import RoadNetwork

Turn = Literal["straight", "left", "right"]
"""What a path does at a node: go straight on, turn left or turn right."""

TURNS: tuple[str, ...] = ("straight", "left", "right")

DIRECTIONS: dict[str, tuple[float, float]] = {
    "east": (1.0, 0.0),
    "north": (0.0, 1.0),
    "west": (-1.0, 0.0),
    "south": (0.0, -1.0),
}
"""Compass names for the four road directions (x is east, y is north)."""

DEFAULT_SPACING = 0.5
"""Largest distance between consecutive route points, metres."""


# --------------------------------------------------------------------------------------------
# The Route
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """A reference path: points along a curve, their headings and cumulative arc length.

    Attributes:
        points: ``(P, 2)`` world xy, ``P ≥ 2``.
        headings: ``(P,)`` tangent direction at each point (rad, counter-clockwise from +x,
            wrapped to ``[-π, π)``).
        s: ``(P,)`` arc length from the first point, strictly increasing, ``s[0] == 0``.

    Lateral offsets returned by :meth:`project` are signed: positive to the left of the route's
    direction of travel, negative to the right.

    Example:
        >>> import numpy as np
        >>> route = Route.from_points(np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]]))
        >>> route.length
        20.0
        >>> route.pose_at(15.0).round(3).tolist()
        [10.0, 5.0, 1.571]
        >>> s, lat = route.project(np.array([[4.0, 1.0], [12.0, 7.0]]))
        >>> s.tolist(), lat.tolist()
        ([4.0, 17.0], [1.0, -2.0])
        >>> route.slice(5.0, 12.0).length
        7.0
    """

    points: np.ndarray
    headings: np.ndarray
    s: np.ndarray

    def __post_init__(self) -> None:
        points = np.asarray(self.points, dtype=np.float64)
        headings = np.asarray(self.headings, dtype=np.float64)
        s = np.asarray(self.s, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
            raise ValueError(f"Route.points must be (P, 2) with P ≥ 2; got {points.shape}")
        if headings.shape != (len(points),) or s.shape != (len(points),):
            raise ValueError(
                f"Route.headings and Route.s must be ({len(points)},); "
                f"got {headings.shape} and {s.shape}"
            )
        if not (np.all(np.isfinite(points)) and np.all(np.isfinite(headings))):
            raise ValueError("Route points and headings must be finite")
        if abs(s[0]) > 1e-9 or not np.all(np.diff(s) > 0):
            raise ValueError("Route.s must start at 0 and increase strictly")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "headings", wrap_angle(headings))
        object.__setattr__(self, "s", s)

    @staticmethod
    def from_points(points: np.ndarray, headings: np.ndarray | None = None) -> Route:
        """A route through ``points (P, 2)``; headings default to the direction of each segment
        (the last point takes the last segment's). Repeated consecutive points are dropped."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        step = np.linalg.norm(np.diff(points, axis=0), axis=1)
        keep = np.concatenate([[True], step > 1e-9])
        points = points[keep]
        if headings is not None:
            headings = np.asarray(headings, dtype=np.float64)[keep]
        if len(points) < 2:
            raise ValueError("a route needs at least two distinct points")
        seg = np.diff(points, axis=0)
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(seg, axis=1))])
        if headings is None:
            h = np.arctan2(seg[:, 1], seg[:, 0])
            headings = np.concatenate([h, h[-1:]])
        return Route(points=points, headings=headings, s=s)

    def __len__(self) -> int:
        return len(self.points)

    @property
    def length(self) -> float:
        """Total arc length in metres."""
        return float(self.s[-1])

    @cached_property
    def _unwrapped(self) -> np.ndarray:
        return np.unwrap(self.headings)

    def pose_at(self, s: np.ndarray | float) -> np.ndarray:
        """``(..., 3)`` poses ``(x, y, yaw)`` at arc lengths ``s (...)``, clipped to ``[0, length]``.

        Positions and headings are interpolated linearly between the samples.
        """
        q = np.clip(np.asarray(s, dtype=np.float64), 0.0, self.length)
        x = np.interp(q, self.s, self.points[:, 0])
        y = np.interp(q, self.s, self.points[:, 1])
        yaw = wrap_angle(np.interp(q, self.s, self._unwrapped))
        return np.stack([x, y, yaw], axis=-1)

    def project(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest point on the route to each of ``xy (..., 2)``.

        Returns ``(s, lateral)``, both ``(...)``: the arc length of the nearest point on the
        polyline, and the signed distance to it (positive left of the route). Points beyond the
        ends project onto the end points.
        """
        q = np.asarray(xy, dtype=np.float64)
        if q.shape[-1] != 2:
            raise ValueError(f"xy must have shape (..., 2); got {q.shape}")
        lead = q.shape[:-1]
        q = q.reshape(-1, 2)
        a = self.points[:-1]
        d = np.diff(self.points, axis=0)
        seg_len2 = np.einsum("ij,ij->i", d, d)
        seg_len = np.sqrt(seg_len2)
        s_out = np.empty(len(q))
        lat_out = np.empty(len(q))
        block = max(1, 2_000_000 // max(len(a), 1))
        for lo in range(0, len(q), block):
            p = q[lo : lo + block]
            rel = p[:, None, :] - a[None]  # (Q, S, 2)
            t = np.clip(np.einsum("qsj,sj->qs", rel, d) / seg_len2, 0.0, 1.0)
            diff = rel - t[..., None] * d
            dist2 = np.einsum("qsj,qsj->qs", diff, diff)
            best = np.argmin(dist2, axis=1)
            rows = np.arange(len(p))
            tb = t[rows, best]
            s_out[lo : lo + block] = self.s[best] + tb * seg_len[best]
            cross = d[best, 0] * rel[rows, best, 1] - d[best, 1] * rel[rows, best, 0]
            lat_out[lo : lo + block] = np.where(cross < 0, -1.0, 1.0) * np.sqrt(dist2[rows, best])
        return s_out.reshape(lead), lat_out.reshape(lead)

    def slice(self, s0: float, s1: float) -> Route:
        """The part of the route between arc lengths ``s0 < s1`` (clipped), re-based to ``s = 0``."""
        s0 = float(np.clip(s0, 0.0, self.length))
        s1 = float(np.clip(s1, 0.0, self.length))
        if s1 - s0 < 1e-6:
            raise ValueError(f"slice needs s0 < s1 inside [0, {self.length:.2f}]; got ({s0}, {s1})")
        inner = np.flatnonzero((self.s > s0 + 1e-6) & (self.s < s1 - 1e-6))
        ends = self.pose_at(np.array([s0, s1]))
        pts = np.concatenate([ends[:1, :2], self.points[inner], ends[1:, :2]])
        hd = np.concatenate([ends[:1, 2], self._unwrapped[inner], ends[1:, 2]])
        s = np.concatenate([[s0], self.s[inner], [s1]]) - s0
        return Route(points=pts, headings=hd, s=s)

    def downsample(self, spacing: float) -> np.ndarray:
        """``(Q, 2)`` points about ``spacing`` metres apart, always including both ends."""
        n = max(1, math.ceil(self.length / spacing))
        return self.pose_at(np.linspace(0.0, self.length, n + 1))[:, :2]


# --------------------------------------------------------------------------------------------
# Node paths
# --------------------------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _direction(direction: str | Sequence[float] | np.ndarray) -> np.ndarray:
    if isinstance(direction, str):
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}; choose from {tuple(DIRECTIONS)}")
        return np.array(DIRECTIONS[direction])
    d = np.asarray(direction, dtype=np.float64).reshape(2)
    if np.linalg.norm(d) < 1e-9:
        raise ValueError("direction must be non-zero")
    return _unit(d)


def edge_direction(roads: RoadNetwork, a: int, b: int) -> np.ndarray:
    """Unit vector from node ``a`` to node ``b``."""
    return _unit(roads.nodes[b] - roads.nodes[a])


def neighbour_towards(
    roads: RoadNetwork, node: int, direction: str | Sequence[float] | np.ndarray
) -> int | None:
    """The neighbour of ``node`` that lies in ``direction`` (a compass name or a vector), if any."""
    d = _direction(direction)
    for other in roads.neighbours(node):
        if float(edge_direction(roads, node, other) @ d) > 0.99:
            return other
    return None


def turn_kind(roads: RoadNetwork, a: int, b: int, c: int) -> str:
    """What a car driving ``a → b → c`` does at ``b``: ``"straight"``, ``"left"``, ``"right"`` or
    ``"u_turn"``."""
    d_in, d_out = edge_direction(roads, a, b), edge_direction(roads, b, c)
    dot = float(d_in @ d_out)
    if dot > 0.99:
        return "straight"
    if dot < -0.99:
        return "u_turn"
    return "left" if d_in[0] * d_out[1] - d_in[1] * d_out[0] > 0 else "right"


def turn_at(roads: RoadNetwork, prev: int, node: int, turn: Turn) -> int | None:
    """The neighbour of ``node`` a car arriving from ``prev`` reaches by ``turn``, or ``None``."""
    if turn not in TURNS:
        raise ValueError(f"turn must be one of {TURNS}; got {turn!r}")
    for other in roads.neighbours(node):
        if other != prev and turn_kind(roads, prev, node, other) == turn:
            return other
    return None


def straight_path(
    roads: RoadNetwork,
    start_node: int,
    direction: str | Sequence[float] | np.ndarray,
    n_edges: int | None = None,
) -> list[int]:
    """Nodes from ``start_node`` straight along ``direction`` for ``n_edges`` edges (``None``: as
    far as the road goes). Stops early where the road ends or turns; raises ``ValueError`` when
    ``start_node`` has no road in that direction."""
    path = [start_node]
    while n_edges is None or len(path) <= n_edges:
        nxt = neighbour_towards(roads, path[-1], direction)
        if nxt is None or nxt in path:
            break
        path.append(nxt)
    if len(path) < 2:
        raise ValueError(f"node {start_node} has no road towards {direction}")
    return path


def path_length(roads: RoadNetwork, node_path: Sequence[int]) -> float:
    """Total centreline length of the edges of ``node_path``, metres."""
    pts = roads.nodes[np.asarray(node_path)]
    return float(np.abs(np.diff(pts, axis=0)).sum())


def extend_back(roads: RoadNetwork, node_path: Sequence[int], length: float) -> list[int]:
    """Prepend nodes straight behind ``node_path[0]`` (against its first edge's direction) until at
    least ``length`` metres lie before the old start, or the road ends."""
    path = list(node_path)
    back = -edge_direction(roads, path[0], path[1])
    covered = 0.0
    while covered < length:
        prev = neighbour_towards(roads, path[0], back)
        if prev is None or prev in path:
            break
        covered += float(np.abs(roads.nodes[path[0]] - roads.nodes[prev]).sum())
        path.insert(0, prev)
    return path


def extend_forward(
    roads: RoadNetwork,
    node_path: Sequence[int],
    length: float,
    rng: np.random.Generator | None = None,
) -> list[int]:
    """Append nodes after ``node_path[-1]`` until at least ``length`` metres follow the old end.

    Goes straight on where it can; where it cannot, turns (right or left; drawn from ``rng`` when
    both exist, else right first). Never revisits a node and never makes a U-turn, so it stops
    early at dead ends or when boxed in.
    """
    path = list(node_path)
    covered = 0.0
    while covered < length:
        prev, node = path[-2], path[-1]
        options = [turn_at(roads, prev, node, t) for t in TURNS]
        options = [o if o is not None and o not in path else None for o in options]
        nxt = options[0]
        if nxt is None:
            turns = [o for o in options[1:] if o is not None]
            if not turns:
                break
            # options[1:] is (left, right); prefer right unless rng says otherwise.
            turns = turns[::-1]
            nxt = turns[int(rng.integers(len(turns)))] if rng is not None else turns[0]
        covered += float(np.abs(roads.nodes[nxt] - roads.nodes[node]).sum())
        path.append(nxt)
    return path


# --------------------------------------------------------------------------------------------
# Lane routes
# --------------------------------------------------------------------------------------------


def _sample_segment(
    p0: np.ndarray, p1: np.ndarray, spacing: float
) -> tuple[np.ndarray, np.ndarray]:
    n = max(1, math.ceil(np.linalg.norm(p1 - p0) / spacing - 1e-9))
    t = np.linspace(0.0, 1.0, n + 1)[1:]
    d = p1 - p0
    pts = p0 + t[:, None] * d
    return pts, np.full(n, math.atan2(d[1], d[0]))


def _sample_arc(
    center: np.ndarray, radius: float, phi0: float, sweep: float, spacing: float
) -> tuple[np.ndarray, np.ndarray]:
    # An even number of steps puts a sample exactly at the middle of the arc (the node station).
    n = 2 * max(1, math.ceil(abs(sweep) * radius / (2 * spacing) - 1e-9))
    phi = phi0 + sweep * np.linspace(0.0, 1.0, n + 1)[1:]
    pts = center + radius * np.stack([np.cos(phi), np.sin(phi)], axis=-1)
    return pts, phi + math.copysign(math.pi / 2, sweep)


def lane_route_stations(
    roads: RoadNetwork,
    node_path: Sequence[int],
    *,
    spacing: float = DEFAULT_SPACING,
    turn_margin: float | None = None,
) -> tuple[Route, np.ndarray]:
    """:func:`lane_route` plus the arc length of each node's *station* on the route.

    A node's station is the route point beside the node centre: on the lane for straight-through
    nodes and the two ends, the middle of the arc for turns. Returns ``(route, stations (K,))``.
    """
    path = [int(n) for n in node_path]
    if len(path) < 2:
        raise ValueError(f"a lane route needs at least two nodes; got {path}")
    for a, b in itertools.pairwise(path):
        if b not in roads.neighbours(a):
            raise ValueError(f"nodes {a} and {b} of the path are not joined by a road")
    margin = roads.road_half_width if turn_margin is None else float(turn_margin)
    half_lane = roads.lane_width / 2
    if margin <= half_lane:
        raise ValueError(
            f"turn_margin ({margin}) must exceed half the lane width ({half_lane}) "
            "so that right turns have a positive radius"
        )
    nodes = roads.nodes
    dirs = [edge_direction(roads, a, b) for a, b in itertools.pairwise(path)]
    kinds = ["end"] + [
        turn_kind(roads, path[i - 1], path[i], path[i + 1]) for i in range(1, len(path) - 1)
    ]
    kinds.append("end")
    if "u_turn" in kinds:
        raise ValueError(f"the path {path} makes a U-turn at node {path[kinds.index('u_turn')]}")

    start = nodes[path[0]] + roads.lane_offset(dirs[0])
    pts: list[np.ndarray] = [start[None]]
    hds: list[np.ndarray] = [np.array([math.atan2(dirs[0][1], dirs[0][0])])]
    station_index = [0]
    count = 1
    for i, d in enumerate(dirs):
        a, b = path[i], path[i + 1]
        off = roads.lane_offset(d)
        m0 = margin if kinds[i] in ("left", "right") else 0.0
        m1 = margin if kinds[i + 1] in ("left", "right") else 0.0
        edge_len = float(np.linalg.norm(nodes[b] - nodes[a]))
        if edge_len < m0 + m1 - 1e-9:
            raise ValueError(
                f"road {a}–{b} is {edge_len:.1f} m long, too short for turns at both ends "
                f"(needs {m0 + m1:.1f} m)"
            )
        p1 = nodes[b] + off - m1 * d
        if np.linalg.norm(p1 - pts[-1][-1]) > 1e-9:
            seg_pts, seg_hd = _sample_segment(pts[-1][-1], p1, spacing)
            pts.append(seg_pts)
            hds.append(seg_hd)
            count += len(seg_pts)
        if kinds[i + 1] in ("end", "straight"):
            station_index.append(count - 1)
        else:
            left = kinds[i + 1] == "left"
            normal = np.array([-d[1], d[0]]) if left else np.array([d[1], -d[0]])
            radius = margin + half_lane if left else margin - half_lane
            center = p1 + radius * normal
            rel = p1 - center
            phi0 = math.atan2(rel[1], rel[0])
            sweep = math.pi / 2 if left else -math.pi / 2
            arc_pts, arc_hd = _sample_arc(center, radius, phi0, sweep, spacing)
            pts.append(arc_pts)
            hds.append(arc_hd)
            station_index.append(count + len(arc_pts) // 2 - 1)  # the arc's exact middle
            count += len(arc_pts)
    points = np.concatenate(pts)
    headings = np.concatenate(hds)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    route = Route(points=points, headings=headings, s=s)
    stations = s[np.asarray(station_index)]
    return route, stations


def lane_route(
    roads: RoadNetwork,
    node_path: Sequence[int],
    *,
    spacing: float = DEFAULT_SPACING,
    turn_margin: float | None = None,
) -> Route:
    """The right-hand-lane route along consecutive nodes ``node_path``.

    Args:
        roads: the road network.
        node_path: at least two node indices, each joined to the next by a road; no U-turns.
        spacing: largest distance between route points (metres).
        turn_margin: distance from a node centre at which turns leave and join the lanes;
            ``None`` is the road half-width (lane + parking lane), the edge of the junction square.

    Raises:
        ValueError: when consecutive nodes are not joined, the path makes a U-turn, or a road is
            too short for the turns at its two ends.
    """
    return lane_route_stations(roads, node_path, spacing=spacing, turn_margin=turn_margin)[0]
