"""Per-chunk rewards: progress along the route, reaching the goal, collisions and harsh driving.

One env step moves a car through a 29-frame chunk (frame 0 is where it stood). The reward of the
chunk is the sum of the terms below; :func:`chunk_reward` returns them one by one too, for infos.

==================  =======================================================================
``progress``        ``progress_weight`` × metres gained along the route: the increase of the
                    route-projected arc length, summed frame by frame, counting only frame
                    pairs whose both ends lie within ``progress_max_lateral`` of the route and
                    never more than the distance actually travelled — so cutting a corner,
                    or driving off and rejoining further on, does not pay; reversing costs.
``goal``            ``goal_bonus`` once, when the car centre comes within ``goal_radius`` of
                    the goal at any frame of the chunk.
``collision``       ``collision_penalty`` when the chunk has a collision (any kind).
``slip``            ``-slip_weight`` × (excess of sideways travel over ``slip_threshold``)²:
                    sideways travel is the sum over frames of the |displacement| along the car's
                    own left axis, i.e. crabbing that real cars cannot do.
``yaw``             ``-yaw_weight`` × (excess of the chunk's |heading change| over
                    ``yaw_threshold``)²: turning harder than comfortable within one chunk.
``action_change``   ``-action_change_weight`` × Σ((action − previous action) / action_scale)²:
                    jerky commands between consecutive steps.
``time``            ``-time_penalty`` every step, so that dawdling costs a little.
==================  =======================================================================

With the defaults, driving 22 m along the lane (8 m/s) earns about +2.2 per step, standing still
costs 0.05, a collision −10 and reaching the goal +10.

Example:
    >>> import numpy as np
    >>> from shareverse_env.core.geometry import plan_chunk
    >>> from shareverse_env.world.routes import Route
    >>> route = Route.from_points(np.array([[0.0, 0.0], [100.0, 0.0]]))
    >>> poses = plan_chunk(np.zeros(3), np.array([20.0, 0.0, 0.0]))
    >>> action = np.array([20.0, 0.0, 0.0])
    >>> reward, terms, reached = chunk_reward(RewardConfig(), route, route.points[-1], poses,
    ...                                       action, action, None)
    >>> round(reward, 3), round(terms["progress"], 3), reached
    (1.95, 2.0, False)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shareverse_env.core.geometry import check_finite_poses, wrap_angle
from shareverse_env.world.collision import Collision
from shareverse_env.world.routes import Route

TERMS: tuple[str, ...] = ("progress", "goal", "collision", "slip", "yaw", "action_change", "time")
"""Keys of the per-term dict :func:`chunk_reward` returns; the reward is their sum."""


@dataclass(frozen=True)
class RewardConfig:
    """Weights and thresholds of the chunk reward (see the module docstring for each term).

    Attributes:
        progress_weight: reward per metre of progress along the route.
        progress_max_lateral: progress only counts within this distance of the route (metres).
        goal_bonus: reward for reaching the goal.
        goal_radius: the goal is reached when the car centre comes this close (metres).
        collision_penalty: added when the chunk has a collision (negative).
        slip_weight: weight of the squared excess sideways travel (per m²).
        slip_threshold: sideways travel per chunk that costs nothing (metres).
        yaw_weight: weight of the squared excess heading change (per rad²).
        yaw_threshold: heading change per chunk that costs nothing (rad); 0.8 rad ≈ 46°, so a
            90° junction turn is free when spread over two chunks and costs 0.3 in one.
        action_change_weight: weight of the squared scaled action change.
        action_scale: ``(forward m, lateral m, yaw rad)`` change between consecutive steps
            that counts as one unit.
        time_penalty: subtracted every step.

    Example:
        >>> cfg = RewardConfig(collision_penalty=-20.0)
        >>> cfg.progress_weight, cfg.goal_bonus, cfg.collision_penalty
        (0.1, 10.0, -20.0)
    """

    progress_weight: float = 0.1
    progress_max_lateral: float = 4.0
    goal_bonus: float = 10.0
    goal_radius: float = 4.0
    collision_penalty: float = -10.0
    slip_weight: float = 0.1
    slip_threshold: float = 0.5
    yaw_weight: float = 0.5
    yaw_threshold: float = 0.8
    action_change_weight: float = 0.05
    action_scale: tuple[float, float, float] = (10.0, 2.0, 0.8)
    time_penalty: float = 0.05

    def __post_init__(self) -> None:
        if self.goal_radius <= 0 or self.progress_max_lateral <= 0:
            raise ValueError("goal_radius and progress_max_lateral must be positive")
        if len(self.action_scale) != 3 or min(self.action_scale) <= 0:
            raise ValueError(f"action_scale needs three positive values; got {self.action_scale}")


def route_progress(route: Route, poses: np.ndarray, max_lateral: float) -> float:
    """Metres gained along ``route`` over consecutive ``poses (F, 3)`` (see the module docstring)."""
    xy = np.asarray(poses, dtype=np.float64)[:, :2]
    if len(xy) < 2:
        return 0.0
    s, lateral = route.project(xy)
    near = np.abs(lateral) <= max_lateral
    step = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    ds = np.clip(np.diff(s), -step - 1e-9, step + 1e-9)
    return float(np.sum(ds * (near[:-1] & near[1:])))


def sideways_travel(poses: np.ndarray) -> float:
    """Sum over frames of the |displacement| along the car's left axis (metres)."""
    p = np.asarray(poses, dtype=np.float64)
    d = np.diff(p[:, :2], axis=0)
    yaw = p[:-1, 2] + 0.5 * wrap_angle(np.diff(p[:, 2]))  # heading half-way through each step
    return float(np.sum(np.abs(-np.sin(yaw) * d[:, 0] + np.cos(yaw) * d[:, 1])))


