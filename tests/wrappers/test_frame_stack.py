"""StackChunkFrames: the chunk's last k frames, padded after reset, in the frames' own form."""

import numpy as np
import pytest
from shareverse_env.wrappers import DictObservation, GrayscaleObservation, StackChunkFrames


def test_last_k_frames_of_the_chunk(make_env, drive):
    env = StackChunkFrames(make_env(), k=5)
    obs, infos = env.reset(seed=0)
    space = env.observation_space("agent_0")
    assert space.shape == (5, 32, 32, 3)
    # After reset: the single initial frame, five times.
    assert np.array_equal(obs["agent_0"], np.repeat(infos["agent_0"]["frames"], 5, axis=0))
    assert all(space.contains(o) for o in obs.values())
    obs, _, _, _, infos = env.step(drive(env))
    assert np.array_equal(obs["agent_0"], infos["agent_0"]["frames"][-5:])
    assert all(space.contains(o) for o in obs.values())
    # The car drove 8 m within the chunk: the stacked frames differ.
    assert not np.array_equal(obs["agent_0"][0], obs["agent_0"][-1])


def test_stacks_transformed_frames(make_env, drive):
    env = StackChunkFrames(GrayscaleObservation(make_env(), keep_dim=False), k=28)
    env.reset(seed=1)
    obs, *_ = env.step(drive(env))
    assert obs["agent_1"].shape == (28, 32, 32)
    assert env.observation_space("agent_1").contains(obs["agent_1"])


@pytest.mark.parametrize("k", [0, 29, -1, 2.0, True, None])
def test_k_out_of_range(make_env, k):
    with pytest.raises(ValueError, match=r"StackChunkFrames: k must be an integer in \[1, 28\]"):
        StackChunkFrames(make_env(), k)


def test_rejects_dict_space(make_env):
    with pytest.raises(ValueError, match=r"StackChunkFrames: observation_space\('agent_0'\)"):
        StackChunkFrames(DictObservation(make_env()), 2)


def test_refuses_an_env_that_keeps_only_the_last_frame(make_env):
    with pytest.raises(ValueError, match="chunk_frames='last'"):
        StackChunkFrames(make_env(chunk_frames="last"), 4)
    StackChunkFrames(make_env(chunk_frames="last"), 1)  # one frame: nothing is missing
