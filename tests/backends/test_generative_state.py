"""What the generative backend carries between a chunk's stages and what branch() restores."""

import numpy as np
import pytest
import torch

import shareverse_env
from shareverse_env.backends.generative import ChunkState, ShareVerseBackend
from shareverse_env.core.geometry import CHUNK_FRAMES, NEW_FRAMES_PER_CHUNK, plan_chunk

DRIVE = np.array([8.0, 0.0, 0.0], dtype=np.float32)
FRAME = (64, 96, 3)  # tiny model: 32×48 views tiled 2×2


def make(**kwargs):
    kwargs.setdefault("max_cycles", 2)
    kwargs.setdefault("terminate_on_collision", False)
    return shareverse_env.parallel_env(backend="shareverse", model="tiny", **kwargs)


def test_a_chunk_names_its_all_agent_and_active_agent_rows():
    backend = ShareVerseBackend(model="tiny", depth_model=False)
    images = np.random.default_rng(0).integers(0, 256, (3, *FRAME), dtype=np.uint8)
    starts = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [20.0, 0.0, 0.0]])
    backend.reset(None, "clear_noon", starts, {"images": images})
    poses = plan_chunk(starts, DRIVE.astype(np.float64))
    chunk = backend._prepare_chunk(poses, np.array([True, False, True]))
    assert isinstance(chunk, ChunkState)
    assert chunk.agents.tolist() == [0, 2]
    assert chunk.poses_all.shape == (3, CHUNK_FRAMES, 3)
    assert chunk.poses_active.shape == (2, CHUNK_FRAMES, 3)
    assert chunk.new_poses_all.shape == (3, NEW_FRAMES_PER_CHUNK, 3)
    assert chunk.new_poses_active.shape == (2, NEW_FRAMES_PER_CHUNK, 3)
    np.testing.assert_array_equal(chunk.conditioning_active, images[[0, 2]])
    np.testing.assert_array_equal(chunk.request.images, images[[0, 2]])
    assert chunk.out_all.shape == (3, NEW_FRAMES_PER_CHUNK, *FRAME) and not chunk.out_all.any()
    # The backend holds no chunk in flight: the state lives on the chunk only.
    assert not any("pending" in name for name in vars(backend))
    nobody = backend._prepare_chunk(poses, np.zeros(3, bool))
    assert nobody.request is None and len(nobody.agents) == 0


def test_checkpoint_needs_a_reset():
    with pytest.raises(RuntimeError, match="reset"):
        ShareVerseBackend(model="tiny", depth_model=False).checkpoint()


def test_branch_restores_every_field_of_the_checkpoint():
    env = make(backend_options={"depth_model": False})
    env.reset(seed=0)
    backend = env.backend
    env.step({a: DRIVE for a in env.agents})
    before = backend.checkpoint()
    cache = backend.scene.cache
    plan = plan_chunk(env._poses, np.tile(DRIVE, (2, 1)).astype(np.float64))
    with backend.branch():
        backend.generate(plan, np.ones(2, bool))
        assert backend._time == before.time + NEW_FRAMES_PER_CHUNK
    assert backend._time == before.time and len(backend.memory) == len(before.memory)
    np.testing.assert_array_equal(backend.conditioning_frames, before.conditioning_all)
    assert backend.last_timings == before.timings
    assert torch.equal(backend._generator.get_state(), before.generator_state)
    assert len(backend.scene.cache) == len(cache)
    assert [b.time for b in backend.scene.cache.buffers] == [b.time for b in cache.buffers]
    assert len(backend.last_cache_renders) == len(before.cache_renders_active) == 2


def test_branch_returns_to_the_state_before_it():
    """A chunk generated on a branch leaves no trace: memory, frames, clock and noise."""
    backend = ShareVerseBackend(model="tiny")
    with pytest.raises(RuntimeError, match="reset"):
        with backend.branch():
            pass
    # A fresh raymap projection is zero (the model would ignore the plan): open it, as training does.
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in backend.pipeline.transformer.raymap_encoder.outputs.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    start = np.zeros((1, 3))
    given = np.random.default_rng(1).integers(0, 256, (1, *FRAME), dtype=np.uint8)
    backend.reset(None, "clear_noon", start, {"images": given, "noise_seed": 0})
    drive_plan = plan_chunk(start, DRIVE[None].astype(np.float64))
    still_plan = plan_chunk(start, np.zeros((1, 3)))
    reference = ShareVerseBackend(model=backend.pipeline)
    reference.reset(None, "clear_noon", start, {"images": given, "noise_seed": 0})
    with backend.branch():
        still = backend.generate(still_plan, np.array([True]))
        assert len(backend.memory) == 1 + NEW_FRAMES_PER_CHUNK
    assert len(backend.memory) == 1 and np.array_equal(backend.conditioning_frames, given)
    with pytest.raises(ZeroDivisionError), backend.branch():  # restored on errors too
        backend.generate(still_plan, np.array([True]))
        _ = 1 / 0
    assert len(backend.memory) == 1
    first = backend.generate(drive_plan, np.array([True]))
    np.testing.assert_array_equal(first, reference.generate(drive_plan, np.array([True])))
    assert not np.array_equal(still, first)  # the plan, not the noise, made the difference
    second = backend.generate(drive_plan, np.array([True]))
    np.testing.assert_array_equal(second, reference.generate(drive_plan, np.array([True])))


def test_branch_restores_the_scene_cache():
    env = make(backend_options={"scene_cache": True, "depth_model": False})
    env.reset(seed=0)
    backend = env.backend
    count = len(backend.scene.cache)
    plan = plan_chunk(env._poses, np.tile(DRIVE, (2, 1)).astype(np.float64))
    with backend.branch():
        inside = backend.generate(plan, np.ones(2, bool))
    assert len(backend.scene.cache) == count and backend.last_cache_renders == []
    assert np.array_equal(inside, backend.generate(plan, np.ones(2, bool)))
