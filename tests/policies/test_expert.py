"""The route-following expert: reaches goals, keeps its distance, never leaves the action bounds.

The thresholds of the headline test leave a wide margin: on its 24 agent-episodes the expert
reaches every goal without a collision and the random policy reaches none (on 192
agent-episodes in eight towns, docs/wrappers.md: 99.5 % and 0 % against 0 % and 100 %).
"""

import numpy as np
import pytest

from shareverse_env.policies import RouteFollowingExpert, make_policy, run_episode
from shareverse_env.world.scenarios import SCENARIOS


def rates(env, name, seeds):
    outcomes = []
    for scenario in SCENARIOS:
        for seed in seeds:
            policy = make_policy(name, env, seed=seed)
            result = run_episode(env, policy, seed=seed, options={"scenario": scenario})
            outcomes += list(result.values())
    goal = np.mean([o.reached_goal for o in outcomes])
    collision = np.mean([o.collision is not None for o in outcomes])
    print(f"{name}: goal {goal:.3f}, collision {collision:.3f}, {len(outcomes)} agent-episodes")
    return goal, collision


def test_expert_reaches_goals_far_more_often_than_random(make_env):
    env = make_env(max_cycles=14)
    expert_goal, expert_collision = rates(env, "expert", seeds=[0, 1])
    random_goal, random_collision = rates(env, "random", seeds=[0, 1])
    assert expert_goal >= 0.75, expert_goal
    assert expert_collision <= 0.1, expert_collision
    assert random_goal <= 0.1, random_goal
    assert expert_goal - random_goal >= 0.6
    assert random_collision >= 0.5  # uniform pose deltas leave the road almost at once


def test_actions_stay_in_bounds_and_cover_the_driven_agents(make_env):
    env = make_env(num_agents=3, max_cycles=3, scenario="diverge")
    observations, _ = env.reset(seed=4)
    expert = RouteFollowingExpert(env, agents=["agent_0", "agent_2"])
    while env.agents:
        actions = expert(observations)
        assert set(actions) == {"agent_0", "agent_2"} & set(env.agents)
        for agent, action in actions.items():
            assert action.dtype == np.float32 and env.action_space(agent).contains(action)
        actions.update({a: np.zeros(3, np.float32) for a in env.agents if a not in actions})
        observations, *_ = env.step(actions)


def test_stops_behind_a_car_standing_on_its_path(make_env):
    # Put the follower 12 m behind the leader; the leader (not driven by the expert) stands.
    env = make_env(scenario="following", max_cycles=4)
    env.reset(seed=0)
    leader, follower = env.unwrapped.scenario.agents
    route = follower.route
    s_leader = float(route.project(leader.start[:2][None])[0][0])
    starts = np.stack([leader.start, route.pose_at(s_leader - 12.0)])
    env.reset(seed=0, options={"start_poses": starts})
    expert = RouteFollowingExpert(env, agents=["agent_1"], min_gap=4.0)
    for _ in range(3):
        actions = expert() | {"agent_0": np.zeros(3, np.float32)}
        _, _, _, _, infos = env.step(actions)
        assert infos["agent_1"]["collision"] is None
    gap = np.linalg.norm(env.state()[0, :2] - env.state()[1, :2]) - 4.5  # bumper to bumper
    assert 3.0 <= gap <= 8.0, gap  # closed up to about min_gap and stopped


def test_slows_down_behind_a_slower_leader(make_env):
    env = make_env(scenario="following", max_cycles=2)
    env.reset(seed=0)
    leader, follower = env.unwrapped.scenario.agents
    s_leader = float(follower.route.project(leader.start[:2][None])[0][0])
    starts = np.stack([leader.start, follower.route.pose_at(s_leader - 15.0)])
    env.reset(seed=0, options={"start_poses": starts})
    slow = RouteFollowingExpert(env, agents=["agent_0"], cruise_speed=2.0)
    fast = RouteFollowingExpert(env, agents=["agent_1"])
    # The leader planned first (slowly); the follower only knows the leader's last action (none
    # yet) and so keeps min_gap + headway behind where the leader stands now.
    actions = slow() | fast()
    assert actions["agent_1"][0] < 22.4 * 0.75
    _, _, _, _, infos = env.step(actions)
    assert infos["agent_1"]["collision"] is None


def test_errors(make_env):
    from pettingzoo.test.example_envs.generated_agents_parallel_v0 import parallel_env

    with pytest.raises(ValueError, match="RouteFollowingExpert: env must be a ShareVerse"):
        RouteFollowingExpert(parallel_env())
    with pytest.raises(ValueError, match=r"RouteFollowingExpert: agents \['agent_9'\]"):
        RouteFollowingExpert(make_env(), agents=["agent_9"])
    with pytest.raises(ValueError, match="RouteFollowingExpert: cruise_speed must be > 0"):
        RouteFollowingExpert(make_env(), cruise_speed=0.0)
