"""DictObservation: image plus ego pose, speed, the goal and the route ahead in the ego frame."""

import gymnasium
import numpy as np
import pytest
from pettingzoo.test import parallel_api_test
from shareverse_env.wrappers import (
    DictObservation,
    GrayscaleObservation,
    ResizeObservation,
    SelectViews,
    StackChunkFrames,
)

from shareverse_env.core.geometry import world_to_ego
from shareverse_env.world.routes import Route


def test_fields_and_spaces(make_env, drive):
    env = DictObservation(SelectViews(make_env(scenario="following"), ("front",)))
    obs, infos = env.reset(seed=0)
    space = env.observation_space("agent_0")
    assert set(space.spaces) == {"image", "pose", "speed", "goal"}
    assert all(space.contains(o) for o in obs.values())
    assert obs["agent_0"]["image"].shape == (16, 16, 3)
    assert obs["agent_0"]["speed"][0] == 0.0

    obs, _, _, _, infos = env.step(drive(env, [14.0, 0.0, 0.0]))
    assert all(space.contains(o) for o in obs.values())
    for agent, o in obs.items():
        pose = infos[agent]["poses"][-1]
        assert np.allclose(o["pose"][:2], pose[:2], atol=1e-3)
        assert o["speed"][0] == pytest.approx(5.0, abs=1e-3)  # 14 m in 2.8 s, constant speed
        goal = world_to_ego(pose, np.array(infos[agent]["scenario"]["goal"]))
        assert np.allclose(o["goal"], goal, atol=1e-3)


def test_rejects_dict_inside(make_env):
    with pytest.raises(ValueError, match=r"DictObservation: observation_space\('agent_0'\)"):
        DictObservation(DictObservation(make_env()))


def test_full_stack_passes_the_parallel_api_test(make_env):
    env = SelectViews(make_env(max_cycles=2), ("front", "left"))
    env = StackChunkFrames(GrayscaleObservation(ResizeObservation(env, (8, 16))), 4)
    env = DictObservation(env)
    assert env.observation_space("agent_0")["image"].shape == (4, 8, 16, 1)
    parallel_api_test(env, num_cycles=3)


def test_default_has_no_route(make_env):
    env = DictObservation(make_env(scenario="following"))
    assert "route" not in env.observation_space("agent_0").spaces
    assert env.route_points == 0


def test_route_ahead_in_the_ego_frame(make_env, drive):
    env = DictObservation(make_env(scenario="following"), route_points=6)
    obs, infos = env.reset(seed=0)
    space = env.observation_space("agent_0")
    assert space["route"] == gymnasium.spaces.Box(-np.inf, np.inf, (6, 2), np.float32)
    assert all(space.contains(o) for o in obs.values())
    # Cars start on their route, heading along it; the first 30 m of "following" are straight.
    expected = np.stack([5.0 * np.arange(1, 7), np.zeros(6)], axis=-1)
    for o in obs.values():
        assert np.allclose(o["route"], expected, atol=0.02)

    for _ in range(3):
        obs, _, _, _, infos = env.step(drive(env, [14.0, 0.3, 0.02]))  # a little off the lane
        assert all(space.contains(o) for o in obs.values())
        for agent, o in obs.items():
            route = o["route"].astype(np.float64)
            assert np.all(route[:, 0] > 0)  # ahead
            gaps = np.linalg.norm(np.diff(np.concatenate([[[0.0, 0.0]], route]), axis=0), axis=1)
            assert np.all(gaps < 5.0 + 0.5) and np.allclose(gaps[1:], 5.0, atol=0.05)
            # The same points as projecting the ego pose onto the route by hand.
            pose = infos[agent]["poses"][-1]
            line = Route.from_points(np.array(infos[agent]["scenario"]["route"]))
            s0, _ = line.project(pose[:2])
            ahead = line.pose_at(s0 + 5.0 * np.arange(1, 7))[:, :2]
            assert np.allclose(route, world_to_ego(pose, ahead), atol=1e-3)


def test_route_ends_at_the_goal(make_env, drive):
    env = DictObservation(make_env(scenario="following"), route_points=5, route_spacing=50.0)
    obs, infos = env.reset(seed=0)
    obs, _, _, _, infos = env.step(drive(env))
    for agent, o in obs.items():
        assert infos[agent]["scenario"]["route_length"] < 5 * 50.0  # the goal is nearer
        assert np.allclose(o["route"][-1], o["goal"], atol=2e-3)
        assert not np.allclose(o["route"][0], o["goal"], atol=1.0)


def test_route_follows_a_turn(make_env):
    env = DictObservation(make_env(scenario="t_junction"), route_points=12)
    obs, _ = env.reset(seed=0)
    # Agent 1 comes up the stem, 20–36 m before the junction, and turns into the through road.
    route = obs["agent_1"]["route"].astype(np.float64)
    gaps = np.linalg.norm(np.diff(route, axis=0), axis=1)
    assert np.all(gaps <= 5.0 + 1e-3) and np.all(gaps > 3.0)  # chords of a 5 m step
    assert np.allclose(route[:3, 1], 0.0, atol=0.05)  # straight on up the stem first
    assert abs(route[-1, 1]) > 20.0 and route[-1, 0] > 15.0  # then well to one side


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"route_points": -1}, r"route_points must be a non-negative int.*got -1"),
        ({"route_points": 2.0}, r"route_points must be a non-negative int.*got 2\.0"),
        ({"route_points": True}, r"route_points must be a non-negative int.*got True"),
        ({"route_spacing": 0.0}, r"route_spacing must be a positive finite float.*got 0\.0"),
        ({"route_spacing": -5.0}, r"route_spacing must be a positive finite float.*got -5\.0"),
        ({"route_spacing": float("inf")}, r"route_spacing must be a positive finite.*got inf"),
        ({"route_spacing": float("nan")}, r"route_spacing must be a positive finite.*got nan"),
        ({"route_spacing": "5"}, r"route_spacing must be a positive finite float.*got '5'"),
    ],
)
def test_bad_route_options(make_env, kwargs, match):
    with pytest.raises(ValueError, match=rf"DictObservation: {match}"):
        DictObservation(make_env(), **kwargs)