def chunk_reward(
    config: RewardConfig,
    route: Route,
    goal: np.ndarray,
    poses: np.ndarray,
    action: np.ndarray,
    prev_action: np.ndarray,
    collision: Collision | None,
) -> tuple[float, dict[str, float], bool]:
    """The reward of one agent's chunk.

    Args:
        config: weights and thresholds.
        route: the agent's reference route.
        goal: ``(2,)`` goal xy (the scenario's, normally the route's end).
        poses: ``(F, 3)`` the chunk's poses as driven (frame 0 is the start; after a collision the
            env holds the car still, and those held poses are what count).
        action: ``(3,)`` this step's action; ``prev_action`` the previous step's (zeros at the
            first step: the car starts from rest).
        collision: the chunk's first collision, or ``None``.

    Returns:
        ``(reward, terms, reached_goal)``: the reward (the sum of ``terms``), each term of
        :data:`TERMS` as a float, and whether the car reached the goal during the chunk.
    """
    poses = check_finite_poses(poses)
    if poses.ndim != 2:
        raise ValueError(f"poses must have shape (frames, 3); got {poses.shape}")
    action = np.asarray(action, dtype=np.float64).reshape(3)
    prev_action = np.asarray(prev_action, dtype=np.float64).reshape(3)
    goal = np.asarray(goal, dtype=np.float64).reshape(2)

    progress = route_progress(route, poses, config.progress_max_lateral)
    reached = bool(np.min(np.linalg.norm(poses[:, :2] - goal, axis=1)) <= config.goal_radius)
    slip = max(0.0, sideways_travel(poses) - config.slip_threshold)
    turn = abs(float(wrap_angle(poses[-1, 2] - poses[0, 2])))
    turn = max(0.0, turn - config.yaw_threshold)
    change = (action - prev_action) / np.asarray(config.action_scale, dtype=np.float64)

    terms = {
        "progress": config.progress_weight * progress,
        "goal": config.goal_bonus if reached else 0.0,
        "collision": config.collision_penalty if collision is not None else 0.0,
        "slip": -config.slip_weight * slip**2,
        "yaw": -config.yaw_weight * turn**2,
        "action_change": -config.action_change_weight * float(change @ change),
        "time": -config.time_penalty,
    }
    terms = {k: float(v) for k, v in terms.items()}
    return float(sum(terms.values())), terms, reached
