"""Saving and loading pipelines (safetensors + JSON only), from_cogvideox, and load_model."""

import json

import numpy as np
import pytest
import torch
from diffusers import CogVideoXTransformer3DModel
from safetensors.torch import save_file
from shareverse_env.models import MODEL_SPECS, build_scheduler, build_vae, loading
from shareverse_env.models.loading import from_cogvideox, load_model, load_pipeline
from shareverse_env.models.pipeline import ShareVersePipeline
from shareverse_env.models.rope import rope_table

from shareverse_env.core.geometry import plan_chunk

WEIGHTS = "diffusion_pytorch_model.safetensors"


def chunk_inputs():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    poses = plan_chunk(np.array([[0.0, 0.0, 0.0], [5.0, 3.0, 0.2]]), np.array([8.0, 0.0, 0.1]))
    return images, poses


def sample(pipe, **kwargs):
    images, poses = chunk_inputs()
    return pipe(
        images,
        poses,
        generator=torch.Generator().manual_seed(0),
        guidance_scale=1.0,
        progress=False,
        encode_for_memory=False,
        **kwargs,
    )


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name, tensor in sa.items():
        assert torch.equal(tensor, sb[name]), name


@pytest.fixture
def saved(tmp_path):
    """A tiny pipeline with non-default sampler settings, saved to ``tmp_path / "pipe"``."""
    pipe = ShareVersePipeline.from_config_name("tiny", seed=0, guidance_scale=1.5)
    with torch.no_grad():  # make the additions non-zero so that their weights must round-trip
        for layer in pipe.transformer.raymap_encoder.outputs:
            torch.nn.init.normal_(layer.weight, std=0.02)
        for block in pipe.transformer.cross_agent_blocks:
            torch.nn.init.normal_(block.proj.weight, std=0.02)
    folder = tmp_path / "pipe"
    pipe.save_pretrained(folder)
    return pipe, folder


# ---------------------------------------------------------------------------- round trip


def test_round_trip_identical(saved):
    pipe, folder = saved
    loaded = ShareVersePipeline.from_pretrained(folder)
    assert loaded.view_hw == pipe.view_hw == (32, 48)
    assert loaded.rig == pipe.rig
    assert loaded.num_inference_steps == pipe.num_inference_steps
    assert loaded.guidance_scale == 1.5
    assert loaded.scheduler.config.prediction_type == "v_prediction"
    assert_same_state(pipe.transformer, loaded.transformer)
    assert_same_state(pipe.vae, loaded.vae)
    a, b = sample(pipe), sample(loaded)
    assert np.array_equal(a.frames, b.frames)
    assert torch.equal(a.latents, b.latents)


def test_folder_holds_only_json_and_safetensors(saved):
    _, folder = saved
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} == {".json", ".safetensors"}
    names = {p.relative_to(folder).as_posix() for p in files}
    assert {
        "pipeline.json",
        f"transformer/{WEIGHTS}",
        f"vae/{WEIGHTS}",
        "scheduler/scheduler_config.json",
    } <= names
    assert json.loads((folder / "pipeline.json").read_text())["format"] == "shareverse-pipeline"


def test_overwrite_existing_folder(saved, tmp_path):
    _, folder = saved
    other = ShareVersePipeline.from_config_name("tiny", seed=1, num_inference_steps=3)
    other.save_pretrained(folder)
    loaded = load_pipeline(folder)
    assert loaded.num_inference_steps == 3
    assert_same_state(other.transformer, loaded.transformer)
    # Nothing left over from the atomic write: no temporary or ".old" folders.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


# ---------------------------------------------------------------------------- broken folders


def test_missing_transformer_weights(saved):
    _, folder = saved
    (folder / "transformer" / WEIGHTS).unlink()
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_pipeline(folder)


