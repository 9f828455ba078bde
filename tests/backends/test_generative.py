"""The env on the generative backend (tiny random model): shapes, memory, determinism, options."""

import doctest
import importlib

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test
from shareverse_env.wrappers import RecordVideo

import shareverse_env
from shareverse_env.backends.generative import ShareVerseBackend
from shareverse_env.core.geometry import NEW_FRAMES_PER_CHUNK, plan_chunk

DRIVE = np.array([8.0, 0.0, 0.0], dtype=np.float32)
FRAME = (64, 96, 3)  # tiny model: 32×48 views tiled 2×2


def make(**kwargs):
    kwargs.setdefault("max_cycles", 2)
    kwargs.setdefault("terminate_on_collision", False)
    return shareverse_env.parallel_env(backend="shareverse", model="tiny", **kwargs)


def drive(env):
    return {a: DRIVE.copy() for a in env.agents}


def test_shapes_and_memory_growth():
    env = make()
    assert isinstance(env.backend, ShareVerseBackend)
    assert env.observation_space("agent_0").shape == FRAME
    obs, infos = env.reset(seed=0)
    assert obs["agent_0"].shape == FRAME and obs["agent_0"].dtype == np.uint8
    assert len(env.backend.memory) == 2
    obs, _, _, _, infos = env.step(drive(env))
    for agent in env.possible_agents:
        assert infos[agent]["frames"].shape == (NEW_FRAMES_PER_CHUNK, *FRAME)
        assert infos[agent]["poses"].shape == (NEW_FRAMES_PER_CHUNK, 3)
        assert np.array_equal(obs[agent], infos[agent]["frames"][-1])
        assert env.observation_space(agent).contains(obs[agent])
        assert infos[agent]["frames"].std() > 0  # generated, not a blank placeholder
    assert len(env.backend.memory) == 2 + 2 * NEW_FRAMES_PER_CHUNK
    phases = {"encode", "memory", "denoise", "decode", "archive", "scene_cache"}
    assert set(env.backend.last_timings) == phases


def test_memory_is_bounded_by_default():
    from shareverse_env.backends.generative import DEFAULT_MEMORY_CAPACITY

    assert make().backend.memory.capacity == DEFAULT_MEMORY_CAPACITY
    env = make(max_cycles=3, backend_options={"memory_capacity": 60})
    env.reset(seed=0)
    sizes = []
    for _ in range(3):
        _, _, _, _, infos = env.step(drive(env))
        sizes.append(len(env.backend.memory))
        assert infos["agent_0"]["frames"].std() > 0
    assert sizes == [58, 60, 60]  # 2 first frames + 56 per chunk, then held at the bound


def rollout(seed, steps=2):
    env = make()
    obs, _ = env.reset(seed=seed)
    out = [np.stack([obs[a] for a in env.possible_agents])]
    for _ in range(steps):
        obs, *_ = env.step(drive(env))
        out.append(np.stack([obs[a] for a in env.possible_agents]))
    return np.stack(out)


def test_same_seed_same_episode_other_seed_differs():
    a, b = rollout(0), rollout(0)
    assert np.array_equal(a, b)
    c = rollout(1)
    assert not np.array_equal(a[1:], c[1:])


def test_reset_with_given_images():
    env = make()
    images = np.random.default_rng(0).integers(0, 256, (2, *FRAME), dtype=np.uint8)
    obs, infos = env.reset(seed=0, options={"images": images})
    assert np.array_equal(obs["agent_0"], images[0])
    assert np.array_equal(obs["agent_1"], images[1])
    assert np.array_equal(infos["agent_1"]["frames"][0], images[1])
    obs, *_ = env.step(drive(env))
    assert obs["agent_0"].shape == FRAME
    with pytest.raises(ValueError, match=r"options\['images'\]"):
        env.reset(seed=0, options={"images": images[:1]})
    with pytest.raises(ValueError, match=r"options\['images'\]"):
        env.reset(seed=0, options={"images": images.astype(np.float32)})


