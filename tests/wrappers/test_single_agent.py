"""SingleAgentEnv: a gymnasium.Env driving one car while a policy drives the others."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from shareverse_env.wrappers import MetaActions, SingleAgentEnv

from shareverse_env.policies import random_policy


def test_passes_gymnasium_env_checker(make_env):
    env = SingleAgentEnv(make_env(max_cycles=3), agent="agent_1")
    check_env(env, skip_render_check=True)


def test_others_follow_the_expert(make_env):
    parallel = make_env(max_cycles=4, scenario="crossing")
    env = SingleAgentEnv(parallel)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["scenario"]["index"] == 0
    start = parallel.state()[1, :2].copy()
    obs, reward, terminated, truncated, info = env.step(np.zeros(3, np.float32))
    assert env.observation_space.contains(obs)
    assert isinstance(reward, float) and not terminated and not truncated
    # The controlled car stood still; the expert drove agent_1 along its route.
    assert np.allclose(parallel.state()[0, :2], parallel.unwrapped.scenario.agents[0].start[:2])
    assert np.linalg.norm(parallel.state()[1, :2] - start) > 5.0


def test_episode_ends_with_the_controlled_agent(make_env):
    parallel = make_env(max_cycles=2)
    env = SingleAgentEnv(parallel, others=random_policy(parallel, seed=0))
    env.reset(seed=0)
    done, steps = False, 0
    while not done:
        _, _, terminated, truncated, _ = env.step(np.array([8.0, 0.0, 0.0], np.float32))
        done, steps = terminated or truncated, steps + 1
    assert steps <= 2
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(3, np.float32))


def test_random_others_are_replayed_from_the_seed(make_env):
    parallel = make_env(max_cycles=2)
    env = SingleAgentEnv(parallel, others=random_policy(parallel, seed=None))
    runs = []
    for _ in range(2):
        env.reset(seed=5)
        env.step(np.zeros(3, np.float32))
        runs.append(parallel.state().copy())
    assert np.array_equal(runs[0], runs[1])


def test_bad_agent(make_env):
    with pytest.raises(ValueError, match=r"SingleAgentEnv: agent must be one of"):
        SingleAgentEnv(make_env(), agent="agent_7")


def test_default_expert_needs_pose_delta_actions(make_env):
    with pytest.raises(ValueError, match=r"SingleAgentEnv: the default expert drives 'agent_1'"):
        SingleAgentEnv(MetaActions(make_env()))
    env = SingleAgentEnv(MetaActions(make_env(), agents=["agent_0"]))
    env.reset(seed=0)
    env.step(0)
