"""Collision checks for the agents' cars over a chunk: other agents, static obstacles, leaving the road.

Cars and obstacles are compared as 2D oriented rectangles (footprints) with the separating axis
theorem; heights only decide which boxes count. The rules, checked at every frame of a chunk:

* ``"car"``: the footprints of two agents overlap at the same frame. Every agent in ``poses``
  is a solid car, including inactive (done) ones, whose cars still stand in the world; only
  active agents are *reported*.
* ``"obstacle"``: the footprint overlaps a box of ``town.boxes`` that a car can hit: one that
  starts below the car's roof (``z_min < CAR_HEIGHT``, so tree crowns and overhangs above the
  car are skipped) and rises above ``MIN_OBSTACLE_HEIGHT`` (so flat kerb strips and markings,
  which a car rolls over, are skipped).
* ``"off_road"``: the car's *centre* is not on :attr:`Surface.ROAD` (asphalt, junctions and
  parking lanes). Testing the centre rather than the corners tolerates a wheel over the kerb
  while turning tightly, and flags a car that has clearly left the carriageway (centre on the
  sidewalk, a lot or the grass); anything solid beside the road is caught as an obstacle.

Touching counts as overlapping. For each active agent the *first* colliding frame is reported;
when several kinds happen at that frame the order of precedence is car, obstacle, off-road.

Boxes are culled first by distance to each agent's swept path, so a chunk of two agents × 29
frames in a town of ~1500 boxes takes well under a few milliseconds.

Example:
    >>> import numpy as np
    >>> from shareverse_env.world.scene import BoxSet, GroundMap, Surface
    >>> from shareverse_env.world.town import RoadNetwork, Town
    >>> ground = GroundMap((-50.0, -50.0), 1.0, np.zeros((100, 100, 3), np.uint8),
    ...                    np.full((100, 100), Surface.ROAD, np.uint8))
    >>> wall = BoxSet.from_rows([dict(center=(20.0, 0.0), half_extent=(1.0, 5.0),
    ...                               z_range=(0.0, 3.0), colour=(0.5, 0.5, 0.5))])
    >>> roads = RoadNetwork(nodes=np.zeros((1, 2)), edges=np.zeros((0, 2)))
    >>> town = Town(seed=0, bounds=(-50, -50, 50, 50), roads=roads, ground=ground, boxes=wall)
    >>> x = np.linspace(0.0, 28.0, 29)
    >>> poses = np.stack([np.stack([x, 0 * x, 0 * x], -1),             # drives into the wall
    ...                   np.stack([x, 0 * x + 10.0, 0 * x], -1)])     # passes beside it
    >>> first_collisions(town, poses, np.array([True, True]))
    [Collision(frame=17, kind='obstacle', other=0), None]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shareverse_env.core.geometry import check_finite_poses
from shareverse_env.core.vehicle import CAR_HEIGHT, CAR_LENGTH, CAR_WIDTH
from shareverse_env.world.scene import BoxSet
from shareverse_env.world.town import Town

MIN_OBSTACLE_HEIGHT = 0.25
"""Boxes whose top is at or below this height (kerb strips, markings) are driven over."""

CAR_HALF_EXTENT = np.array([CAR_LENGTH / 2, CAR_WIDTH / 2])
CAR_RADIUS = float(np.linalg.norm(CAR_HALF_EXTENT))
"""Radius of the circle around a car footprint, for culling."""

KINDS: tuple[str, ...] = ("car", "obstacle", "off_road")
"""Collision kinds in order of precedence."""


@dataclass(frozen=True)
class Collision:
    """The first collision of one agent over a chunk.

    Attributes:
        frame: index into the chunk's frames (0 is the chunk's start pose).
        kind: ``"car"``, ``"obstacle"`` or ``"off_road"``.
        other: the other agent's index for ``"car"``; the index into ``town.boxes`` for
            ``"obstacle"``; ``None`` for ``"off_road"``.

    Example:
        >>> hit = Collision(frame=12, kind="car", other=1)
        >>> hit.to_info()
        {'frame': 12, 'kind': 'car', 'other': 1}
    """

    frame: int
    kind: str
    other: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Collision.kind must be one of {KINDS}; got {self.kind!r}")

    def to_info(self) -> dict[str, int | str | None]:
        """A JSON-friendly dict."""
        return {"frame": int(self.frame), "kind": self.kind, "other": self.other}


def rectangles_overlap(
    center_a: np.ndarray,
    half_a: np.ndarray,
    yaw_a: np.ndarray,
    center_b: np.ndarray,
    half_b: np.ndarray,
    yaw_b: np.ndarray,
    margin: float = 0.0,
) -> np.ndarray:
    """Whether oriented rectangles overlap (separating axis theorem), broadcasting over all inputs.

    Args:
        center_a, center_b: ``(..., 2)`` centres.
        half_a, half_b: ``(..., 2)`` half extents along each rectangle's local x and y.
        yaw_a, yaw_b: ``(...)`` rotation of each rectangle's local x axis.
        margin: extra clearance required; positive values make near misses count.

    Returns:
        ``(...)`` bool, True where the rectangles overlap or touch.

    Example:
        >>> import numpy as np
        >>> h = np.array([2.0, 1.0])
        >>> bool(rectangles_overlap(np.zeros(2), h, 0.0, np.array([3.9, 0.0]), h, 0.0))
        True
        >>> bool(rectangles_overlap(np.zeros(2), h, 0.0, np.array([3.0, 2.5]), h, np.pi / 2))
        True
        >>> bool(rectangles_overlap(np.zeros(2), h, 0.0, np.array([3.0, 3.5]), h, np.pi / 2))
        False
    """
    ca, cb = np.asarray(center_a, np.float64), np.asarray(center_b, np.float64)
    ha, hb = np.asarray(half_a, np.float64), np.asarray(half_b, np.float64)
    ya, yb = np.asarray(yaw_a, np.float64), np.asarray(yaw_b, np.float64)
    d = cb - ca
    dx, dy = d[..., 0], d[..., 1]
    ca_c, ca_s = np.cos(ya), np.sin(ya)
    cb_c, cb_s = np.cos(yb), np.sin(yb)
    # Rotation between the frames: cos and sin of (yaw_b - yaw_a) and their absolute values.
    c = np.abs(ca_c * cb_c + ca_s * cb_s)
    s = np.abs(ca_c * cb_s - ca_s * cb_c)
    ha0, ha1, hb0, hb1 = ha[..., 0], ha[..., 1], hb[..., 0], hb[..., 1]
    # Axes of a: its local x (cos, sin) and y (-sin, cos).
    sep = np.abs(dx * ca_c + dy * ca_s) > ha0 + hb0 * c + hb1 * s + margin
    sep |= np.abs(-dx * ca_s + dy * ca_c) > ha1 + hb0 * s + hb1 * c + margin
    # Axes of b.
    sep |= np.abs(dx * cb_c + dy * cb_s) > hb0 + ha0 * c + ha1 * s + margin
    sep |= np.abs(-dx * cb_s + dy * cb_c) > hb1 + ha0 * s + ha1 * c + margin
    return ~sep


def obstacle_boxes(boxes: BoxSet) -> np.ndarray:
    """Indices of the boxes a car can hit (see the module docstring)."""
    z = boxes.z_range
    return np.flatnonzero((z[:, 0] < CAR_HEIGHT) & (z[:, 1] > MIN_OBSTACLE_HEIGHT))


def first_collisions(
    town: Town,
    poses: np.ndarray,
    active: np.ndarray | None = None,
    *,
    margin: float = 0.0,
    check_cars: bool = True,
    check_obstacles: bool = True,
    check_off_road: bool = True,
) -> list[Collision | None]:
    """Each active agent's first collision over a chunk, or ``None``.

    Args:
        town: the town (its ``boxes`` and ``ground``).
        poses: ``(A, F, 3)`` every agent's poses over the chunk's frames (``(A, 3)`` is read as
            a single frame).
        active: ``(A,)`` bool; inactive agents are still solid cars but get ``None``. Default:
            all active.
        margin: clearance in metres that footprints must keep from each other (0: only
            touching or overlapping is a collision).
        check_cars, check_obstacles, check_off_road: switch single rules off.

    Returns:
        A list of ``A`` entries: a :class:`Collision` for each active agent that collides,
        ``None`` otherwise.
    """
    poses = check_finite_poses(poses)
    if poses.ndim == 2:
        poses = poses[:, None, :]
    if poses.ndim != 3:
        raise ValueError(f"poses must have shape (agents, frames, 3); got {poses.shape}")
    num_agents, num_frames = poses.shape[:2]
    active = np.ones(num_agents, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    if active.shape != (num_agents,):
        raise ValueError(f"active must have shape ({num_agents},); got {active.shape}")

    never = num_frames  # sentinel: no collision
    first = np.full((num_agents, len(KINDS)), never, dtype=np.int64)
    other = np.full((num_agents, len(KINDS)), -1, dtype=np.int64)
    live = np.flatnonzero(active)

    if check_cars and num_agents > 1:
        for i in live:
            for j in range(num_agents):
                if j == i:
                    continue
                hit = rectangles_overlap(
                    poses[i, :, :2],
                    CAR_HALF_EXTENT,
                    poses[i, :, 2],
                    poses[j, :, :2],
                    CAR_HALF_EXTENT,
                    poses[j, :, 2],
                    margin=margin,
                )
                frames = np.flatnonzero(hit)
                if len(frames) and frames[0] < first[i, 0]:
                    first[i, 0], other[i, 0] = frames[0], j

    if check_obstacles and len(town.boxes) and len(live):
        idx = obstacle_boxes(town.boxes)
        centers = town.boxes.center[idx].astype(np.float64)
        halves = town.boxes.half_extent[idx].astype(np.float64)
        yaws = town.boxes.yaw[idx].astype(np.float64)
        radii = np.linalg.norm(halves, axis=1)
        for i in live:
            xy = poses[i, :, :2]
            lo, hi = xy.min(axis=0), xy.max(axis=0)
            reach = radii + CAR_RADIUS + margin
            near = np.flatnonzero(
                np.all(centers >= lo - reach[:, None], axis=1)
                & np.all(centers <= hi + reach[:, None], axis=1)
            )
            if not len(near):
                continue
            # Per-frame distance cull before the exact test.
            gap = np.linalg.norm(xy[:, None, :] - centers[None, near], axis=-1)
            cand_f, cand_b = np.nonzero(gap <= reach[near][None, :])
            if not len(cand_f):
                continue
            b = near[cand_b]
            hit = rectangles_overlap(
                poses[i, cand_f, :2],
                CAR_HALF_EXTENT,
                poses[i, cand_f, 2],
                centers[b],
                halves[b],
                yaws[b],
                margin=margin,
            )
            if hit.any():
                k = np.flatnonzero(hit)
                best = k[np.argmin(cand_f[k])]
                first[i, 1], other[i, 1] = cand_f[best], idx[b[best]]

    if check_off_road and len(live):
        on_road = town.ground.is_drivable(poses[live, :, :2])  # (L, F)
        off = ~on_road
        any_off = off.any(axis=1)
        first[live[any_off], 2] = np.argmax(off[any_off], axis=1)

    out: list[Collision | None] = [None] * num_agents
    for i in live:
        frame = int(first[i].min())
        if frame == never:
            continue
        kind = int(np.argmax(first[i] == frame))  # precedence: car, obstacle, off-road
        who = int(other[i, kind]) if kind < 2 else None
        out[i] = Collision(frame=frame, kind=KINDS[kind], other=who)
    return out


def stop_at(plan: np.ndarray, hit: Collision) -> np.ndarray:
    """``plan`` ``(F, 3)`` with the car held where ``hit`` stops it: at the frame before a car
    or obstacle contact (it never overlaps what it hit), at the frame it leaves the road."""
    stop = max(hit.frame - 1, 0) if hit.kind != "off_road" else hit.frame
    held = plan.copy()
    held[stop:] = held[stop]
    return held


def resolve_collisions(
    town: Town, plans: np.ndarray, active: np.ndarray | None = None
) -> tuple[np.ndarray, list[Collision | None]]:
    """The chunk every car actually drives: each active car stops at its first collision,
    checked against where every *other* car actually is, frame by frame.

    A car stopped inside the chunk stands where it stopped, so a car behind it may now hit it
    earlier than (or instead of) anything on its own plan. The checks are repeated on the
    stopped plans until no car's first collision moves earlier; each round can only move
    collisions earlier, so this ends after at most ``agents × frames`` rounds (two or three in
    practice).

    Args:
        town: the town.
        plans: ``(A, F, 3)`` planned poses over the chunk (inactive agents: standing).
        active: ``(A,)`` bool, as in :func:`first_collisions`.

    Returns:
        ``(poses, collisions)``: the driven poses ``(A, F, 3)`` (a new array) and each agent's
        first collision on them (``None`` for inactive agents and those that hit nothing).

    Example:
        >>> import numpy as np
        >>> from shareverse_env.world.scene import BoxSet, GroundMap, Surface
        >>> from shareverse_env.world.town import RoadNetwork, Town
        >>> ground = GroundMap((-50.0, -50.0), 1.0, np.zeros((100, 100, 3), np.uint8),
        ...                    np.full((100, 100), Surface.ROAD, np.uint8))
        >>> ground.surface[:, 70:] = Surface.GRASS                       # road ends at x = 20
        >>> town = Town(seed=0, bounds=(-50, -50, 50, 50),
        ...             roads=RoadNetwork(np.zeros((1, 2)), np.zeros((0, 2))), ground=ground,
        ...             boxes=BoxSet.from_rows([]))
        >>> x = np.linspace(0.0, 28.0, 29)
        >>> lead = np.stack([x + 5.0, 0 * x, 0 * x], -1)   # leaves the road, stops on the verge
        >>> tail = np.stack([x, 0 * x, 0 * x], -1)         # follows 5 m behind
        >>> poses, hits = resolve_collisions(town, np.stack([lead, tail]))
        >>> hits[0].kind, hits[1].kind, hits[1].other
        ('off_road', 'car', 0)
        >>> bool(poses[1, -1, 0] < poses[0, -1, 0] - CAR_LENGTH)         # it stops behind
        True
    """
    poses = np.array(plans, dtype=np.float64, copy=True)
    num_agents, num_frames = poses.shape[:2]
    resolved: list[Collision | None] = [None] * num_agents
    for _ in range(num_agents * num_frames + 1):
        moved = False
        for k, hit in enumerate(first_collisions(town, poses, active)):
            if hit is None:
                continue
            if resolved[k] is None or hit.frame < resolved[k].frame:
                resolved[k] = hit
                poses[k] = stop_at(plans[k], hit)
                moved = True
        if not moved:
            return poses, resolved
    raise AssertionError("collision resolution did not settle")  # unreachable: see docstring
