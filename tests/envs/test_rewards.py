"""Chunk rewards: signs and sizes of every term."""

import doctest

import numpy as np
import pytest

import shareverse_env.envs.rewards as rewards_module
from shareverse_env.core.geometry import plan_chunk
from shareverse_env.envs.rewards import (
    TERMS,
    RewardConfig,
    chunk_reward,
    route_progress,
    sideways_travel,
)
from shareverse_env.world.collision import Collision
from shareverse_env.world.routes import Route, lane_route
from shareverse_env.world.town import RoadNetwork

CFG = RewardConfig()
STRAIGHT = Route.from_points(np.array([[0.0, 0.0], [200.0, 0.0]]))
GOAL = STRAIGHT.points[-1]


def reward(
    action, start=(0.0, 0.0, 0.0), prev=None, route=STRAIGHT, goal=GOAL, collision=None, cfg=CFG
):
    action = np.asarray(action, float)
    poses = plan_chunk(np.asarray(start, float), action)
    prev = action if prev is None else np.asarray(prev, float)
    return chunk_reward(cfg, route, goal, poses, action, prev, collision)


def test_doctests():
    result = doctest.testmod(rewards_module)
    assert result.attempted > 0 and result.failed == 0


def test_terms_sum_to_the_reward():
    r, terms, reached = reward([15.0, 1.0, 0.2], prev=[0.0, 0.0, 0.0])
    assert set(terms) == set(TERMS)
    assert all(isinstance(v, float) for v in terms.values())
    assert r == pytest.approx(sum(terms.values()))
    assert isinstance(reached, bool)


def test_driving_along_the_route_pays_per_metre():
    r, terms, _ = reward([22.0, 0.0, 0.0])
    assert terms["progress"] == pytest.approx(0.1 * 22.0)
    assert r == pytest.approx(2.2 - CFG.time_penalty)
    faster, _, _ = reward([28.0, 0.0, 0.0])
    assert faster > r > 0


def test_standing_still_costs_a_little():
    r, terms, reached = reward([0.0, 0.0, 0.0])
    assert r == pytest.approx(-CFG.time_penalty)
    assert -0.2 < r < 0 and not reached
    assert terms["progress"] == 0.0


def test_reversing_costs():
    _, terms, _ = reward([-5.0, 0.0, 0.0], start=(50.0, 0.0, 0.0))
    assert terms["progress"] == pytest.approx(-0.5)


def test_progress_off_the_route_does_not_count():
    # Parallel to the route but 6 m beside it (beyond progress_max_lateral = 4 m).
    _, terms, _ = reward([20.0, 0.0, 0.0], start=(10.0, 6.0, 0.0))
    assert terms["progress"] == 0.0
    # 3 m beside it still counts.
    _, terms, _ = reward([20.0, 0.0, 0.0], start=(10.0, 3.0, 0.0))
    assert terms["progress"] == pytest.approx(2.0)


def test_cutting_across_does_not_pay():
    # A U-shaped route: east 60 m, north 20 m, west 60 m. Jumping straight north from the
    # first leg to the last would skip ~100 m of route.
    u_route = Route.from_points(
        np.concatenate(
            [
                np.stack([np.linspace(0, 60, 121), np.zeros(121)], -1),
                np.stack([np.full(40, 60.0), np.linspace(0.5, 20, 40)], -1),
                np.stack([np.linspace(59.5, 0, 120), np.full(120, 20.0)], -1),
            ]
        )
    )
    poses = plan_chunk(np.array([20.0, 0.0, np.pi / 2]), np.array([20.0, 0.0, 0.0]))
    gained = route_progress(u_route, poses, CFG.progress_max_lateral)
    assert abs(gained) < 10.0  # versus the 100 m it would take along the route
    s0, s1 = u_route.project(poses[[0, -1], :2])[0]
    assert s1 - s0 > 90.0


