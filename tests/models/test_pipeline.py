"""The ShareVerse sampler on the tiny random model: shapes, determinism, memory, coupling, bad input."""

import numpy as np
import pytest
import torch
from shareverse_env.models import build_scheduler, build_transformer, build_vae
from shareverse_env.models.pipeline import ChunkOutput, MemoryInput, ShareVersePipeline

from shareverse_env.core.geometry import CHUNK_FRAMES, plan_chunk

NEW = CHUNK_FRAMES - 1
LATENT_FRAMES = 8
FRAME = (64, 96, 3)
LATENT = (4, 8, 12)  # tiny VAE: 4 channels at 1/8 of the 64×96 tiled frame


def make_pipe(active_additions=False):
    """A fresh tiny pipeline; ``active_additions`` gives raymaps and cross-agent attention weight."""
    pipe = ShareVersePipeline.from_config_name("tiny", seed=0)
    if active_additions:
        torch.manual_seed(1)
        with torch.no_grad():
            for layer in pipe.transformer.raymap_encoder.outputs:
                torch.nn.init.normal_(layer.weight, std=0.02)
            for block in pipe.transformer.cross_agent_blocks:
                torch.nn.init.normal_(block.proj.weight, std=0.02)
    return pipe


def inputs(agents=2, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (agents, *FRAME), dtype=np.uint8)
    starts = np.array([[0.0, 0.0, 0.0], [6.0, 3.5, 0.3], [-4.0, 2.0, -0.5]])[:agents]
    poses = plan_chunk(starts, np.array([8.0, 0.5, 0.1]))
    return images, poses


def run(pipe, images, poses, seed=0, **kwargs):
    kwargs.setdefault("progress", False)
    return pipe(images, poses, generator=torch.Generator().manual_seed(seed), **kwargs)


@pytest.fixture(scope="module")
def first_chunk():
    """A chunk of the fresh tiny model, for its frame latents and poses (used as memory)."""
    images, poses = inputs()
    return images, poses, run(make_pipe(), images, poses)


def memory_from(out, poses, count=4):
    return MemoryInput(out.frame_latents[:, :count].clone(), poses[:, 1 : 1 + count].copy())


def test_output_shapes_dtypes_and_timings(first_chunk):
    _, _, out = first_chunk
    assert isinstance(out, ChunkOutput)
    assert out.frames.shape == (2, NEW, *FRAME) and out.frames.dtype == np.uint8
    assert tuple(out.frame_latents.shape) == (2, NEW, *LATENT)
    assert tuple(out.latents.shape) == (2, LATENT_FRAMES, *LATENT)
    assert out.latents.dtype == torch.float32
    assert torch.isfinite(out.latents).all() and torch.isfinite(out.frame_latents).all()
    assert set(out.timings) == {"encode", "memory", "denoise", "decode", "archive"}
    assert all(v >= 0.0 for v in out.timings.values())
    # A random model makes noise, but not a constant image.
    assert out.frames.std() > 1.0


def test_no_frame_latents_when_not_requested():
    images, poses = inputs(agents=1)
    out = run(make_pipe(), images, poses, encode_for_memory=False)
    assert out.frame_latents is None
    assert out.frames.shape == (1, NEW, *FRAME)


def test_same_seed_same_frames_other_seed_differs(first_chunk):
    images, poses, out = first_chunk
    pipe = make_pipe()
    again = run(pipe, images, poses, seed=0)
    assert np.array_equal(again.frames, out.frames)
    assert torch.equal(again.latents, out.latents)
    other = run(pipe, images, poses, seed=1)
    assert not np.array_equal(other.frames, out.frames)
    assert not torch.allclose(other.latents, out.latents)


def test_memory_changes_output(first_chunk):
    images, poses, out = first_chunk
    pipe = make_pipe()
    without = run(pipe, images, poses, encode_for_memory=False)
    with_memory = run(pipe, images, poses, memory=memory_from(out, poses), encode_for_memory=False)
    assert with_memory.frames.shape == without.frames.shape
    assert (with_memory.latents - without.latents).abs().max() > 1e-4
    # Memory with no frames is the same as no memory.
    empty = MemoryInput(out.frame_latents[:, :0], poses[:, :0])
    assert torch.equal(run(pipe, images, poses, memory=empty).latents, without.latents)


def test_memory_poses_matter_through_raymaps(first_chunk):
    images, poses, out = first_chunk
    pipe = make_pipe(active_additions=True)
    memory = memory_from(out, poses)
    moved = MemoryInput(memory.latents, memory.poses + np.array([5.0, -3.0, 0.7]))
    a = run(pipe, images, poses, memory=memory, encode_for_memory=False)
    b = run(pipe, images, poses, memory=moved, encode_for_memory=False)
    assert (a.latents - b.latents).abs().max() > 1e-5


def test_memory_poses_ignored_by_fresh_raymap_encoder(first_chunk):
    # The raymap encoder starts at zero: memory poses cannot matter yet (control for the above).
    images, poses, out = first_chunk
    pipe = make_pipe()
    memory = memory_from(out, poses)
    moved = MemoryInput(memory.latents, memory.poses + np.array([5.0, -3.0, 0.7]))
    a = run(pipe, images, poses, memory=memory, encode_for_memory=False)
    b = run(pipe, images, poses, memory=moved, encode_for_memory=False)
    assert torch.allclose(a.latents, b.latents, atol=1e-6)


