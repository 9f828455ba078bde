"""Training a model with a scene-cache input: the same input as the sampler, seeded noise and
drop, a falling loss, exact resume, and the pre-encoded store."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from _fake_data import FakeData
from shareverse_env.models.training import TrainConfig, Trainer
from shareverse_env.models.training.cache_data import (
    CacheNoise,
    chunk_cache_guide,
    drop_cache,
    perturb_depth,
)
from shareverse_env.models.training.objective import (
    diffusion_loss,
    draw_timesteps,
    encode_chunks,
    hole_weights,
    sampler_timesteps,
)
from shareverse_env.models.training.trainer import open_run_pipeline, with_cache_input


def make_trainer(run: Path, steps: int, stage: str = "stage2", **kwargs) -> Trainer:
    pipe = with_cache_input(open_run_pipeline(run, "tiny"))
    cfg = TrainConfig(stage=stage, steps=steps, lr=3e-3, warmup_steps=0, **kwargs)
    return Trainer(pipe, FakeData(), run, cfg, progress=False)


def test_trainer_and_sampler_give_the_transformer_the_same_cache_input(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path / "run", 1, cache_drop=0.0)
    pipe = trainer.pipe
    _, (example,) = trainer._draw(0)
    seq = trainer.data[example.sequence]
    guide = chunk_cache_guide(
        seq.frames,
        seq.depth,
        seq.poses,
        example.start,
        pipe.rig,
        pipe.view_hw,
        np.random.default_rng([trainer.config.seed, 0, 0, 0]),
    )
    seen = []
    forward = pipe.transformer.forward
    signature = inspect.signature(forward)

    def record(*args, **kwargs):
        seen.append(signature.bind(*args, **kwargs).arguments["cache_states"].clone())
        return forward(*args, **kwargs)

    monkeypatch.setattr(pipe.transformer, "forward", record)
    with torch.no_grad():
        pipe(
            seq.frames[:, example.start],
            example.poses,
            generator=torch.Generator(),
            num_inference_steps=1,
            progress=False,
            encode_for_memory=False,
            cache=guide,
        )
        encoded = encode_chunks(pipe, [example], trainer.config, torch.Generator().manual_seed(0))
        diffusion_loss(pipe, pipe.transformer, encoded, torch.Generator().manual_seed(0))
    sampled, trained = seen
    assert torch.equal(sampled, trained)
    c = pipe.vae.config.latent_channels
    assert 0.2 < float(sampled[:, :, 1:, c].mean()) < 1.0  # the cache covers part of the chunk


def test_depth_noise_and_cache_drop_are_seeded(tmp_path):
    trainer = make_trainer(tmp_path / "run", 1, batch_size=2)
    (_, a), (_, b), (_, other) = trainer._draw(3), trainer._draw(3), trainer._draw(4)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.cache_states, y.cache_states)
    assert not torch.equal(a[0].cache_states, other[0].cache_states)
    depth = np.full((8, 12), 10.0, np.float32)
    depth[0] = np.inf
    one = perturb_depth(depth, 0.1, np.random.default_rng(5))
    assert np.array_equal(one, perturb_depth(depth, 0.1, np.random.default_rng(5)))
    assert np.isinf(one[0]).all() and not np.array_equal(one[1:], depth[1:])
    assert np.array_equal(perturb_depth(depth, 0.0, np.random.default_rng(5)), depth)
    states = torch.ones(400, 3)
    dropped = drop_cache(states, 0.15, torch.Generator().manual_seed(1))
    assert torch.equal(dropped, drop_cache(states, 0.15, torch.Generator().manual_seed(1)))
    share = float((dropped.sum(1) == 0).float().mean())
    assert 0.1 < share < 0.2 and set(dropped.unique().tolist()) == {0.0, 1.0}
    with pytest.raises(ValueError, match="cache drop"):
        CacheNoise(drop=1.5).validate()


def test_a_few_steps_lower_the_loss_and_move_the_cache_weights(tmp_path):
    trainer = make_trainer(tmp_path / "run", 12, cache_drop=0.0)
    assert not trainer.pipe.transformer.cache_embed.weight.any()
    with torch.no_grad():
        before = float(trainer.loss_at(0)[0])
    trainer.run()
    with torch.no_grad():
        after = float(trainer.loss_at(0)[0])
    assert after < 0.75 * before, (before, after)
    assert trainer.module.cache_embed.weight.abs().sum() > 0


@pytest.mark.parametrize(
    "knobs",
    [{}, {"sampler_timestep_share": 0.75, "cache_lr_scale": 10.0, "hole_weight": 3.0}],
    ids=["plain", "knobs"],
)
def test_resume_reproduces_the_uninterrupted_run(tmp_path, knobs):
    straight = make_trainer(tmp_path / "a", 4, **knobs)
    straight.run()
    first = make_trainer(tmp_path / "b", 2, **knobs)
    first.run()
    resumed = make_trainer(tmp_path / "b", 4, **knobs)
    assert resumed.step == 2 and resumed.pipe.transformer.config.cache_in_channels == 7
    resumed.run()
    for (name, a), (_, b) in zip(
        straight.module.state_dict().items(), resumed.module.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_a_training_sequence_without_depth_is_refused(tmp_path):
    trainer = make_trainer(tmp_path / "run", 1)
    for item in trainer.data.items:
        item.depth = None
    with pytest.raises(ValueError, match="needs the dataset's depth"):
        trainer._draw(0)


def test_timesteps_come_from_the_sampler_at_the_given_share():
    uniform = draw_timesteps(64, 1000, torch.Generator().manual_seed(3))
    assert torch.equal(
        uniform, torch.randint(0, 1000, (64,), generator=torch.Generator().manual_seed(3))
    )
    steps = torch.tensor([999, 499])
    every = draw_timesteps(64, 1000, torch.Generator().manual_seed(3), steps, share=1.0)
    assert set(every.tolist()) == {999, 499}
    mixed = [
        draw_timesteps(64, 1000, torch.Generator().manual_seed(k), steps, 0.75) for k in (4, 4)
    ]
    assert torch.equal(*mixed)  # seeded
    on_sampler = torch.isin(mixed[0], steps).float().mean()
    assert 0.6 < on_sampler < 0.95, on_sampler
    with pytest.raises(ValueError, match="sampler's timesteps"):
        draw_timesteps(4, 1000, torch.Generator(), None, share=0.5)
    with pytest.raises(ValueError, match="sampler_timestep_share"):
        TrainConfig(sampler_timestep_share=1.5).validate()


def test_sampler_timesteps_are_those_the_pipeline_visits(tmp_path):
    trainer = make_trainer(tmp_path / "run", 1, sampler_timestep_share=1.0)
    pipe = trainer.pipe
    pipe.num_inference_steps = 1
    assert sampler_timesteps(pipe).tolist() == [999]
    pipe.num_inference_steps = 4
    assert sampler_timesteps(pipe).tolist() == [999, 749, 499, 249]
    pipe.scheduler.set_timesteps(4)
    assert pipe.scheduler.timesteps.tolist() == [999, 749, 499, 249]


def test_the_cache_projection_gets_its_own_learning_rate(tmp_path):
    trainer = make_trainer(tmp_path / "run", 1, cache_lr_scale=10.0)
    rest, cache = trainer.optimizer.param_groups
    names = dict(zip(map(id, trainer.params), trainer.param_names, strict=True))
    assert {names[id(p)] for p in cache["params"]} == {"cache_embed.weight", "cache_embed.bias"}
    assert trainer.param_names[-2:] == [names[id(p)] for p in cache["params"]]
    trainer.train_step()
    assert cache["lr"] == pytest.approx(10 * rest["lr"]) and rest["lr"] == trainer.config.lr
    with pytest.raises(ValueError, match="cache_lr_scale"):
        TrainConfig(cache_lr_scale=0).validate()
    plain = make_trainer(tmp_path / "plain", 1)
    assert len(plain.optimizer.param_groups) == 1


def test_hole_weight_weighs_the_cells_the_model_draws_itself(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path / "run", 1, cache_drop=0.0)
    _, batch = trainer._batch(0)
    encoded = encode_chunks(trainer.pipe, batch, trainer.config, torch.Generator().manual_seed(1))
    latent_channels = encoded["latents"].shape[3]
    states = encoded["cache_states"].clone()
    mask = torch.zeros_like(states[:, :, :, :1])
    mask[..., : mask.shape[-1] // 2] = 1.0  # the left half covered, the right half a hole
    states[:, :, :, latent_channels : latent_channels + 2] = torch.cat(
        [mask, torch.zeros_like(mask)], dim=3
    )
    encoded["cache_states"] = states
    hole = 1.0 - mask
    # A prediction wrong by 1 in the holes only, by 2 elsewhere: the squared error is
    # 1 in the holes and 4 on the covered half.
    monkeypatch.setattr(
        "shareverse_env.models.training.objective.predict_velocity",
        lambda transformer, enc, noisy, t: (
            trainer.pipe.scheduler.get_velocity(enc["latents"], noise, t) + 1.0 + (1.0 - hole)
        ),
    )
    noise = torch.randn(encoded["latents"].shape, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([500])

    def loss(weight: float) -> float:
        return float(
            diffusion_loss(
                trainer.pipe, trainer.module, encoded, None, t, noise, hole_weight=weight
            )
        )

    assert loss(1.0) == pytest.approx((1 + 4) / 2, rel=1e-4)
    assert loss(3.0) == pytest.approx((3 * 1 + 4) / (3 + 1), rel=1e-4)  # the holes count 3×
    # Another car's box counts as a hole even where the cache covers it.
    states[:, :, :, latent_channels + 1 : latent_channels + 2] = 1.0
    assert loss(3.0) == pytest.approx((3 * 1 + 3 * 4) / 6, rel=1e-4)
    # A dropped example has nothing to favour.
    dropped = hole_weights(torch.zeros_like(states), latent_channels, 3.0)
    assert torch.equal(dropped, torch.ones_like(dropped))
    encoded["cache_states"] = None
    with pytest.raises(ValueError, match="scene-cache input"):
        loss(3.0)


def test_hole_weight_is_refused_without_a_cache_input(tmp_path):
    with pytest.raises(ValueError, match="hole_weight must be at least 1"):
        TrainConfig(hole_weight=0.5).validate()
    pipe = open_run_pipeline(tmp_path / "run", "tiny")
    cfg = TrainConfig(stage="stage2", steps=1, hole_weight=2.0)
    with pytest.raises(ValueError, match="needs a transformer with a scene-cache input"):
        Trainer(pipe, FakeData(), tmp_path / "run", cfg, progress=False)
