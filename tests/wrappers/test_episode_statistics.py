"""RecordEpisodeStatistics: per-agent return, length and time at each agent's last step."""

import pytest
from pettingzoo.test import parallel_api_test
from shareverse_env.wrappers import RecordEpisodeStatistics


def test_statistics_at_each_agents_last_step(make_env, drive):
    env = RecordEpisodeStatistics(make_env(max_cycles=2), buffer_length=2)
    returns, lengths, last = {}, {}, {}
    for seed in range(3):
        env.reset(seed=seed)
        returns = dict.fromkeys(env.agents, 0.0)
        lengths = dict.fromkeys(env.agents, 0)
        while env.agents:
            _, rewards, terms, truncs, infos = env.step(drive(env))
            for agent, reward in rewards.items():
                returns[agent] += reward
                lengths[agent] += 1
                done = terms[agent] or truncs[agent]
                assert ("episode" in infos[agent]) == done
                if done:
                    last[agent] = infos[agent]["episode"]
        for agent in returns:
            assert last[agent]["r"] == pytest.approx(returns[agent])
            assert last[agent]["l"] == lengths[agent]
            assert last[agent]["t"] >= 0.0
    assert env.episode_count == 3
    assert len(env.return_queue) == 2  # buffer_length
    assert env.return_queue[-1] == pytest.approx(returns)
    assert env.length_queue[-1] == lengths


def test_cut_short_episodes_are_not_recorded(make_env, drive):
    env = RecordEpisodeStatistics(make_env(max_cycles=3))
    env.reset(seed=0)
    env.step(drive(env))
    env.reset(seed=1)
    assert len(env.return_queue) == 0


def test_parallel_api(make_env):
    parallel_api_test(RecordEpisodeStatistics(make_env(max_cycles=2)), num_cycles=3)


def test_bad_buffer_length(make_env):
    with pytest.raises(ValueError, match="RecordEpisodeStatistics: buffer_length"):
        RecordEpisodeStatistics(make_env(), buffer_length=0)
