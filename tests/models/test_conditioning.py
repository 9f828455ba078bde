"""The transformer's inputs of a chunk: one recipe, and the sampler and the trainer both use it."""

import inspect

import numpy as np
import pytest
import torch
from shareverse_env.models import MODEL_SPECS
from shareverse_env.models.conditioning import (
    CHUNK_LATENT_FRAMES,
    ChunkConditioning,
    memory_states,
    pad_image_latents,
    transformer_in_channels,
)
from shareverse_env.models.pipeline import MemoryInput, ShareVersePipeline
from shareverse_env.models.training.batches import ChunkExample
from shareverse_env.models.training.config import TrainConfig
from shareverse_env.models.training.objective import diffusion_loss, encode_chunks

from shareverse_env.core.geometry import CHUNK_FRAMES, plan_chunk


def test_pad_image_latents_puts_the_frame_first_and_zeros_after():
    cond = torch.randn(2, 3, 4, 8, 12, generator=torch.Generator().manual_seed(0))
    image = pad_image_latents(cond)
    assert CHUNK_LATENT_FRAMES == 8
    assert tuple(image.shape) == (2, 3, 8, 4, 8, 12) and image.dtype == cond.dtype
    assert torch.equal(image[:, :, 0], cond) and not image[:, :, 1:].any()
    assert tuple(pad_image_latents(cond, 13).shape) == (2, 3, 13, 4, 8, 12)
    with pytest.raises(ValueError, match="worlds, agents"):
        pad_image_latents(cond[0])


def test_memory_states_fill_both_slots_with_the_clean_latent():
    mem = torch.randn(1, 2, 4, 4, 8, 12, generator=torch.Generator().manual_seed(0))
    states = memory_states(mem)
    assert torch.equal(states[:, :, :, :4], mem) and torch.equal(states[:, :, :, 4:], mem)
    assert ChunkConditioning(torch.zeros(1), torch.zeros(1)).memory_states() is None


@pytest.mark.parametrize("name", sorted(MODEL_SPECS))
def test_every_model_size_takes_the_conditioning_channels(name):
    spec = MODEL_SPECS[name]
    latent = spec.vae["latent_channels"]
    assert spec.transformer["in_channels"] == transformer_in_channels(latent)


class _Recorder:
    """Records the arguments of the transformer's ``forward`` and ``encode_memory`` calls."""

    def __init__(self, transformer, monkeypatch):
        self.forward, self.memory = [], []
        for name, calls in (("forward", self.forward), ("encode_memory", self.memory)):
            original = getattr(transformer, name)
            signature = inspect.signature(original)

            def record(*args, _original=original, _sig=signature, _calls=calls, **kwargs):
                bound = _sig.bind(*args, **kwargs).arguments
                _calls.append({k: v.clone() if torch.is_tensor(v) else v for k, v in bound.items()})
                return _original(*args, **kwargs)

            monkeypatch.setattr(transformer, name, record)


def test_trainer_and_sampler_give_the_transformer_identical_inputs(monkeypatch):
    """Same chunk, same noise, same timestep: the sampler's first step and the training loss
    send the transformer the same tensors (latents with image conditioning, raymaps, memory).

    At the first sampling timestep (999) the schedule has zero terminal SNR, so the trainer's
    ``add_noise(x0, noise, 999)`` is the sampler's initial noise exactly; the trainer's pixel
    noise on the conditioning frame is switched off (σ = exp(-1e4) = 0).
    """
    pipe = ShareVersePipeline.from_config_name("tiny", seed=0)
    rng = np.random.default_rng(0)
    agents, count = 2, 4
    frame = pipe.frame_shape
    video = rng.integers(0, 256, (agents, CHUNK_FRAMES, *frame), dtype=np.uint8)
    starts = np.array([[0.0, 0.0, 0.0], [6.0, 3.5, 0.3]])
    poses = plan_chunk(starts, np.array([8.0, 0.5, 0.1]))
    memory_frames = rng.integers(0, 256, (agents, count, *frame), dtype=np.uint8)
    memory_poses = poses[:, ::7][:, :count] + rng.normal(scale=0.5, size=(agents, count, 3))
    channels = pipe.vae.config.latent_channels
    h, w = pipe.latent_hw
    memory_latents = pipe.encode_frames(memory_frames.reshape(-1, *frame))
    memory = MemoryInput(memory_latents.reshape(agents, count, channels, h, w), memory_poses)

    recorder = _Recorder(pipe.transformer, monkeypatch)
    pipe(
        video[:, 0],
        poses,
        memory,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=1,
        progress=False,
        encode_for_memory=False,
    )
    (sampled,), (sampled_memory,) = recorder.forward, recorder.memory
    timestep = sampled["timestep"]
    assert timestep.tolist() == [999] and float(pipe.scheduler.alphas_cumprod[999]) == 0.0
    noise = torch.randn(
        (1, agents, CHUNK_LATENT_FRAMES, channels, h, w), generator=torch.Generator().manual_seed(0)
    )

    recorder.forward.clear()
    recorder.memory.clear()
    config = TrainConfig(image_noise_log_mean=-1e4, image_noise_log_std=0.0, image_dropout=0.0)
    example = ChunkExample(video, poses, memory_frames, memory_poses, sequence=0, start=0)
    encoded = encode_chunks(pipe, [example], config, torch.Generator().manual_seed(1))
    with torch.no_grad():
        diffusion_loss(pipe, pipe.transformer, encoded, torch.Generator(), timestep, noise)
    (trained,), (trained_memory,) = recorder.forward, recorder.memory

    assert torch.equal(trained["hidden_states"], sampled["hidden_states"])
    assert torch.equal(trained["timestep"], sampled["timestep"])
    assert torch.equal(trained["raymaps"], sampled["raymaps"])
    assert torch.equal(trained_memory["memory_states"], sampled_memory["memory_states"])
    assert torch.equal(trained_memory["memory_raymaps"], sampled_memory["memory_raymaps"])
    assert sampled.get("encoder_hidden_states") is None
    assert trained.get("encoder_hidden_states") is None
    # The sampler encodes the memory once; the trainer hands it to the forward.
    assert sampled["memory_context"] is not None and "memory_states" not in sampled
    assert torch.equal(trained["memory_states"], trained_memory["memory_states"])

    # And the recipe is the documented one: noise | conditioning frame, then zeros; memory twice.
    hidden = sampled["hidden_states"]
    assert tuple(hidden.shape) == (1, agents, CHUNK_LATENT_FRAMES, 2 * channels, h, w)
    assert torch.equal(hidden[..., :channels, :, :], noise)
    assert torch.equal(hidden[0, :, 0, channels:], pipe.encode_frames(video[:, 0]))
    assert not hidden[:, :, 1:, channels:].any()
    assert torch.equal(sampled_memory["memory_states"], memory_states(memory.latents[None]))