def test_given_images_condition_generation():
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (2, *FRAME), dtype=np.uint8)
    second = 255 - first
    runs = []
    for images in (first, second):
        env = make(backend_options={"memory_source": "none"})
        env.reset(seed=0, options={"images": images})
        obs, *_ = env.step(drive(env))
        runs.append(obs["agent_0"])
    assert not np.array_equal(runs[0], runs[1])


def test_condition_on_replaces_the_conditioning_frames_and_nothing_else():
    backend = ShareVerseBackend(model="tiny", memory_source="none")
    with pytest.raises(RuntimeError, match="reset"):
        backend.condition_on(np.zeros((1, *FRAME), np.uint8))
    rng = np.random.default_rng(0)
    start = np.zeros((1, 3))
    plan = plan_chunk(start, DRIVE[None].astype(np.float64))
    given = rng.integers(0, 256, (1, *FRAME), dtype=np.uint8)
    outputs = []
    for condition in (False, True):
        backend.reset(None, "clear_noon", start, {"images": given, "noise_seed": 0})
        archived = len(backend.memory)
        if condition:
            other = 255 - given
            backend.condition_on(other)
            other[:] = 0  # the backend keeps its own copy
            assert np.array_equal(backend.conditioning_frames, 255 - given)
            assert len(backend.memory) == archived  # the archive is untouched
        outputs.append(backend.generate(plan, np.array([True])))
        assert np.array_equal(backend.conditioning_frames, outputs[-1][:, -1])
    assert not np.array_equal(outputs[0], outputs[1])
    before = backend.conditioning_frames
    for bad in (given.astype(np.float32), np.zeros((2, *FRAME), np.uint8), given[:, :10]):
        with pytest.raises(ValueError, match=r"conditioning frames must be uint8 \(1, 64, 96, 3\)"):
            backend.condition_on(bad)
    assert np.array_equal(backend.conditioning_frames, before)


def test_view_hw_mismatch_rejected():
    with pytest.raises(ValueError, match="view_hw"):
        make(view_hw=(64, 96))
    env = make(view_hw=(32, 48))  # the model's own size is fine
    assert env.observation_space("agent_0").shape == FRAME


def test_model_needs_shareverse_backend():
    with pytest.raises(ValueError, match="model="):
        shareverse_env.parallel_env(backend="world", model="tiny")


@pytest.mark.parametrize("source", ["own", "others", "none"])
def test_memory_sources_run(source):
    env = make(backend_options={"memory_source": source})
    env.reset(seed=0)
    obs, *_ = env.step(drive(env))
    assert obs["agent_0"].shape == FRAME
    assert env.backend.memory_source == source
    # Archiving does not depend on where memory is read from.
    assert len(env.backend.memory) == 2 + 2 * NEW_FRAMES_PER_CHUNK


def test_memory_source_changes_generation():
    firsts = []
    for source in ("all", "none"):
        env = make(backend_options={"memory_source": source})
        env.reset(seed=0)
        obs, *_ = env.step(drive(env))
        firsts.append(obs["agent_0"])
    assert not np.array_equal(firsts[0], firsts[1])


def test_invalid_memory_source():
    with pytest.raises(ValueError, match="memory_source"):
        make(backend_options={"memory_source": "everyone"})


def test_archive_stride():
    env = make(backend_options={"archive_stride": 7})
    env.reset(seed=0)
    env.step(drive(env))
    # Frames 7, 14, 21 and 28 of the chunk, for each of the two agents.
    assert len(env.backend.memory) == 2 + 2 * 4
    with pytest.raises(ValueError, match="archive_stride"):
        make(backend_options={"archive_stride": 0})


def test_single_agent_others_finds_nothing_and_still_generates():
    env = make(num_agents=1, backend_options={"memory_source": "others"})
    env.reset(seed=0)
    agents = np.array([0])
    poses = plan_chunk(env._poses[agents], DRIVE[None].astype(np.float64))
    assert env.backend._retrieve_memory(env.backend._start_chunk(poses, np.ones(1, bool))) is None
    obs, _, _, _, infos = env.step(drive(env))
    assert infos["agent_0"]["frames"].shape == (NEW_FRAMES_PER_CHUNK, *FRAME)
    assert len(env.backend.memory) == 1 + NEW_FRAMES_PER_CHUNK
    # Without memory, a second env with "none" generates the very same frames.
    same = make(num_agents=1, backend_options={"memory_source": "none"})
    same.reset(seed=0)
    obs_none, *_ = same.step(drive(same))
    assert np.array_equal(obs["agent_0"], obs_none["agent_0"])


