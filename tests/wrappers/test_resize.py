"""ResizeObservation: exact antialiased resampling of observations and infos frames."""

import numpy as np
import pytest
from shareverse_env.wrappers import DictObservation, GrayscaleObservation, ResizeObservation
from shareverse_env.wrappers.resize import resample_matrix


def test_shapes_and_spaces(make_env, drive):
    env = ResizeObservation(make_env(), (24, 40))
    obs, infos = env.reset(seed=0)
    space = env.observation_space("agent_0")
    assert space.shape == (24, 40, 3) and space.dtype == np.uint8
    assert all(space.contains(o) for o in obs.values())
    assert infos["agent_0"]["frames"].shape == (1, 24, 40, 3)
    obs, _, _, _, infos = env.step(drive(env))
    assert all(space.contains(o) for o in obs.values())
    assert np.array_equal(infos["agent_0"]["frames"][-1], obs["agent_0"])


def test_halving_averages_and_constants_stay(make_env):
    raw = make_env()
    env = ResizeObservation(raw, (16, 16))
    raw_obs, _ = raw.reset(seed=0)
    obs, _ = env.reset(seed=0)
    # Shrinking by 2 with the widened triangle is a smooth local mean: close to 2×2 box means.
    box = raw_obs["agent_0"].astype(float).reshape(16, 2, 16, 2, 3).mean(axis=(1, 3))
    assert np.abs(obs["agent_0"].astype(float) - box).mean() < 12.0
    assert np.allclose(resample_matrix(32, 16).sum(axis=1), 1.0)
    flat = np.full((5, 32, 32, 3), 77, np.uint8)
    assert np.all(env.transform(flat, "agent_0") == 77)


def test_two_dimensional_frames(make_env):
    env = ResizeObservation(GrayscaleObservation(make_env(), keep_dim=False), (8, 12))
    obs, infos = env.reset(seed=0)
    assert obs["agent_0"].shape == (8, 12)
    assert infos["agent_0"]["frames"].shape == (1, 8, 12)
    assert env.observation_space("agent_0").contains(obs["agent_0"])


@pytest.mark.parametrize("shape", [(0, 4), (4,), (4.0, 8), "64x96", (True, 3)])
def test_bad_shape(make_env, shape):
    with pytest.raises(ValueError, match=r"ResizeObservation: shape must be \(height, width\)"):
        ResizeObservation(make_env(), shape)


def test_rejects_non_image(make_env):
    with pytest.raises(ValueError, match=r"ResizeObservation: observation_space\('agent_0'\)"):
        ResizeObservation(DictObservation(make_env()), (8, 8))
