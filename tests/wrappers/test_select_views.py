"""SelectViews: the chosen views cut out of the 2×2 tile, side by side, in observation and infos."""

import numpy as np
import pytest
from shareverse_env.wrappers import DictObservation, GrayscaleObservation, SelectViews

from shareverse_env.core.geometry import VIEW_NAMES
from shareverse_env.core.tiling import untile_views


def test_views_match_the_tiles(make_env, drive):
    raw = make_env()
    env = SelectViews(raw, views=("right", "front"))
    raw_obs, _ = raw.reset(seed=0)
    raw_step = raw.step(drive(raw))
    obs, infos = env.reset(seed=0)  # the same episode again, through the wrapper
    views = untile_views(raw_obs["agent_0"])
    expected = np.concatenate([views[VIEW_NAMES.index("right")], views[0]], axis=1)
    assert np.array_equal(obs["agent_0"], expected)
    space = env.observation_space("agent_0")
    assert space.shape == (16, 32, 3)
    assert all(space.contains(o) for o in obs.values())

    obs, _, _, _, infos = env.step(drive(env))
    frames = infos["agent_1"]["frames"]
    assert frames.shape == (28, 16, 32, 3)
    assert np.array_equal(frames[-1], obs["agent_1"])
    raw_views = untile_views(raw_step[4]["agent_1"]["frames"])
    assert np.array_equal(frames[:, :, 16:], raw_views[:, 0])
    assert all(space.contains(o) for o in obs.values())


def test_single_view_by_name(make_env):
    env = SelectViews(make_env(), "rear")
    obs, _ = env.reset(seed=1)
    assert obs["agent_0"].shape == (16, 16, 3)
    assert env.views == ("rear",)


@pytest.mark.parametrize("views", [(), ("front", "front"), ("top",), ["Front"]])
def test_bad_view_names(make_env, views):
    with pytest.raises(ValueError, match=r"SelectViews: views must be distinct names"):
        SelectViews(make_env(), views)


@pytest.mark.parametrize(
    "inner",
    [lambda env: GrayscaleObservation(env), lambda env: DictObservation(env)],
    ids=["grayscale", "dict"],
)
def test_rejects_non_rgb_tiles(make_env, inner):
    with pytest.raises(ValueError, match=r"SelectViews: observation_space\('agent_0'\) must be"):
        SelectViews(inner(make_env()))