def test_inactive_agent_gets_zeros_and_is_not_archived():
    backend = ShareVerseBackend(model="tiny")
    images = np.random.default_rng(0).integers(0, 256, (2, *FRAME), dtype=np.uint8)
    starts = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    backend.reset(None, "clear_noon", starts, {"images": images, "noise_seed": 0})
    assert len(backend.memory) == 2
    poses = plan_chunk(starts, DRIVE.astype(np.float64))
    frames = backend.generate(poses, np.array([True, False]))
    assert frames.shape == (2, NEW_FRAMES_PER_CHUNK, *FRAME)
    assert not frames[1].any()
    assert frames[0].any()
    assert len(backend.memory) == 2 + NEW_FRAMES_PER_CHUNK
    # Agent 1's next conditioning frame is still its last real one.
    assert np.array_equal(backend.conditioning_frames[1], images[1])
    assert np.array_equal(backend.conditioning_frames[0], frames[0, -1])
    # No agent active: nothing generated, nothing archived.
    nothing = backend.generate(poses, np.array([False, False]))
    assert not nothing.any()
    assert len(backend.memory) == 2 + NEW_FRAMES_PER_CHUNK


def test_backend_generate_before_reset_and_bad_poses():
    backend = ShareVerseBackend(model="tiny")
    poses = plan_chunk(np.zeros((1, 3)), DRIVE.astype(np.float64))
    with pytest.raises(RuntimeError, match="reset"):
        backend.generate(poses, np.array([True]))
    backend.reset(None, "clear_noon", np.zeros((1, 3)), {"images": np.zeros((1, *FRAME), np.uint8)})
    with pytest.raises(ValueError, match="poses"):
        backend.generate(poses[:, :10], np.array([True]))


def test_the_env_hands_the_backend_its_first_frames_with_exact_depth():
    from shareverse_env.backends import FirstFrames, WorldBackend

    env = make(num_agents=2)
    obs, infos = env.reset(seed=4)
    start = env.backend.start_frames
    poses = np.stack([infos[a]["poses"][0] for a in env.possible_agents])
    truth = WorldBackend(env.backend.view_hw).first_frames(env.town, env.weather, poses)
    for name in ("rgb", "depth", "sky"):
        np.testing.assert_array_equal(getattr(start, name), getattr(truth, name))
    assert np.isfinite(start.depth[~start.sky]).all()
    np.testing.assert_array_equal(obs["agent_1"], truth.rgb[1])
    # User images: used as given, their depth unknown.
    images = np.full((2, *FRAME), 40, np.uint8)
    obs, _ = env.reset(seed=4, options={"images": images})
    assert (obs["agent_0"] == 40).all() and env.backend.start_frames.depth is None
    # On its own the backend renders nothing: it needs first frames or images.
    backend = ShareVerseBackend(model=env.backend.pipeline)
    with pytest.raises(ValueError, match="needs the episode's first frames"):
        backend.reset(env.town, "clear_noon", np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"first_frames.rgb must be uint8 \(2, 64, 96, 3\)"):
        backend.reset(None, "fog", np.zeros((2, 3)), first_frames=FirstFrames(images[:1]))
    frames = backend.reset(None, "fog", np.zeros((2, 3)), first_frames=truth)
    np.testing.assert_array_equal(frames, truth.rgb)


def test_noise_seed_option_reseeds_sampler():
    images = np.random.default_rng(0).integers(0, 256, (1, *FRAME), dtype=np.uint8)
    poses = plan_chunk(np.zeros((1, 3)), DRIVE.astype(np.float64))
    out = []
    for noise_seed in (0, 0, 1):
        backend = ShareVerseBackend(model="tiny", memory_source="none")
        backend.reset(
            None, "clear_noon", np.zeros((1, 3)), {"images": images, "noise_seed": noise_seed}
        )
        out.append(backend.generate(poses, np.array([True])))
    assert np.array_equal(out[0], out[1])
    assert not np.array_equal(out[0], out[2])


