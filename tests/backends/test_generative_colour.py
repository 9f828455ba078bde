"""Colour anchoring: on by default, the generated views keep the first frames' palette, the
option is checked, and off it changes nothing."""

import numpy as np
import pytest

import shareverse_env
from shareverse_env.backends.generative import backend as backend_module
from shareverse_env.backends.generative.colour import anchor_colour, view_channel_means
from shareverse_env.backends.generative.config import BackendOptionTypeError, GenerativeConfig

DRIVE = np.array([8.0, 0.0, 0.0], dtype=np.float32)


def _run(options):
    env = shareverse_env.parallel_env(
        backend="shareverse",
        model="tiny",
        max_cycles=2,
        terminate_on_collision=False,
        backend_options={"scene_cache": False, **options},
    )
    _, infos = env.reset(seed=4)
    first = np.stack([infos[a]["frames"][-1] for a in env.agents])
    _, _, _, _, infos = env.step({a: DRIVE.copy() for a in env.agents})
    return first, np.stack([infos[a]["frames"] for a in env.possible_agents])


def test_full_strength_is_the_default_and_gives_every_view_the_first_frames_means():
    assert GenerativeConfig().sampler.colour_anchor == 1.0
    first, frames = _run({})
    _, free = _run({"colour_anchor": 0.0})
    want = view_channel_means(first)[:, None]
    got, drifted = view_channel_means(frames), view_channel_means(free)
    assert np.abs(got - want).max() < 1.5  # rounding and clipping to uint8 only
    assert np.abs(drifted - want).max() > 3  # the tiny random model's own palette differs


def test_off_changes_nothing_and_half_strength_goes_half_way(monkeypatch):
    _, zero = _run({"colour_anchor": 0.0})

    def refuse(*args):
        raise AssertionError("colour_anchor 0 must not touch the frames")

    monkeypatch.setattr(backend_module, "anchor_colour", refuse)
    _, again = _run({"colour_anchor": 0.0})  # off: the anchoring is never called
    np.testing.assert_array_equal(zero, again)
    with pytest.raises(AssertionError, match="must not touch"):
        _run({})  # the default calls it
    monkeypatch.undo()
    ref = np.full((1, 4, 3), 100.0, np.float32)
    frames = np.full((1, 1, 8, 12, 3), 160, np.uint8)
    frames[..., :4, :6, 0] = 200  # one view's red differs: only that view moves differently
    out = view_channel_means(anchor_colour(frames, ref, 0.5))
    before = view_channel_means(frames)
    np.testing.assert_allclose(out, before + 0.5 * (ref[:, None] - before), atol=0.51)


def test_the_option_is_checked():
    with pytest.raises(ValueError, match="colour_anchor must be in"):
        GenerativeConfig.from_options({"colour_anchor": 1.5})
    with pytest.raises(BackendOptionTypeError, match="colour_anchor"):
        GenerativeConfig.from_options({"colour_anchor": "strong"})
    with pytest.raises(BackendOptionTypeError):
        GenerativeConfig.from_options({"colour_anchor": True})
    assert GenerativeConfig.from_options({"colour_anchor": 1}).sampler.colour_anchor == 1.0
