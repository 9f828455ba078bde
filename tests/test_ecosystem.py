"""SuperSuit on the ShareVerse env (world backend): observation wrappers and vector envs.

Recipes and caveats are in docs/ecosystem.md. ``pettingzoo_env_to_vec_env_v1`` needs every agent
to stay until the episode ends; the env's goals lie over 100 m ahead of the starts, so with
``terminate_on_collision=False`` and a 3-chunk episode all agents end together (truncation).
"""

import numpy as np
import pytest

import shareverse_env

ss = pytest.importorskip("supersuit")
from supersuit.multiagent_wrappers.black_death import black_death_par  # noqa: E402

KWARGS = {
    "backend": "world",
    "view_hw": (32, 48),  # 64×96 tiled frames: small and fast
    "scenario": "following",
    "weather": "clear_noon",
    "town_seed": 0,
    "max_cycles": 3,
}


def make_env(**overrides):
    return shareverse_env.parallel_env(**{**KWARGS, **overrides})


def small_frames(env):
    """Gray 32×48 frames: SuperSuit's colour reduction, then resize (x_size is the width)."""
    return ss.resize_v1(ss.color_reduction_v0(env, "full"), x_size=48, y_size=32)


def random_actions(env, rng):
    return {
        a: rng.uniform(env.action_space(a).low, env.action_space(a).high).astype(np.float32)
        for a in env.agents
    }


def test_color_reduction_resize_frame_stack():
    env = ss.frame_stack_v1(small_frames(make_env()), 3)
    plain = small_frames(make_env())  # the same frames, unstacked
    for agent in env.possible_agents:
        space = env.observation_space(agent)
        assert space.shape == (32, 48, 3) and space.dtype == np.uint8
    obs, infos = env.reset(seed=0)
    ref, _ = plain.reset(seed=0)
    for agent in env.possible_agents:
        assert env.observation_space(agent).contains(obs[agent])
        assert np.array_equal(obs[agent][..., -1], ref[agent])  # newest frame last
        assert not obs[agent][..., :-1].any()  # older slots start empty
    rng = np.random.default_rng(0)
    previous = ref
    steps = 0
    while env.agents:
        actions = random_actions(env, rng)
        obs, rewards, terms, truncs, infos = env.step(actions)
        ref, *_ = plain.step(actions)
        steps += 1
        assert set(obs) == set(rewards) == set(terms) == set(truncs) == set(infos)
        for agent in obs:
            assert env.observation_space(agent).contains(obs[agent])
            assert np.array_equal(obs[agent][..., -1], ref[agent])
            assert np.array_equal(obs[agent][..., -2], previous[agent])
            assert isinstance(rewards[agent], float)
        previous = ref
    assert 1 <= steps <= KWARGS["max_cycles"]  # random driving may crash early: agents leave


def test_pettingzoo_env_to_vec_env():
    env = small_frames(make_env(terminate_on_collision=False))
    venv = ss.pettingzoo_env_to_vec_env_v1(env)
    assert venv.num_envs == 2  # one row per agent
    assert venv.observation_space.shape == (32, 48)
    obs, infos = venv.reset(seed=0)
    assert obs.shape == (2, 32, 48) and obs.dtype == np.uint8
    assert isinstance(infos, list) and len(infos) == 2
    venv.action_space.seed(0)
    for step in range(1, KWARGS["max_cycles"] + 1):
        actions = np.stack([venv.action_space.sample() for _ in range(venv.num_envs)])
        obs, rewards, terms, truncs, infos = venv.step(actions)
        assert obs.shape == (2, 32, 48) and rewards.shape == (2,) and rewards.dtype == np.float32
        assert all(venv.observation_space.contains(o) for o in obs)
        assert not terms.any()
        assert truncs.all() == (step == KWARGS["max_cycles"])
    # The episode ended: the terminal observation is in the infos, obs is the next reset's.
    assert all(info["terminal_observation"].shape == (32, 48) for info in infos)


def test_concat_vec_envs_in_process():
    env = ss.frame_stack_v1(small_frames(make_env(terminate_on_collision=False)), 2)
    venv = ss.concat_vec_envs_v1(
        ss.pettingzoo_env_to_vec_env_v1(env), 2, num_cpus=0, base_class="gymnasium"
    )
    assert venv.num_envs == 4  # 2 copies × 2 agents
    obs, infos = venv.reset(seed=0)
    assert obs.shape == (4, 32, 48, 2) and obs.dtype == np.uint8 and len(infos) == 4
    venv.action_space.seed(1)
    dones = 0
    for _ in range(KWARGS["max_cycles"] + 1):  # crosses an episode boundary: autoreset
        actions = np.stack([venv.action_space.sample() for _ in range(venv.num_envs)])
        obs, rewards, terms, truncs, infos = venv.step(actions)
        assert obs.shape == (4, 32, 48, 2) and rewards.shape == (4,)
        assert terms.shape == truncs.shape == (4,) and len(infos) == 4
        dones += int((terms | truncs).sum())
    assert dones == 4  # every agent of both copies finished one episode
    venv.close()


class BlackDeath(black_death_par):
    """SuperSuit 3.11's ``black_death_v3`` ends an episode only when every agent is terminated
    AND truncated in the same step, so an episode that ends by truncation never ends (fixed
    upstream, SuperSuit PR #265, unreleased). This ends it once the wrapped env has no agent."""

    def step(self, actions):
        obs, rewards, terms, truncs, infos = super().step(actions)
        if not self.env.agents and self.agents:
            terms = dict.fromkeys(self.agents, True)
            truncs = dict.fromkeys(self.agents, True)
            self.agents.clear()
        return obs, rewards, terms, truncs, infos


def test_agents_leaving_early_need_black_death():
    """Agent 1 starts off the road: it terminates at once, agent 0 drives on."""
    probe = make_env()
    probe.reset(seed=0)
    x, y, cos, sin = probe.state()[0, :4]
    options = {"start_poses": np.array([[x, y, np.arctan2(sin, cos)], [500.0, 500.0, 0.0]])}

    venv = ss.pettingzoo_env_to_vec_env_v1(small_frames(make_env()))
    venv.reset(seed=0, options=options)
    with pytest.raises(AssertionError, match="black_death"):
        venv.step(np.zeros((2, 3), np.float32))

    venv = ss.pettingzoo_env_to_vec_env_v1(BlackDeath(small_frames(make_env())))
    venv.reset(seed=0, options=options)
    obs, rewards, terms, truncs, infos = venv.step(np.zeros((2, 3), np.float32))
    assert infos[1]["collision"] == "off_road"
    assert not terms.any()  # black death reports ends only when the whole episode ends
    obs, rewards, terms, truncs, infos = venv.step(np.zeros((2, 3), np.float32))
    assert obs[0].any() and not obs[1].any() and rewards[1] == 0  # dead: black frame, no reward
    obs, rewards, terms, truncs, infos = venv.step(np.zeros((2, 3), np.float32))
    assert truncs.all()  # max_cycles: the episode ends, the vec env resets it
    assert "terminal_observation" in infos[0]
    obs, *_ = venv.step(np.zeros((2, 3), np.float32))  # the new episode runs
    assert obs.shape == (2, 32, 48)
