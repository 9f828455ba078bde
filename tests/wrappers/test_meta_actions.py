"""MetaActions: Discrete(5) commands turned into pose deltas along the route and the lanes."""

import gymnasium
import numpy as np
import pytest
from pettingzoo.test import parallel_api_test
from shareverse_env.wrappers import META_ACTIONS, MetaActions

from shareverse_env.core.geometry import wrap_angle

KEEP, LEFT, RIGHT, SLOW, STOP = range(5)


def test_spaces_and_speeds(make_env):
    # agent_0 leads in "following": it drives by meta-actions, the follower stands still.
    env = MetaActions(make_env(max_cycles=5, scenario="following"), agents=["agent_0"])
    assert env.action_space("agent_0") == gymnasium.spaces.Discrete(5)
    assert isinstance(env.action_space("agent_1"), gymnasium.spaces.Box)
    env.reset(seed=0)
    raw = env.unwrapped
    speeds = []
    for command in (KEEP, KEEP, SLOW, STOP):
        before = raw.state()[0, :2].copy()
        _, _, _, _, infos = env.step({"agent_0": command, "agent_1": np.zeros(3, np.float32)})
        report = infos["agent_0"]["meta_action"]
        assert report["name"] == META_ACTIONS[command]
        assert infos["agent_0"]["collision"] is None
        speeds.append(report["speed"])
        moved = np.linalg.norm(raw.state()[0, :2] - before)
        assert moved == pytest.approx(report["speed"] * 2.8, abs=0.5)
    assert speeds == [3.0, 6.0, 3.0, 0.0]


def test_keep_lane_follows_the_route(make_env):
    env = MetaActions(make_env(max_cycles=6, scenario="crossing", num_agents=1))
    env.reset(seed=0)
    route = env.unwrapped.scenario.agents[0].route
    for _ in range(4):
        *_, infos = env.step({"agent_0": KEEP})
        assert infos["agent_0"]["collision"] is None
        _, lateral = route.project(infos["agent_0"]["poses"][:, :2])
        assert np.abs(lateral).max() < 0.5


@pytest.mark.parametrize(("command", "sign"), [(LEFT, 1.0), (RIGHT, -1.0)])
def test_turns_at_the_next_junction(make_env, command, sign):
    # "crossing": both cars go straight over the junction ahead; a turn command makes them turn.
    env = MetaActions(make_env(max_cycles=8, scenario="crossing", num_agents=1))
    env.reset(seed=0)
    yaw0 = env.unwrapped.state()[0]
    yaw0 = np.arctan2(yaw0[3], yaw0[2])
    _, _, _, _, infos = env.step({"agent_0": command})
    assert infos["agent_0"]["meta_action"]["route_changed"]
    for _ in range(6):
        if not env.agents:
            break
        _, _, _, _, infos = env.step({"agent_0": KEEP})
        assert infos["agent_0"]["collision"] is None
    turned = wrap_angle(infos["agent_0"]["poses"][-1, 2] - yaw0)
    assert turned == pytest.approx(sign * np.pi / 2, abs=0.2)


def test_parallel_api(make_env):
    parallel_api_test(MetaActions(make_env(max_cycles=2)), num_cycles=3)


@pytest.mark.parametrize("action", [5, -1, 1.0, "keep_lane", np.array([0, 1])])
def test_bad_actions(make_env, action):
    env = MetaActions(make_env())
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"MetaActions: action of agent_0 must be an integer"):
        env.step({"agent_0": action, "agent_1": KEEP})


def test_bad_envs(make_env):
    with pytest.raises(ValueError, match=r"MetaActions: action_space\('agent_0'\) must be"):
        MetaActions(MetaActions(make_env()))
    with pytest.raises(ValueError, match=r"MetaActions: agents \['car'\]"):
        MetaActions(make_env(), agents=["car"])
    from pettingzoo.test.example_envs.generated_agents_parallel_v0 import parallel_env

    with pytest.raises(ValueError, match="MetaActions: env must be a ShareVerse parallel env"):
        MetaActions(parallel_env())
