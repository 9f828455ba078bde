"""The scene-cache input of a cache-conditioned model: pooling, zero start, loading, refusals."""

import json

import numpy as np
import pytest
import torch
from shareverse_env.models.cache_input import cache_states, pool_mean, pool_min
from shareverse_env.models.loading import load_pipeline, save_pipeline
from shareverse_env.models.pipeline import ShareVersePipeline
from shareverse_env.models.training.trainer import with_cache_input

from shareverse_env.core.cache_guide import NO_CACHE, CacheGuide
from shareverse_env.core.geometry import CHUNK_FRAMES, plan_chunk

FRAME = (64, 96, 3)


def chunk(agents=2, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (agents, *FRAME), dtype=np.uint8)
    poses = plan_chunk(np.array([[0.0, 0.0, 0.0], [6.0, 3.5, 0.3]])[:agents], np.array([8.0, 0, 0]))
    return images, poses


def guide(agents=2, seed=0, covered=0.6):
    rng = np.random.default_rng(seed)
    shape = (agents, CHUNK_FRAMES, *FRAME[:2])
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    valid = rng.random(shape) < covered
    valid[:, 0] = True
    depth = np.where(rng.random(shape) < 0.1, rng.uniform(2, 40, shape), np.inf)
    nearness = np.where(np.isfinite(depth), 1.0 / np.maximum(depth, 1.0), 0.0)
    return CacheGuide(rgb, valid, nearness.astype(np.float32))


def generate(pipe, images, poses, **kwargs):
    out = pipe(images, poses, generator=torch.Generator().manual_seed(3), progress=False, **kwargs)
    return out.frames


def test_pool_min_counts_a_cell_only_when_every_pixel_of_every_frame_is_covered():
    mask = torch.ones(1, CHUNK_FRAMES, 16, 16)
    mask[0, 6, 3, 3] = 0  # frame 6 belongs to latent frame 2 (frames 5..8), cell (0, 0)
    mask[0, 0, 15, 15] = 0  # frame 0 is latent frame 0 alone, cell (1, 1)
    pooled = pool_min(mask)
    assert pooled.shape == (1, 8, 2, 2)
    assert pooled[0, 2, 0, 0] == 0 and pooled[0, 0, 1, 1] == 0
    assert pooled.sum() == 8 * 4 - 2
    assert pool_mean(mask)[0, 2, 0, 0] == pytest.approx(1 - 1 / (4 * 64))


def test_cache_states_zero_the_render_where_the_mask_is_zero():
    pipe = ShareVersePipeline.from_config_name("tiny", seed=0)
    g = guide(agents=1)
    states = cache_states(g, pipe.encode_frames)
    c = pipe.vae.config.latent_channels
    assert states.shape == (1, 8, c + 3, 8, 12)
    mask = states[:, :, c]
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert (states[:, :, :c] * (1 - mask[:, :, None])).abs().max() == 0
    assert (mask[:, 0] == 1).all()  # frame 0 is the conditioning frame, fully known
    assert states[:, :, c + 1].max() > 0 and states[:, :, c + 2].max() <= 1


def test_zero_initialised_cache_input_leaves_the_frames_unchanged():
    base = ShareVersePipeline.from_config_name("tiny", seed=0)
    cached = with_cache_input(base)
    images, poses = chunk()
    before = generate(base, images, poses)
    after = generate(cached, images, poses, cache=guide())
    np.testing.assert_array_equal(before, after)
    # Once the new weights move, the cache changes the frames.
    with torch.no_grad():
        torch.nn.init.normal_(cached.transformer.cache_embed.weight, std=0.5)
    assert not np.array_equal(before, generate(cached, images, poses, cache=guide()))


def test_a_cache_model_refuses_to_run_without_a_cache_and_the_reverse():
    base = ShareVersePipeline.from_config_name("tiny", seed=0)
    cached = with_cache_input(base)
    images, poses = chunk()
    with pytest.raises(ValueError, match=r"cache is required.*cache_in_channels=7"):
        generate(cached, images, poses)
    with pytest.raises(ValueError, match="no scene-cache input"):
        generate(base, images, poses, cache=guide())
    with pytest.raises(ValueError, match="no scene-cache input"):
        generate(base, images, poses, cache=NO_CACHE)
    with pytest.raises(ValueError, match=r"rgb of shape \(2, 29, 64, 96, 3\)"):
        generate(cached, images, poses, cache=guide(agents=1))
    x = torch.zeros(1, 2, 8, cached.transformer.config.in_channels, 8, 12)
    with pytest.raises(ValueError, match="needs cache_states"):
        cached.transformer(x, torch.tensor([10]))


def test_no_cache_is_the_all_zero_input_of_a_dropped_example():
    cached = with_cache_input(ShareVersePipeline.from_config_name("tiny", seed=0))
    with torch.no_grad():
        torch.nn.init.normal_(cached.transformer.cache_embed.weight, std=0.5)
        torch.nn.init.normal_(cached.transformer.cache_embed.bias, std=0.5)
    images, poses = chunk()
    seen = []
    original = cached.transformer.forward

    def spy(*args, **kwargs):
        seen.append(kwargs["cache_states"])
        return original(*args, **kwargs)

    cached.transformer.forward = spy
    empty = generate(cached, images, poses, cache=NO_CACHE)
    channels = cached.transformer.config.cache_in_channels
    assert seen[0].shape == (1, 2, 8, channels, 8, 12) and not seen[0].any()
    assert not np.array_equal(empty, generate(cached, images, poses, cache=guide()))


@pytest.mark.parametrize(
    ("field", "bad", "match"),
    [
        ("rgb", np.zeros((2, CHUNK_FRAMES, 64, 96, 3), np.float32), "cache rgb must be uint8"),
        ("valid", np.zeros((2, CHUNK_FRAMES, 64, 96), np.uint8), "cache valid must be bool"),
        ("cars", np.full((2, CHUNK_FRAMES, 64, 96), 2.0, np.float32), r"in \[0, 1\]"),
        ("cars", np.zeros((2, 5, 64, 96), np.float32), "cache cars must be float"),
    ],
)
def test_cache_guide_checks_its_fields(field, bad, match):
    fields = vars(guide())
    fields[field] = bad
    with pytest.raises(ValueError, match=match):
        CacheGuide(**fields)


def test_old_pipeline_folders_without_cache_channels_load_and_run(tmp_path):
    pipe = ShareVersePipeline.from_config_name("tiny", seed=0)
    save_pipeline(pipe, tmp_path)
    config_path = tmp_path / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("cache_in_channels", None)  # as written before the cache input existed
    config_path.write_text(json.dumps(config))
    loaded = load_pipeline(tmp_path)
    assert loaded.transformer.config.cache_in_channels == 0
    assert loaded.transformer.cache_embed is None
    images, poses = chunk()
    np.testing.assert_array_equal(generate(pipe, images, poses), generate(loaded, images, poses))


def test_cache_pipeline_round_trips_through_a_folder(tmp_path):
    cached = with_cache_input(ShareVersePipeline.from_config_name("tiny", seed=0))
    with torch.no_grad():
        torch.nn.init.normal_(cached.transformer.cache_embed.weight, std=0.1)
    save_pipeline(cached, tmp_path)
    loaded = load_pipeline(tmp_path)
    assert loaded.transformer.config.cache_in_channels == 7
    images, poses = chunk()
    g = guide()
    np.testing.assert_array_equal(
        generate(cached, images, poses, cache=g), generate(loaded, images, poses, cache=g)
    )