def test_progress_is_capped_by_distance_travelled():
    # A route that doubles back close to itself: nearest-point jumps must not pay extra.
    route = lane_route(
        RoadNetwork(
            nodes=np.array([[0.0, 0.0], [50.0, 0.0], [50.0, 14.0], [0.0, 14.0]]),
            edges=np.array([[0, 1], [1, 2], [2, 3]]),
        ),
        [0, 1, 2, 3],
    )
    rng = np.random.default_rng(0)
    for _ in range(50):
        start = np.array([*rng.uniform([0, -5], [50, 19]), rng.uniform(-np.pi, np.pi)])
        poses = plan_chunk(
            start, np.array([rng.uniform(0, 28), rng.uniform(-3, 3), rng.uniform(-1.5, 1.5)])
        )
        travelled = np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1).sum()
        assert abs(route_progress(route, poses, 4.0)) <= travelled + 1e-6


def test_goal_bonus():
    r, terms, reached = reward([20.0, 0.0, 0.0], start=(178.0, 0.0, 0.0))
    assert reached and terms["goal"] == CFG.goal_bonus
    assert r > CFG.goal_bonus
    # Stopping just short of the radius: no bonus.
    _, terms, reached = reward(
        [20.0, 0.0, 0.0], start=(170.0, 0.0, 0.0), goal=np.array([200.0, 0.0])
    )
    assert not reached and terms["goal"] == 0.0
    # Passing the goal 3 m to the side, within the 4 m radius, counts.
    _, _, reached = reward([28.0, 0.0, 0.0], start=(180.0, 3.0, 0.0), goal=np.array([195.0, 0.0]))
    assert reached


def test_collision_penalty():
    hit = Collision(frame=10, kind="obstacle", other=3)
    r, terms, _ = reward([20.0, 0.0, 0.0], collision=hit)
    assert terms["collision"] == CFG.collision_penalty == -10.0
    assert r < -7.0
    for kind in ("car", "off_road"):
        _, terms, _ = reward([20.0, 0.0, 0.0], collision=Collision(3, kind))
        assert terms["collision"] == -10.0


def test_harsh_driving_penalties():
    _, smooth, _ = reward([20.0, 0.0, 0.0])
    assert smooth["slip"] == 0.0 and smooth["yaw"] == 0.0 and smooth["action_change"] == 0.0
    # Crabbing 3 m sideways without turning.
    _, crab, _ = reward([20.0, 3.0, 0.0])
    assert sideways_travel(plan_chunk(np.zeros(3), np.array([20.0, 3.0, 0.0]))) == pytest.approx(
        3.0
    )
    assert crab["slip"] == pytest.approx(-0.1 * 2.5**2)
    # A full 90° turn in one chunk costs a little; half of it is free.
    _, sharp, _ = reward([12.0, 0.0, np.pi / 2])
    assert sharp["yaw"] == pytest.approx(-0.5 * (np.pi / 2 - 0.8) ** 2)
    # A turn whose (forward, lateral) lie on the arc of its heading change is free...
    radius, turn = 8.0 / 0.7, 0.7
    _, gentle, _ = reward([radius * np.sin(turn), radius * (1 - np.cos(turn)), turn])
    assert gentle["yaw"] == 0.0 and gentle["slip"] == 0.0
    # ...turning on the spot while driving straight ahead is crabbing.
    _, skid, _ = reward([12.0, 0.0, 0.7])
    assert skid["slip"] < -0.5
    # Changing the command between steps.
    _, jerk, _ = reward([20.0, 0.0, 0.0], prev=[0.0, 0.0, 0.0])
    assert jerk["action_change"] == pytest.approx(-0.05 * (20.0 / 10.0) ** 2)


def test_custom_weights_and_validation():
    cfg = RewardConfig(progress_weight=1.0, time_penalty=0.0)
    r, _, _ = reward([10.0, 0.0, 0.0], cfg=cfg)
    assert r == pytest.approx(10.0)
    with pytest.raises(ValueError):
        RewardConfig(goal_radius=0.0)
    with pytest.raises(ValueError):
        RewardConfig(action_scale=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="frames"):
        chunk_reward(CFG, STRAIGHT, GOAL, np.zeros((2, 2, 3)), np.zeros(3), np.zeros(3), None)
