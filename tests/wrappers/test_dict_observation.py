"""DictObservation: image plus ego pose, speed and the goal in the ego frame."""

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

from shareverse_env.geometry import world_to_ego


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
