"""ShareVerseVectorEnv: batched worlds equal separate envs; layout, autoreset, early-done agents."""

import numpy as np
import pytest
import torch
from shareverse_env.models.pipeline import ShareVersePipeline

import shareverse_env
from shareverse_env.backends import WorldBackend
from shareverse_env.core.geometry import NEW_FRAMES_PER_CHUNK
from shareverse_env.envs.vector import ShareVerseVectorEnv

COMMON = {
    "num_agents": 2,
    "scenario": "following",
    "weather": "clear_noon",
    "town_seed": 0,
    # Goals lie > 100 m ahead: with 2–3 chunks nobody arrives, so episodes end together.
    "terminate_on_collision": False,
}
WORLD = {**COMMON, "backend": "world", "view_hw": (32, 48), "max_cycles": 3}
FRAME = (64, 96, 3)  # 32×48 views tiled 2×2 (the world kwargs above and the tiny model)
ACTIONS = np.array(
    [[[8.0, 0.0, 0.0], [6.0, 0.5, 0.1]], [[4.0, -0.5, -0.1], [10.0, 0.0, 0.05]]], np.float32
)  # (B=2, N=2, 3)


@pytest.fixture(scope="module")
def coupled_tiny():
    """The tiny model with raymaps and cross-agent attention switched on (they start at zero),
    so that mixing the worlds of a batch would change the frames."""
    pipe = ShareVersePipeline.from_config_name("tiny", seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in pipe.transformer.raymap_encoder.outputs:
            layer.weight.normal_(std=0.02, generator=generator)
        for block in pipe.transformer.cross_agent_blocks:
            block.proj.weight.normal_(std=0.05, generator=generator)
    return pipe


def test_batched_worlds_equal_separate_envs(coupled_tiny, monkeypatch):
    kwargs = {**COMMON, "backend": "shareverse", "model": coupled_tiny, "max_cycles": 3}
    calls = []
    original = coupled_tiny.generate_batch

    def counting(requests, **kw):
        calls.append([len(r.images) for r in requests])
        return original(requests, **kw)

    monkeypatch.setattr(coupled_tiny, "generate_batch", counting)
    envs = ShareVerseVectorEnv(2, **kwargs)
    assert envs.envs[0].backend.pipeline is envs.envs[1].backend.pipeline
    seeds = [3, 7]
    envs.reset(seed=seeds)
    batched = [envs.step(ACTIONS)[4] for _ in range(2)]
    assert calls == [[2, 2], [2, 2]]  # ONE pipeline call per step, both worlds in it

    for i, seed in enumerate(seeds):
        env = shareverse_env.parallel_env(**kwargs)
        env.reset(seed=seed)
        for step in range(2):
            infos = env.step({a: ACTIONS[i, k] for k, a in enumerate(env.possible_agents)})[4]
            for agent in env.possible_agents:
                mine, theirs = batched[step][i][agent]["frames"], infos[agent]["frames"]
                assert mine.shape == theirs.shape == (NEW_FRAMES_PER_CHUNK, *FRAME)
                # Equal up to float rounding (batch size changes the summation order in
                # matmul and conv kernels): at most a few pixel values one or two levels off.
                diff = np.abs(mine.astype(int) - theirs.astype(int))
                assert diff.max() <= 2 and (diff > 0).mean() < 1e-3, (i, step, agent)
        assert len(env.backend.memory) == len(envs.envs[i].backend.memory)


@pytest.fixture(scope="module")
def world_envs():
    return ShareVerseVectorEnv(2, **WORLD)


def test_layout_spaces_and_seeds(world_envs):
    envs = world_envs
    obs, infos = envs.reset(seed=5)
    assert envs.num_envs == 2 and envs.possible_agents == ["agent_0", "agent_1"]
    assert len(infos) == 2 and set(infos[1]) == {"agent_0", "agent_1"}
    for agent in envs.possible_agents:
        assert obs[agent].shape == (2, *FRAME) and obs[agent].dtype == np.uint8
        assert envs.observation_space(agent).contains(obs[agent])
        assert envs.single_observation_space(agent).shape == FRAME
        assert envs.action_space(agent).shape == (2, 3)
    assert envs.active.all()
    again, _ = envs.reset(seed=[5, 6])  # an int seeds env i with seed + i
    assert all(np.array_equal(obs[a], again[a]) for a in obs)

    actions = {a: ACTIONS[:, k] for k, a in enumerate(envs.possible_agents)}
    obs, rewards, terms, truncs, infos = envs.step(actions)
    for agent in envs.possible_agents:
        assert obs[agent].shape == (2, *FRAME)
        assert rewards[agent].shape == (2,) and rewards[agent].dtype == np.float32
        assert terms[agent].dtype == truncs[agent].dtype == np.bool_
        assert not (terms[agent] | truncs[agent]).any()
        for i in range(2):
            assert infos[i][agent]["frames"].shape == (NEW_FRAMES_PER_CHUNK, *FRAME)
            assert np.array_equal(infos[i][agent]["frames"][-1], obs[agent][i])


def test_autoreset_on_the_next_step():
    envs = ShareVerseVectorEnv(2, **{**WORLD, "max_cycles": 1})
    envs.reset(seed=[11, 12])
    truncs = envs.step(ACTIONS)[3]
    assert all(truncs[a].all() for a in envs.possible_agents)
    assert not envs.active.any()  # nobody acts: the next step resets both envs

    ignored = np.full_like(ACTIONS, np.nan)  # actions of resetting envs are not read
    obs, rewards, terms, truncs, infos = envs.step(ignored)
    assert envs.active.all()
    for agent in envs.possible_agents:
        assert not (terms[agent] | truncs[agent]).any()
        assert (rewards[agent] == 0).all()
        assert infos[0][agent]["frames"].shape == (1, *FRAME)  # reset infos
    # The autoreset continues each env's own seed stream, as a lone env's reset() does.
    env = shareverse_env.parallel_env(**{**WORLD, "max_cycles": 1})
    env.reset(seed=11)
    env.step({a: ACTIONS[0, k] for k, a in enumerate(env.possible_agents)})
    expected, _ = env.reset()
    assert all(np.array_equal(obs[a][0], expected[a]) for a in env.possible_agents)


def test_an_agent_done_early_stays_inactive():
    envs = ShareVerseVectorEnv(2, **{**WORLD, "terminate_on_collision": True})
    envs.reset(seed=0)
    state = envs.envs[0].state()
    start = [state[0, 0], state[0, 1], np.arctan2(state[0, 3], state[0, 2])]
    off_road = np.array([start, [500.0, 500.0, 0.0]])  # agent_1 starts outside the town
    envs.reset(seed=0, options=[{"start_poses": off_road}, None])
    obs, _, terms, _, _ = envs.step(ACTIONS)
    assert terms["agent_1"].tolist() == [True, False]
    assert envs.active.tolist() == [[True, False], [True, True]]

    # env 0's agent_1 is done: its action row is ignored from now on.
    obs2, rewards2, terms2, _, infos2 = envs.step(
        {a: ACTIONS[:, k] for k, a in enumerate(envs.possible_agents)}
    )
    assert np.array_equal(obs2["agent_1"][0], obs["agent_1"][0])  # frozen last view
    assert rewards2["agent_1"][0] == 0 and not terms2["agent_1"][0]
    assert "agent_1" not in infos2[0] and "agent_1" in infos2[1]


def test_errors_leave_every_env_unchanged(world_envs):
    envs = world_envs
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        envs.step(np.zeros((3, 2, 3)))
    bad = ACTIONS.copy()
    bad[1, 0, 0] = 99.0  # out of bounds in env 1
    with pytest.raises(ValueError, match="env 1: action of agent_0 out of bounds"):
        envs.step(bad)
    assert [env._cycles for env in envs.envs] == [0, 0]
    with pytest.raises(KeyError, match="missing"):
        envs.step({"agent_0": ACTIONS[:, 0]})
    with pytest.raises(ValueError, match="num_envs"):
        ShareVerseVectorEnv(0, **WORLD)
    with pytest.raises(ValueError, match="backend must be a name"):
        ShareVerseVectorEnv(2, **{**WORLD, "backend": WorldBackend((32, 48))})
    with pytest.raises(RuntimeError, match="reset"):
        ShareVerseVectorEnv(1, **WORLD).step(ACTIONS[:1])
