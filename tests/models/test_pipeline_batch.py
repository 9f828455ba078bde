"""``ShareVersePipeline.generate_batch``: several worlds in one call, never attending across worlds."""

import numpy as np
import pytest
import torch
from shareverse_env.models.pipeline import ChunkRequest, MemoryInput, ShareVersePipeline

from shareverse_env.core.geometry import plan_chunk


@pytest.fixture(scope="module")
def pipe():
    """The tiny model with raymaps and cross-agent attention switched on (they start at zero),
    so that agents of one world do influence each other and mixing worlds would show."""
    pipe = ShareVersePipeline.from_config_name("tiny", seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in pipe.transformer.raymap_encoder.outputs:
            layer.weight.normal_(std=0.02, generator=generator)
        for block in pipe.transformer.cross_agent_blocks:
            block.proj.weight.normal_(std=0.05, generator=generator)
    return pipe


def world(pipe, agents, seed, memory=True):
    """A random world of ``agents`` cars; its noise generator is seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (agents, *pipe.frame_shape), dtype=np.uint8)
    starts = rng.normal(size=(agents, 3)) * [5.0, 5.0, 0.3]
    poses = plan_chunk(starts, np.array([8.0, 0.5, 0.1]))
    mem = None
    if memory:
        channels = pipe.vae.config.latent_channels
        latents = torch.from_numpy(rng.normal(size=(agents, 4, channels, *pipe.latent_hw)))
        mem = MemoryInput(latents.float(), poses[:, [3, 9, 15, 21]].copy())
    return ChunkRequest(images, poses, mem, torch.Generator().manual_seed(seed))


def fresh(request):
    """The same request with a new generator in its initial state."""
    seed = request.generator.initial_seed()
    return ChunkRequest(
        request.images, request.poses, request.memory, torch.Generator().manual_seed(seed)
    )


def test_single_request_is_the_plain_call(pipe):
    request = world(pipe, 2, seed=0)
    batched = pipe.generate_batch([fresh(request)], progress=False)[0]
    generator = fresh(request).generator
    plain = pipe(request.images, request.poses, request.memory, generator, progress=False)
    assert torch.equal(batched.latents, plain.latents)
    assert np.array_equal(batched.frames, plain.frames)


def test_a_world_does_not_see_the_other_worlds(pipe):
    a, b, c = world(pipe, 2, 0), world(pipe, 2, 1), world(pipe, 2, 2)
    with_b = pipe.generate_batch([fresh(a), fresh(b)], progress=False)[0]
    with_c = pipe.generate_batch([fresh(a), fresh(c)], progress=False)[0]
    # Same batch layout, different neighbour: world a's result must not change at all.
    assert torch.equal(with_b.latents, with_c.latents)
    assert np.array_equal(with_b.frames, with_c.frames)
    # Control: the same four cars as ONE world do interact (cross-agent attention is live).
    merged = ChunkRequest(
        np.concatenate([a.images, b.images]),
        np.concatenate([a.poses, b.poses]),
        MemoryInput(
            torch.cat([a.memory.latents, b.memory.latents]),
            np.concatenate([a.memory.poses, b.memory.poses]),
        ),
        torch.Generator().manual_seed(0),
    )
    joint = pipe.generate_batch([merged], progress=False)[0]
    assert (joint.latents[:2] - with_b.latents).abs().max() > 1e-3


def test_mixed_worlds_match_separate_calls(pipe):
    """Worlds of different agent counts and with or without memory, in one call."""
    requests = [world(pipe, 2, 0), world(pipe, 1, 1), world(pipe, 2, 2, memory=False)]
    batched = pipe.generate_batch([fresh(r) for r in requests], progress=False)
    for request, out in zip(requests, batched, strict=True):
        alone = pipe.generate_batch([fresh(request)], progress=False)[0]
        assert out.frames.shape == alone.frames.shape
        # Batch size changes the floating-point summation order inside matmul and conv
        # kernels: equal up to rounding, not bit for bit.
        torch.testing.assert_close(out.latents, alone.latents, rtol=0, atol=1e-4)
        diff = np.abs(out.frames.astype(int) - alone.frames.astype(int))
        assert diff.max() <= 2 and (diff > 0).mean() < 1e-3
        torch.testing.assert_close(out.frame_latents, alone.frame_latents, rtol=0, atol=2e-2)


def test_errors_name_the_request(pipe):
    good, bad = world(pipe, 2, 0), world(pipe, 2, 1)
    bad.poses = bad.poses[:, :5]
    with pytest.raises(ValueError, match="request 1: poses must have shape"):
        pipe.generate_batch([good, bad], progress=False)
    assert pipe.generate_batch([], progress=False) == []