def test_agents_coupled_through_cross_agent_attention():
    images, poses = inputs()
    changed = images.copy()
    changed[1] = 255 - changed[1]
    pipe = make_pipe(active_additions=True)
    a = run(pipe, images, poses, encode_for_memory=False)
    b = run(pipe, changed, poses, encode_for_memory=False)
    assert (a.latents[0] - b.latents[0]).abs().max() > 1e-5
    assert not np.array_equal(a.frames[0], b.frames[0])


def test_agents_independent_with_zero_projections():
    images, poses = inputs()
    changed = images.copy()
    changed[1] = 255 - changed[1]
    pipe = make_pipe()
    a = run(pipe, images, poses, encode_for_memory=False)
    b = run(pipe, changed, poses, encode_for_memory=False)
    # Agent 1 did change, agent 0 did not.
    assert (a.latents[1] - b.latents[1]).abs().max() > 1e-4
    assert torch.allclose(a.latents[0], b.latents[0], atol=1e-6, rtol=0)
    assert np.abs(a.frames[0].astype(int) - b.frames[0].astype(int)).max() <= 1


def test_encode_and_decode_shapes():
    pipe = make_pipe()
    frames = np.random.default_rng(0).integers(0, 256, (3, *FRAME), dtype=np.uint8)
    latents = pipe.encode_frames(frames)
    assert tuple(latents.shape) == (3, *LATENT)
    # Batching does not change the result.
    assert torch.allclose(pipe.encode_frames(frames, batch_size=2), latents, atol=1e-5)
    video = pipe.decode_latents(torch.randn(2, LATENT_FRAMES, *LATENT))
    assert video.shape == (2, CHUNK_FRAMES, *FRAME) and video.dtype == np.uint8
    assert pipe.decode_latents(torch.randn(1, 3, *LATENT)).shape == (1, 9, *FRAME)


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((2, *FRAME), dtype=np.float32),
        np.zeros((2, 32, 48, 3), dtype=np.uint8),
        np.zeros((2, 64, 96, 4), dtype=np.uint8),
    ],
    ids=["float", "small", "rgba"],
)
def test_encode_frames_rejects_bad_frames(frames):
    with pytest.raises(ValueError, match="frames must be uint8"):
        make_pipe().encode_frames(frames)


BAD_CALLS = {
    "image_size": (dict(images=np.zeros((2, 32, 48, 3), np.uint8)), "images"),
    "image_dtype": (dict(images=np.zeros((2, *FRAME), np.float32)), "images"),
    "image_single": (dict(images=np.zeros(FRAME, np.uint8)), "images"),
    "pose_frames": (dict(poses=np.zeros((2, 10, 3))), r"poses must have shape \(2, 29, 3\)"),
    "pose_agents": (dict(poses=np.zeros((3, CHUNK_FRAMES, 3))), "poses"),
    "pose_nan": (dict(poses="nan"), "poses must be finite"),
    "memory_channels": (dict(memory="channels"), "memory"),
    "memory_agents": (dict(memory="agents"), "memory"),
    "memory_pose_nan": (dict(memory="nan"), "memory poses"),
    "guidance_without_prompt": (dict(guidance_scale=3.0), "prompt_embeds"),
    "zero_steps": (dict(num_inference_steps=0), "num_inference_steps"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_input_raises(case):
    kwargs, message = BAD_CALLS[case]
    kwargs = dict(kwargs)
    images, poses = inputs()
    kwargs.setdefault("images", images)
    if isinstance(kwargs.get("poses"), str):
        poses = poses.copy()
        poses[1, 5, 0] = np.nan
        kwargs["poses"] = poses
    kwargs.setdefault("poses", poses)
    memory = kwargs.get("memory")
    if isinstance(memory, str):
        count = 3
        channels, agents = 4, 2
        mem_poses = np.zeros((agents, count, 3))
        if memory == "channels":
            channels = 8
        elif memory == "agents":
            agents = 1
            mem_poses = np.zeros((1, count, 3))
        elif memory == "nan":
            mem_poses[0, 1, 2] = np.inf
        kwargs["memory"] = MemoryInput(torch.zeros(agents, count, channels, 8, 12), mem_poses)
    with pytest.raises(ValueError, match=message):
        make_pipe()(progress=False, **kwargs)


def test_guidance_with_prompt_embeds():
    pipe = make_pipe()
    images, poses = inputs()
    text_dim = pipe.transformer.config.text_embed_dim
    prompt = torch.randn(1, 3, text_dim, generator=torch.Generator().manual_seed(0))
    guided = run(
        pipe, images, poses, prompt_embeds=prompt, guidance_scale=3.0, encode_for_memory=False
    )
    assert guided.frames.shape == (2, NEW, *FRAME)
    assert torch.isfinite(guided.latents).all()
    # Classifier-free guidance with memory (the memory context is repeated for the batch).
    memory = MemoryInput(torch.randn(2, 2, *LATENT), poses[:, 1:3].copy())
    with_memory = run(
        pipe,
        images,
        poses,
        memory=memory,
        prompt_embeds=prompt,
        guidance_scale=3.0,
        encode_for_memory=False,
    )
    assert with_memory.frames.shape == (2, NEW, *FRAME)
    unguided = run(pipe, images, poses, prompt_embeds=prompt, encode_for_memory=False)
    assert not torch.allclose(unguided.latents, guided.latents)


def test_constructor_rejects_mismatched_vae():
    with pytest.raises(ValueError, match="latent channels"):
        ShareVersePipeline(
            build_transformer("tiny"), build_vae("small"), build_scheduler(), (32, 48)
        )


def test_constructor_rejects_bad_view_size():
    with pytest.raises(ValueError, match="view_hw"):
        ShareVersePipeline(
            build_transformer("tiny"), build_vae("tiny"), build_scheduler(), (30, 48)
        )