def test_missing_pipeline_json(saved):
    _, folder = saved
    (folder / "pipeline.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"pipeline\.json"):
        load_pipeline(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_pipeline(tmp_path / "nothing")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_safetensors(saved, damage):
    _, folder = saved
    path = folder / "transformer" / WEIGHTS
    data = path.read_bytes()
    path.write_bytes(b"\x00garbage!" * 50 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ValueError, match="could not load"):
        load_pipeline(folder)


def test_corrupt_vae_safetensors(saved):
    _, folder = saved
    (folder / "vae" / WEIGHTS).write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="vae"):
        load_pipeline(folder)


def test_wrong_format_in_pipeline_json(saved):
    _, folder = saved
    meta = json.loads((folder / "pipeline.json").read_text())
    meta["format"] = "something-else"
    (folder / "pipeline.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not a ShareVerse pipeline"):
        load_pipeline(folder)


def test_invalid_json(saved):
    _, folder = saved
    (folder / "pipeline.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt JSON"):
        load_pipeline(folder)


def test_pickle_weights_refused(saved):
    pipe, folder = saved
    (folder / "transformer" / WEIGHTS).unlink()
    torch.save(
        pipe.transformer.state_dict(), folder / "transformer" / "diffusion_pytorch_model.bin"
    )
    with pytest.raises(FileNotFoundError, match="only safetensors"):
        load_pipeline(folder)


# ---------------------------------------------------------------------------- from_cogvideox


def tiny_cogvideox(folder, transformer=True):
    """A plain diffusers CogVideoX-I2V folder of the tiny size (transformer, VAE, scheduler)."""
    torch.manual_seed(0)
    plain = CogVideoXTransformer3DModel(
        **MODEL_SPECS["tiny"].transformer, use_rotary_positional_embeddings=True
    )
    if transformer:
        plain.save_pretrained(folder / "transformer", safe_serialization=True)
    build_vae("tiny").save_pretrained(folder / "vae", safe_serialization=True)
    build_scheduler().save_pretrained(folder / "scheduler")
    return plain


def test_from_cogvideox_keeps_base_and_starts_as_base(tmp_path):
    plain = tiny_cogvideox(tmp_path)
    pipe = from_cogvideox(tmp_path, view_hw=(32, 48))
    model = pipe.transformer
    assert pipe.view_hw == (32, 48)
    # Every base weight is kept.
    ours = model.state_dict()
    for name, tensor in plain.state_dict().items():
        assert torch.equal(ours[name], tensor), name
    # Cross-agent blocks start from their DiT blocks; every new output projection is zero.
    every = model.config.cross_agent_every
    assert len(model.cross_agent_blocks) == len(range(0, model.config.num_layers, every))
    for j, cross in enumerate(model.cross_agent_blocks):
        block = model.transformer_blocks[j * every]
        for mine, theirs in ((cross.norm, block.norm1), (cross.attn, block.attn1)):
            theirs_state = theirs.state_dict()
            for name, tensor in mine.state_dict().items():
                assert torch.equal(tensor, theirs_state[name]), name
        assert not cross.proj.weight.any() and not cross.proj.bias.any()
    assert len(model.raymap_encoder.outputs) > 0
    for layer in model.raymap_encoder.outputs:
        assert not layer.weight.any() and not layer.bias.any()

    # Two agents with random raymaps: each gets exactly what the plain model gives it alone.
    cfg = model.config
    frames, (h, w) = 3, pipe.latent_hw
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, frames, cfg.in_channels, h, w, generator=gen)
    rays = torch.randn(1, 2, frames, cfg.raymap_channels, h, w, generator=gen)
    t = torch.tensor([500])
    p = cfg.patch_size
    rope = rope_table(
        cfg.attention_head_dim,
        (h // p, w // p),
        (cfg.sample_height // p, cfg.sample_width // p),
        list(range(frames)),
    )
    with torch.no_grad():
        out = model(x, t, raymaps=rays).sample
        assert tuple(out.shape) == (1, 2, frames, cfg.out_channels, h, w)
        for agent in range(2):
            expected = plain(
                hidden_states=x[:, agent],
                encoder_hidden_states=torch.zeros(1, 0, cfg.text_embed_dim),
                timestep=t,
                image_rotary_emb=rope,
            ).sample
            torch.testing.assert_close(out[:, agent], expected, atol=1e-5, rtol=0)
    assert not torch.allclose(out[:, 0], out[:, 1], atol=1e-3)


def test_from_cogvideox_sampler_runs(tmp_path):
    tiny_cogvideox(tmp_path)
    pipe = from_cogvideox(tmp_path, num_inference_steps=2)
    assert pipe.view_hw == (32, 48)  # from the transformer's sample size
    assert pipe.num_inference_steps == 2
    assert sample(pipe).frames.shape == (2, 28, 64, 96, 3)


def test_from_cogvideox_without_weights(tmp_path):
    tiny_cogvideox(tmp_path, transformer=False)
    plain = CogVideoXTransformer3DModel(
        **MODEL_SPECS["tiny"].transformer, use_rotary_positional_embeddings=True
    )
    plain.save_config(tmp_path / "transformer")  # config.json only
    with pytest.raises(FileNotFoundError, match="safetensors"):
        from_cogvideox(tmp_path)


def test_from_cogvideox_unrelated_weights(tmp_path):
    tiny_cogvideox(tmp_path)
    save_file({"something.else": torch.randn(3, 3)}, tmp_path / "transformer" / WEIGHTS)
    with pytest.raises(ValueError, match="not a CogVideoX transformer"):
        from_cogvideox(tmp_path)


def test_from_cogvideox_corrupt_weights(tmp_path):
    tiny_cogvideox(tmp_path)
    path = tmp_path / "transformer" / WEIGHTS
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError):
        from_cogvideox(tmp_path)


# ---------------------------------------------------------------------------- load_model


def test_load_model_config_name():
    pipe = load_model("tiny")
    assert isinstance(pipe, ShareVersePipeline)
    assert pipe.view_hw == MODEL_SPECS["tiny"].view_hw
    # Seeded: the same seed gives the same weights, another seed others.
    assert_same_state(pipe.transformer, load_model("tiny", seed=0).transformer)
    other = load_model("tiny", seed=1).transformer.state_dict()
    assert not torch.equal(
        pipe.transformer.state_dict()["proj_out.weight"], other["proj_out.weight"]
    )


def test_load_model_passes_pipeline_through():
    pipe = ShareVersePipeline.from_config_name("tiny")
    assert load_model(pipe) is pipe


def test_load_model_folder(saved):
    pipe, folder = saved
    for given in (folder, str(folder)):
        loaded = load_model(given)
        assert isinstance(loaded, ShareVersePipeline)
        assert_same_state(pipe.transformer, loaded.transformer)


def test_load_model_unknown_name():
    with pytest.raises(ValueError, match=r"'small'.*'tiny'"):
        load_model("no-such-model")


def test_load_model_without_shipped_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "SHIPPED_WEIGHTS", tmp_path)
    with pytest.raises(FileNotFoundError, match="no trained ShareVerse weights"):
        load_model(None)


