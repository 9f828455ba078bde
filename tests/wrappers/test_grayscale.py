"""GrayscaleObservation: BT.601 luma of every frame, with or without the channel axis."""

import numpy as np
import pytest
from shareverse_env.wrappers import GrayscaleObservation


def test_luma_values_and_spaces(make_env, drive):
    raw = make_env()
    env = GrayscaleObservation(raw)
    raw_obs, _ = raw.reset(seed=0)
    obs, infos = env.reset(seed=0)
    rgb = raw_obs["agent_0"].astype(float)
    luma = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    assert obs["agent_0"].shape == (32, 32, 1)
    assert np.abs(obs["agent_0"][..., 0].astype(float) - luma).max() <= 0.5 + 1e-3
    space = env.observation_space("agent_0")
    assert all(space.contains(o) for o in obs.values())
    obs, _, _, _, infos = env.step(drive(env))
    assert infos["agent_0"]["frames"].shape == (28, 32, 32, 1)
    assert all(space.contains(o) for o in obs.values())


def test_drop_channel_axis(make_env):
    env = GrayscaleObservation(make_env(), keep_dim=False)
    obs, _ = env.reset(seed=0)
    assert obs["agent_1"].shape == (32, 32)
    assert env.observation_space("agent_1").contains(obs["agent_1"])


@pytest.mark.parametrize("keep_dim", [True, False])
def test_rejects_grayscale_input(make_env, keep_dim):
    once = GrayscaleObservation(make_env(), keep_dim=keep_dim)
    with pytest.raises(ValueError, match=r"GrayscaleObservation: .* with C in \(3,\)"):
        GrayscaleObservation(once)
