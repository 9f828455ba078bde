"""Route tracking: the pose delta that moves a car a given distance along a route in one chunk.

An action is the pose change over a 2.8-second chunk (:data:`CHUNK_SECONDS`), so following a
route means choosing *where on the route the car should stand at the chunk's end* and handing
the env that pose, expressed in the car's frame. The env interpolates the frames in between
with a cubic Hermite curve matching the start and end headings, which stays close to the lane as
long as the heading change per chunk is moderate — hence :func:`turn_limited_distance`, which
shortens the chunk's travel in bends (the car slows down for turns).

Example:
    >>> import numpy as np
    >>> from shareverse_env.world.routes import Route
    >>> route = Route.from_points(np.array([[0.0, 0.0], [100.0, 0.0]]))
    >>> route_action(np.array([10.0, 0.5, 0.0]), route, 20.0).round(3).tolist()
    [20.0, -0.5, 0.0]
"""

from __future__ import annotations

import numpy as np

from shareverse_env.core.geometry import FPS, NEW_FRAMES_PER_CHUNK, relative_se2, wrap_angle
from shareverse_env.envs.parallel import ACTION_HIGH, ACTION_LOW
from shareverse_env.world.routes import Route

CHUNK_SECONDS: float = NEW_FRAMES_PER_CHUNK / FPS
"""Duration of one env step (28 frames at 10 fps = 2.8 s)."""

MAX_TURN_PER_CHUNK: float = 0.8
"""Default heading change per chunk (rad): the reward's free ``yaw_threshold``; a 90° junction
turn then takes two chunks, which keeps the interpolated path inside the junction."""

_SAMPLE_STEP = 0.5  # metres between the route samples that measure the heading change


def turn_limited_distance(
    route: Route, s: float, distance: float, yaw: float, max_turn: float = MAX_TURN_PER_CHUNK
) -> float:
    """The largest ``d ≤ distance`` such that the route heading between ``s`` and ``s + d``
    stays within ``max_turn`` of the car's ``yaw``.

    A car already misaligned with the route by more than ``max_turn`` may turn as far as the
    route heading at ``s`` (plus a little), so that it can always get back onto the route.
    """
    distance = float(min(max(distance, 0.0), route.length - s))
    if distance <= 0.0:
        return 0.0
    q = s + np.linspace(0.0, distance, int(np.ceil(distance / _SAMPLE_STEP)) + 1)
    # Unwrap from the car's own heading so that a car already turned counts what it has done.
    headings = np.unwrap(np.concatenate([[yaw], route.pose_at(q)[:, 2]]))[1:]
    limit = max(max_turn, abs(headings[0] - yaw) + 0.1)
    beyond = np.flatnonzero(np.abs(headings - yaw) > limit)
    if not len(beyond):
        return distance
    return float(q[beyond[0] - 1] - s) if beyond[0] > 0 else 0.0


def pose_delta(pose: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The action ``(forward, lateral, yaw)`` that ends a chunk at world pose ``target``, clipped
    to the env's bounds (float32)."""
    delta = relative_se2(np.asarray(pose, np.float64), np.asarray(target, np.float64))
    delta[2] = wrap_angle(delta[2])
    return np.clip(delta, ACTION_LOW, ACTION_HIGH).astype(np.float32)


def route_action(
    pose: np.ndarray,
    route: Route,
    distance: float,
    max_turn: float = MAX_TURN_PER_CHUNK,
    s: float | None = None,
) -> np.ndarray:
    """The action that moves a car at ``pose`` about ``distance`` metres along ``route``.

    The car is projected onto the route (or placed at arc length ``s``); the target is the
    route pose ``distance`` further on (never beyond the route's end), shortened by
    :func:`turn_limited_distance` and, where the pose change would leave the action bounds (in
    a bend the target soon lies more than 3 m to the side), until it fits. A car beside the
    route is steered back onto it.
    """
    pose = np.asarray(pose, dtype=np.float64)
    if s is None:
        s = float(route.project(pose[:2])[0])
    d = turn_limited_distance(route, s, distance, float(pose[2]), max_turn)
    if d <= 1e-6:
        return np.zeros(3, dtype=np.float32)
    delta = _raw_delta(pose, route.pose_at(s + d))
    if _in_bounds(delta):
        return delta.astype(np.float32)
    # Clipping would bend the path away from the route; go less far instead (bisection).
    lo, hi = 0.0, d
    for _ in range(12):
        mid = 0.5 * (lo + hi)
        if _in_bounds(_raw_delta(pose, route.pose_at(s + mid))):
            lo = mid
        else:
            hi = mid
    return pose_delta(pose, route.pose_at(s + lo))


def _raw_delta(pose: np.ndarray, target: np.ndarray) -> np.ndarray:
    delta = relative_se2(pose, target)
    delta[2] = wrap_angle(delta[2])
    return delta


def _in_bounds(delta: np.ndarray) -> bool:
    return bool(np.all(delta >= ACTION_LOW) and np.all(delta <= ACTION_HIGH))