def test_load_model_shipped_weights(saved, monkeypatch):
    pipe, folder = saved
    monkeypatch.setattr(loading, "SHIPPED_WEIGHTS", folder)
    assert_same_state(pipe.transformer, load_model(None).transformer)


def test_incomplete_pipeline_json_is_named(tmp_path) -> None:
    import json

    from shareverse_env.models.pipeline import ShareVersePipeline

    ShareVersePipeline.from_config_name("tiny").save_pretrained(tmp_path / "p")
    meta_path = tmp_path / "p" / "pipeline.json"
    meta = json.loads(meta_path.read_text())
    del meta["view_hw"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="view_hw"):
        load_pipeline(tmp_path / "p")


def test_saving_over_a_regular_file_is_refused(tmp_path) -> None:
    from shareverse_env.models.pipeline import ShareVersePipeline

    (tmp_path / "f").write_text("x")
    with pytest.raises(FileExistsError):
        ShareVersePipeline.from_config_name("tiny").save_pretrained(tmp_path / "f")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_building_a_named_model_leaves_the_global_rng_alone() -> None:
    from shareverse_env.models.pipeline import ShareVersePipeline

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ShareVersePipeline.from_config_name("tiny", seed=5)
    torch.testing.assert_close(torch.rand(3), expected)


# ---------------------------------------------------------------------------- pipeline.json