def test_record_video(tmp_path):
    env = RecordVideo(
        make(render_mode="rgb_array"),
        tmp_path,
        episode_trigger=lambda _: True,
        name_prefix="gen",
    )
    env.reset(seed=0)
    while env.agents:
        env.step(drive(env))
    env.close()
    assert [p.name for p in tmp_path.iterdir()] == ["gen-episode-0.mp4"]
    frames = iio.imread(tmp_path / "gen-episode-0.mp4")
    # Two agents' 64×96 tiles side by side plus the 64×64 minimap.
    assert frames.shape == (1 + 2 * NEW_FRAMES_PER_CHUNK, 64, 2 * 96 + 64, 3)


def test_parallel_api():
    parallel_api_test(make(terminate_on_collision=True), num_cycles=2)


@pytest.mark.parametrize("name", ["backend", "config", "depth", "state"])
def test_doctests(name):
    module = importlib.import_module(f"shareverse_env.backends.generative.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def step_both(env_kwargs, seed=0):
    env = make(**env_kwargs)
    obs, _ = env.reset(seed=seed)
    obs, *_, infos = env.step(drive(env))
    return env, obs, infos


def test_scene_cache_without_composite_leaves_the_models_frames_exactly_as_they_were():
    _, _, plain_infos = step_both({"backend_options": {"scene_cache": False}})
    env, _, infos = step_both({"backend_options": {"scene_cache": True, "composite": False}})
    for agent in env.possible_agents:
        assert np.array_equal(plain_infos[agent]["frames"], infos[agent]["frames"])
    renders = env.backend.last_cache_renders
    assert len(renders) == 2 and all(r.valid.mean() > 0.3 for r in renders)
    assert "scene_cache" in env.backend.last_timings


def test_scene_cache_composite_shows_the_cache_where_it_is_valid_and_conditions_on_it():
    env, obs, infos = step_both({"backend_options": {"scene_cache": True}})
    _, _, plain = step_both({"backend_options": {"scene_cache": False}})
    backend = env.backend
    poses = np.stack([infos[a]["poses"] for a in env.possible_agents])  # (2, 28, 3)
    for row, agent in enumerate(env.possible_agents):
        render = backend.last_cache_renders[row]
        weight = backend.scene.weights(render, poses, row)
        full = weight == 1.0
        assert full.mean() > 0.3
        assert np.array_equal(infos[agent]["frames"][full], render.rgb[full])
        none = weight == 0.0
        assert np.array_equal(infos[agent]["frames"][none], plain[agent]["frames"][none])
    # The next chunk is conditioned on the composited last frame.
    assert np.array_equal(backend.conditioning_frames[0], obs["agent_0"])


def test_user_images_start_an_empty_cache_without_a_depth_model():
    env = make(backend_options={"scene_cache": True, "depth_model": False})
    images = np.full((2, *FRAME), 90, np.uint8)
    env.reset(seed=0, options={"images": images})
    assert len(env.backend.scene.cache) == 0
    env.step(drive(env))
    assert not any(r.valid.any() for r in env.backend.last_cache_renders)


def spy_cache_states(pipe) -> list:
    """The ``cache_states`` of every later call of ``pipe``'s transformer, in a list."""
    seen = []
    original = pipe.transformer.forward

    def spy(*args, **kwargs):
        seen.append(kwargs.get("cache_states"))
        return original(*args, **kwargs)

    pipe.transformer.forward = spy
    return seen


def test_a_model_that_sees_the_cache_gets_its_renders_before_denoising():
    from shareverse_env.models.cache_input import cache_in_channels
    from shareverse_env.models.pipeline import ShareVersePipeline
    from shareverse_env.models.training.trainer import with_cache_input

    base = ShareVersePipeline.from_config_name("tiny", seed=0)
    channels = cache_in_channels(base.vae.config.latent_channels)
    cached = with_cache_input(base)

    def rollout(model, seed=0, scene_cache=True):
        env = shareverse_env.parallel_env(
            backend="shareverse",
            model=model,
            max_cycles=2,
            backend_options={"depth_model": False, "scene_cache": scene_cache},
        )
        env.reset(seed=seed)
        _, _, _, _, infos = env.step({a: np.array([8.0, 0.0, 0.0]) for a in env.agents})
        return env, infos["agent_0"]["frames"]

    # Zero-initialised cache weights: exactly the frames of the model without the input.
    env, frames = rollout(cached)
    np.testing.assert_array_equal(frames, rollout(base)[1])
    assert env.unwrapped.backend.model_sees_cache
    seen = spy_cache_states(cached)
    rollout(cached)
    assert seen and all(s is not None and s.shape[3] == channels for s in seen)
    assert all(float(s[:, :, :, -3].mean()) > 0.2 for s in seen)  # the cache covers cells


def test_a_cache_model_in_the_papers_mode_gets_the_all_zero_cache_input():
    from shareverse_env.models.pipeline import ShareVersePipeline
    from shareverse_env.models.training.trainer import with_cache_input

    base = ShareVersePipeline.from_config_name("tiny", seed=0)
    cached = with_cache_input(base)
    torch.manual_seed(1)
    for param in cached.transformer.cache_embed.parameters():  # non-zero: the input matters
        param.data.normal_(0, 0.5)
    seen = spy_cache_states(cached)

    def frames(model, **options):
        env = shareverse_env.parallel_env(
            backend="shareverse",
            model=model,
            max_cycles=2,
            backend_options={"depth_model": False, **options},
        )
        env.reset(seed=0)
        _, _, _, _, infos = env.step({a: np.array([8.0, 0.0, 0.0]) for a in env.agents})
        assert env.unwrapped.backend.model_sees_cache == options.get("scene_cache", True)
        return infos["agent_0"]["frames"]

    paper = frames(cached, scene_cache=False)
    assert seen and all(s is not None and not s.any() for s in seen)
    seen.clear()
    assert not np.array_equal(paper, frames(cached))
    assert seen and all(s.any() for s in seen)


@pytest.mark.parametrize("eviction", ["coverage", "oldest"])
def test_a_full_scene_cache_keeps_the_exact_first_frames_by_coverage(eviction):
    # A cache of 12 buffers overflows in the second chunk (2 first frames + up to 4 keyframes
    # of new content per agent and chunk). First in, first out drops the exact first frames,
    # which hold the bulk of the scene (later buffers keep only what the cache missed);
    # ranking by what the cars see keeps them.
    options = {"scene_cache": True, "cache_capacity": 12, "cache_eviction": eviction}
    env = make(max_cycles=3, backend_options=options)
    env.reset(seed=0)
    cache = env.backend.scene.cache
    assert cache.eviction == eviction
    for _ in range(3):
        env.step(drive(env))
        assert len(cache) <= 12
    times = [b.time for b in cache.buffers]
    assert len(times) == 12 and max(times) > 0  # new content did enter
    assert (times.count(0) == 2) == (eviction == "coverage"), times


def test_an_unknown_cache_eviction_is_refused():
    with pytest.raises(ValueError, match="eviction must be one of"):
        make(backend_options={"scene_cache": True, "cache_eviction": "random"})


def test_the_splat_size_option_reaches_the_cache_and_is_checked():
    assert make().backend.scene.cache.max_footprint == (6, 3)
    env = make(
        backend_options={"cache_max_footprint": 3}
    )  # the cap of the shipped model's training
    assert env.backend.scene.cache.max_footprint == (3, 3)
    env.reset(seed=0)
    _, _, _, _, infos = env.step(drive(env))
    assert infos["agent_0"]["frames"].shape == (NEW_FRAMES_PER_CHUNK, *FRAME)
    with pytest.raises(ValueError, match="max_footprint must be an integer"):
        make(backend_options={"cache_max_footprint": 0})
