"""The AEC env checks each action when it is given (``shareverse_env.envs.aec``)."""

from __future__ import annotations

import numpy as np
import pytest

import shareverse_env

DRIVE = np.array([6.0, 0.0, 0.0])


def test_bad_action_raises_at_once_naming_its_agent_and_changes_nothing() -> None:
    env = shareverse_env.env(backend="world", max_cycles=3)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action of agent_0: expected shape \(3,\)"):
        env.step(np.zeros(2))
    assert env.agent_selection == "agent_0"  # the bad action was not taken
    with pytest.raises(ValueError, match="action of agent_0: non-finite lateral"):
        env.step(np.array([1.0, np.nan, 0.0]))
    # The env goes on as if the bad actions had never been given.
    env.step(DRIVE)
    assert env.agent_selection == "agent_1"
    with pytest.raises(TypeError, match="action of agent_1: expected a real-valued array"):
        env.step("forward")
    env.step(DRIVE)
    assert env.agent_selection == "agent_0"
    reference = shareverse_env.env(backend="world", max_cycles=3)
    reference.reset(seed=0)
    reference.step(DRIVE)
    reference.step(DRIVE)
    for agent in env.agents:
        np.testing.assert_array_equal(env.observe(agent), reference.observe(agent))
        assert env.rewards[agent] == reference.rewards[agent]


def test_done_agents_take_none() -> None:
    env = shareverse_env.env(backend="world", max_cycles=1)
    env.reset(seed=0)
    env.step(DRIVE)
    env.step(DRIVE)
    assert all(env.truncations.values())
    for _ in list(env.agents):
        env.step(None)
    assert env.agents == []