def test_pipeline_meta_reads_and_rewrites_the_shipped_file_unchanged(tmp_path) -> None:
    """One owner of the format: the shipped ``pipeline.json`` parses into a
    :class:`PipelineMeta` whose rewrite is the same bytes, so saved folders keep the format."""
    from shareverse_env.models.loading import SHIPPED_WEIGHTS, PipelineMeta, is_pipeline_folder

    assert is_pipeline_folder(SHIPPED_WEIGHTS) and not is_pipeline_folder(tmp_path)
    meta = PipelineMeta.read(SHIPPED_WEIGHTS)
    assert meta.view_hw == (64, 96) and meta.num_inference_steps == 1
    meta.write(tmp_path)
    shipped = (SHIPPED_WEIGHTS / "pipeline.json").read_text()
    assert (tmp_path / "pipeline.json").read_text() == shipped
    assert is_pipeline_folder(tmp_path)


def test_pipeline_meta_defaults_and_round_trip() -> None:
    from shareverse_env.models.loading import PipelineMeta

    from shareverse_env.core.geometry import CameraRig

    pipe = ShareVersePipeline.from_config_name("tiny", guidance_scale=2.5)
    meta = PipelineMeta.of(pipe)
    assert PipelineMeta.from_json(meta.to_json()) == meta
    assert meta.guidance_scale == 2.5 and meta.rig == pipe.rig
    data = meta.to_json()
    del data["rig"], data["guidance_scale"]
    bare = PipelineMeta.from_json(data)
    assert bare.rig == CameraRig() and bare.guidance_scale == 1.0
    with pytest.raises(ValueError, match=r"rig\.hfov_deg"):
        PipelineMeta.from_json({**meta.to_json(), "rig": {"mount_height": 1.0, "offsets": []}})


def test_from_pretrained_takes_device_and_dtype(saved) -> None:
    _, folder = saved
    loaded = ShareVersePipeline.from_pretrained(folder, device="cpu", dtype=torch.float64)
    assert loaded.dtype == torch.float64 and loaded.device.type == "cpu"


def test_random_full_size_model_refused_on_cpu(monkeypatch):
    """A random 5B model on the CPU is refused at once (it would only exhaust memory)."""
    with pytest.raises(ValueError, match=r"cogvideox-5b-i2v.*CogVideoX-5B-I2V download"):
        load_model("cogvideox-5b-i2v", device="cpu")
    with pytest.raises(ValueError, match="allow_random_full_size"):
        load_model("cogvideox-5b-i2v")
    # The check is by name: with "tiny" declared full size, only an explicit request builds it.
    monkeypatch.setattr(loading, "FULL_SIZE_CONFIGS", ("tiny",))
    with pytest.raises(ValueError, match="allow_random_full_size"):
        load_model("tiny")
    assert isinstance(load_model("tiny", allow_random_full_size=True), ShareVersePipeline)


def test_load_model_reads_a_cogvideox_folder(tmp_path):
    tiny_cogvideox(tmp_path)
    pipe = load_model(tmp_path)
    assert isinstance(pipe, ShareVersePipeline)
    assert pipe.view_hw == (32, 48)


def test_from_cogvideox_with_cache_input_starts_as_without(tmp_path):
    # The paper's full-size path gets the same cache channels; at tiny scale they start at zero.
    from shareverse_env.models.cache_input import cache_in_channels

    from shareverse_env.core.cache_guide import CacheGuide

    tiny_cogvideox(tmp_path)
    plain = from_cogvideox(tmp_path, num_inference_steps=1)
    channels = cache_in_channels(plain.vae.config.latent_channels)
    cached = from_cogvideox(tmp_path, num_inference_steps=1, cache_in_channels=channels)
    assert not cached.transformer.cache_embed.weight.any()
    images, poses = chunk_inputs()
    shape = (len(images), poses.shape[1], *images.shape[1:3])
    guide = CacheGuide(
        np.full((*shape, 3), 90, np.uint8), np.ones(shape, bool), np.zeros(shape, np.float32)
    )
    with_cache = sample(cached, cache=guide)
    np.testing.assert_array_equal(with_cache.frames, sample(plain).frames)
