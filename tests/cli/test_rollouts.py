"""Collecting the env's own episodes for training: the recorded inputs are the model's, the
targets the truth's, the store reads back as training examples and the trainer learns from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from shareverse_env.models.loading import save_pipeline
from shareverse_env.models.training import TrainConfig, Trainer
from shareverse_env.models.training.batches import to_video_tensor
from shareverse_env.models.training.rollout_store import RolloutStore
from shareverse_env.models.training.trainer import open_run_pipeline, with_cache_input
from shareverse_env.models.vae import encode_video

import shareverse_env
from shareverse_env.cli.rollouts import collect_episode, main
from shareverse_env.policies import make_policy


@pytest.fixture(scope="module")
def cache_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_cache") / "pipeline"
    pipe = with_cache_input(open_run_pipeline(folder.parent / "run", "tiny"))
    save_pipeline(pipe, folder)
    return folder


def _envs(model, chunks=2):
    env = shareverse_env.parallel_env(
        model=str(model), terminate_on_collision=False, max_cycles=chunks
    )
    view_hw = tuple(env.unwrapped.backend.view_hw)
    truth = shareverse_env.parallel_env(
        backend="world", view_hw=view_hw, terminate_on_collision=False, max_cycles=chunks
    )
    return env, truth


def test_a_recorded_chunk_holds_the_models_inputs_and_the_truths_latents(cache_model):
    env, truth = _envs(cache_model)
    options = {"scenario": "following", "weather": "overcast"}
    _, truth_infos = truth.reset(seed=5, options=options)
    first_true = truth_infos["agent_0"]["frames"][-1]
    seen = []
    pipe = env.unwrapped.backend.pipeline
    original = pipe.generate_batch

    def spy(requests, *args, **kwargs):
        seen.append(requests[0])
        return original(requests, *args, **kwargs)

    pipe.generate_batch = spy
    chunks, summary = collect_episode(env.unwrapped, truth.unwrapped, 5, options, 2)
    del pipe.generate_batch
    assert summary["chunks_driven"] == 2 and len(chunks) == summary["chunks_kept"] == 2
    first, second = chunks
    # Chunk 0 starts at the exact first frame; chunk 1 at the model's own last frame.
    np.testing.assert_array_equal(first.conditioning[0], first_true)
    np.testing.assert_array_equal(second.conditioning, seen[1].images)
    assert not np.array_equal(second.conditioning[0], first.conditioning[0])
    np.testing.assert_allclose(second.poses, seen[1].poses)
    scale = pipe.scaling_factor
    torch.testing.assert_close(second.memory_latents * scale, seen[1].memory.latents.float())
    assert second.cache_states.shape[:2] == (2, 8)
    assert first.latents.shape == second.latents.shape
    assert torch.isfinite(second.latents).all()
    assert not torch.allclose(first.latents, second.latents)


def test_the_targets_are_the_true_frames_encoded(cache_model, monkeypatch):
    env, truth = _envs(cache_model, chunks=1)
    options = {"scenario": "following", "weather": "overcast"}
    _, infos = truth.reset(seed=2, options=options)
    start = np.stack([infos[a]["frames"][-1] for a in truth.possible_agents])
    chunks, _ = collect_episode(env.unwrapped, truth.unwrapped, 2, options, 1)
    # Step the truth again with the same expert actions (the expert is deterministic).
    truth.reset(seed=2, options=options)
    obs, _ = env.reset(seed=2, options=options)
    actions = make_policy("expert", env)(obs)
    _, _, _, _, infos = truth.step(actions)
    new = np.stack([infos[a]["frames"] for a in truth.possible_agents])
    video = np.concatenate([start[:, None], new], axis=1)
    pipe = env.unwrapped.backend.pipeline
    with torch.no_grad():
        expected = encode_video(pipe.vae, to_video_tensor(video, pipe.device, pipe.dtype))
    torch.testing.assert_close(chunks[0].latents, expected.float(), atol=1e-5, rtol=1e-4)


def test_the_cli_resumes_and_the_trainer_learns_from_the_store(cache_model, tmp_path):
    store = tmp_path / "rollouts"
    argv = ["--out", str(store), "--episodes", "1", "--chunks", "2", "--model", str(cache_model)]
    main([*argv, "--no-progress"])
    first = RolloutStore(store)
    assert len(first) == 2 and first.manifest["episodes"][0]["chunks_driven"] == 2
    main([*argv[:3], "2", *argv[4:], "--no-progress"])  # resumes: one more episode
    again = RolloutStore(store)
    assert len(again.manifest["episodes"]) == 2
    with pytest.raises(SystemExit, match="was collected with"):
        main([*argv[:5], "3", *argv[6:], "--no-progress"])
    example = again.draw(np.random.default_rng(0))
    assert example.cache_states is not None and example.latents is not None

    pipe = open_run_pipeline(tmp_path / "run", str(cache_model))
    config = TrainConfig(stage="stage2", steps=3, lr=3e-3, warmup_steps=0, rollout_share=1.0)
    trainer = Trainer(pipe, None, tmp_path / "run", config, progress=False, rollouts=store)
    before = [p.detach().clone() for p in trainer.params]
    row = trainer.run()
    assert row["step"] == 3 and np.isfinite(row["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.params, strict=True))


def test_a_store_mixed_with_data_needs_stored_latents(cache_model, tmp_path):
    store = tmp_path / "rollouts"
    main(
        [
            "--out",
            str(store),
            "--episodes",
            "1",
            "--chunks",
            "1",
            "--model",
            str(cache_model),
            "--no-progress",
        ]
    )
    pipe = open_run_pipeline(tmp_path / "run", str(cache_model))
    mixed = TrainConfig(stage="stage2", steps=1, rollout_share=0.5)
    with pytest.raises(ValueError, match="mixes rollouts with the dataset"):
        Trainer(pipe, None, tmp_path / "run", mixed, progress=False, rollouts=store)
    with pytest.raises(ValueError, match="needs a dataset, a rollout store or both"):
        Trainer(pipe, None, tmp_path / "run", mixed, progress=False)
    with pytest.raises(FileNotFoundError, match="no rollout store"):
        RolloutStore(tmp_path / "nothing")
