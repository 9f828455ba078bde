"""The adversarial terms: on the one-step estimate's latents (the discriminator's shapes and
game, the trainer's draws left unchanged, an exact resume of both players) and on a decoder's
camera views in the VAE stages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _fake_data import FakeData
from shareverse_env.models.training import TrainConfig, Trainer
from shareverse_env.models.training.adversarial import (
    ADVERSARIAL_MIN_TIMESTEP,
    AdversarialTerm,
    ImagePatchDiscriminator,
    LatentPatchDiscriminator,
)
from shareverse_env.models.training.trainer import open_run_pipeline, with_cache_input


def make_trainer(run: Path, steps: int, stage: str = "stage2", **kwargs) -> Trainer:
    pipe = open_run_pipeline(run, "tiny")
    if stage not in ("vae", "decoder"):
        pipe = with_cache_input(pipe)
    cfg = TrainConfig(stage=stage, steps=steps, lr=3e-3, warmup_steps=0, **kwargs)
    return Trainer(pipe, FakeData(), run, cfg, progress=False)


def textured(n: int, generator: torch.Generator) -> torch.Tensor:
    """Latent frames with cell-to-cell texture, and their blurred copies (the MSE mean)."""
    sharp = torch.randn(n, 4, 8, 8, generator=generator)
    blurred = F.avg_pool2d(sharp, 3, stride=1, padding=1, count_include_pad=False)
    return sharp, blurred


def test_the_discriminator_scores_patches_and_names_a_wrong_channel_count():
    disc = LatentPatchDiscriminator(latent_channels=4, width=8)
    assert disc(torch.zeros(2, 3, 5, 4, 8, 12)).shape == (30, 1, 4, 6)
    with pytest.raises(ValueError, match="expected 4 channels"):
        disc(torch.zeros(2, 8, 8, 8))


def test_the_discriminator_learns_to_tell_texture_from_blur():
    generator = torch.Generator().manual_seed(0)
    term = AdversarialTerm(latent_channels=4, weight=1.0, lr=2e-3, width=16)
    for _ in range(60):
        sharp, blurred = textured(8, generator)
        term._pair = (sharp, blurred)
        logs = term.discriminator_step()
    sharp, blurred = textured(8, generator)
    with torch.no_grad():
        margin = term.discriminator(sharp).mean() - term.discriminator(blurred).mean()
    assert logs["d_loss"] < 0.5 and margin > 1.0, (logs, float(margin))


def test_the_generator_side_pushes_a_blurred_estimate_toward_texture():
    generator = torch.Generator().manual_seed(1)
    term = AdversarialTerm(latent_channels=4, weight=1.0, lr=2e-3, width=16)
    for _ in range(60):
        term._pair = textured(8, generator)
        term.discriminator_step()
    _, blurred = textured(4, generator)
    velocity = (-blurred).clone().requires_grad_(True)  # the estimate at t = 999 is -v
    estimate = -velocity
    zero = velocity.sum() * 0.0 + 1.0  # a reconstruction term with a gradient of zero
    real = torch.zeros_like(blurred)
    # A reconstruction gradient of zero gives the balance 0: pull the adversarial side alone.
    _, logs = term.generator_loss(zero, velocity, estimate, real, torch.tensor([999] * 4))
    assert logs["adv_weight"] == 0.0
    adversarial = -term.discriminator(estimate).mean()
    (grad,) = torch.autograd.grad(adversarial, velocity)
    stepped = (estimate + 0.5 * grad * velocity.numel() ** 0.5 / grad.norm()).detach()

    def energy(x: torch.Tensor) -> float:
        return float(x.diff(dim=-1).square().mean() + x.diff(dim=-2).square().mean())

    assert energy(stepped) > energy(blurred.detach())


def test_low_timesteps_are_left_out_of_the_term():
    term = AdversarialTerm(latent_channels=4, weight=1.0, lr=1e-3, width=8)
    velocity = torch.randn(2, 1, 2, 4, 8, 8, requires_grad=True)
    loss = velocity.square().mean()
    low = torch.tensor([ADVERSARIAL_MIN_TIMESTEP - 1, 0])
    total, logs = term.generator_loss(loss, velocity, -velocity, velocity.detach(), low)
    assert total is loss and logs["adv_weight"] == 0.0
    assert all(v != v for v in term.discriminator_step().values())  # NaN: no update
    mixed = torch.tensor([999, 0])
    total, logs = term.generator_loss(loss, velocity, -velocity, velocity.detach(), mixed)
    real, fake = term._pair
    assert real.shape[0] == fake.shape[0] == 1 and logs["adv_weight"] > 0


def test_the_term_leaves_the_diffusion_draws_unchanged(tmp_path):
    plain = make_trainer(tmp_path / "plain", 1, sampler_timestep_share=0.75, hole_weight=3.0)
    adversarial = make_trainer(
        tmp_path / "adv",
        1,
        sampler_timestep_share=0.75,
        hole_weight=3.0,
        adversarial_weight=0.5,
        discriminator_width=8,
    )
    for step in range(3):
        with torch.no_grad():
            expected = float(plain.loss_at(step)[0])
        _, logs = adversarial.loss_at(step)
        assert logs["mse"] == pytest.approx(expected, rel=1e-6), step


def test_resume_reproduces_both_players(tmp_path):
    knobs = {"adversarial_weight": 0.5, "discriminator_width": 8, "sampler_timestep_share": 1.0}
    straight = make_trainer(tmp_path / "a", 4, **knobs)
    straight.run()
    make_trainer(tmp_path / "b", 2, **knobs).run()
    resumed = make_trainer(tmp_path / "b", 4, **knobs)
    assert resumed.step == 2
    resumed.run()
    pairs = [
        (straight.module.state_dict(), resumed.module.state_dict()),
        (
            straight.adversarial.discriminator.state_dict(),
            resumed.adversarial.discriminator.state_dict(),
        ),
    ]
    for a, b in pairs:
        for name in a:
            assert torch.equal(a[name], b[name]), name
    assert straight.adversarial.discriminator.state_dict()  # it was trained and saved
    assert (tmp_path / "b" / "checkpoints" / "stage2" / "extras.pt").is_file()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="adversarial_weight must be >= 0"):
        TrainConfig(stage="stage2", adversarial_weight=-1.0).validate()
    with pytest.raises(ValueError, match="adversarial_weight must be >= 0"):
        TrainConfig(stage="decoder", adversarial_weight=-1.0).validate()
    with pytest.raises(ValueError, match="discriminator_width"):
        TrainConfig(stage="stage2", discriminator_width=0).validate()


def test_the_image_discriminator_scores_view_patches_and_names_a_wrong_shape():
    disc = ImagePatchDiscriminator(width=8)
    assert disc(torch.zeros(5, 3, 64, 96)).shape == (5, 1, 8, 12)
    with pytest.raises(ValueError, match=r"expected \(N, 3, H, W\)"):
        disc(torch.zeros(2, 4, 64, 96))


def test_the_image_discriminator_learns_to_tell_texture_from_blur():
    generator = torch.Generator().manual_seed(2)
    term = AdversarialTerm(latent_channels=None, weight=1.0, lr=2e-3, width=8)

    def views(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        sharp = torch.rand(n, 3, 32, 48, generator=generator) * 2 - 1
        return sharp, F.avg_pool2d(sharp, 5, stride=1, padding=2, count_include_pad=False)

    for _ in range(40):
        term._pair = views(4)
        logs = term.discriminator_step()
    sharp, blurred = views(4)
    with torch.no_grad():
        margin = term.discriminator(sharp).mean() - term.discriminator(blurred).mean()
    assert logs["d_loss"] < 0.5 and margin > 1.0, (logs, float(margin))


def test_the_decoder_stage_adds_the_view_term_and_trains_both_players(tmp_path):
    plain = make_trainer(tmp_path / "plain", 2, stage="decoder")
    adversarial = make_trainer(
        tmp_path / "adv", 2, stage="decoder", adversarial_weight=0.5, discriminator_width=8
    )
    assert plain.adversarial is None
    assert isinstance(adversarial.adversarial.discriminator, ImagePatchDiscriminator)
    with torch.no_grad():
        _, logs_plain = plain.loss_at(0)
    loss, logs = adversarial.loss_at(0)
    assert logs["l1"] == pytest.approx(logs_plain["l1"])  # the same batch and noise
    assert set(logs) >= {"adv", "adv_weight"} and "mse" not in logs
    expected = logs["l1"] + 0.5 * logs["adv_weight"] * logs["adv"]
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-4, abs=1e-6)
    real, fake = adversarial.adversarial._pair
    # Two frames of each clip, four views each, at the tiny model's view size.
    views = 2 * 4 * plain.config.batch_size
    assert real.shape == fake.shape and real.shape[:2] == (views, 3)
    before = {k: v.clone() for k, v in adversarial.adversarial.discriminator.state_dict().items()}
    adversarial.run()
    after = adversarial.adversarial.discriminator.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it was trained
    assert (tmp_path / "adv" / "checkpoints" / "decoder" / "extras.pt").is_file()
    # The discriminator is not part of the model: it is not in the saved pipeline.
    saved = open_run_pipeline(tmp_path / "adv", None)
    assert not any("layers" in k for k in saved.vae.state_dict())


def test_the_warm_up_trains_the_discriminator_alone(tmp_path):
    with pytest.raises(ValueError, match="adversarial_start must be >= 0"):
        TrainConfig(stage="decoder", adversarial_weight=0.5, adversarial_start=-1).validate()
    trainer = make_trainer(
        tmp_path / "warm",
        2,
        stage="decoder",
        adversarial_weight=0.5,
        discriminator_width=8,
        adversarial_start=1,
    )
    disc = trainer.adversarial.discriminator
    before = {k: v.clone() for k, v in disc.state_dict().items()}
    first = trainer.train_step()
    assert first["adv_weight"] == 0.0 and first["adv"] != first["adv"]  # off: NaN
    assert first["loss"] == pytest.approx(first["l1"], rel=1e-6)  # the decoder stage: L1 alone
    assert any(not torch.equal(before[k], disc.state_dict()[k]) for k in before)  # it trained
    second = trainer.train_step()
    assert second["adv_weight"] > 0 and second["adv"] == second["adv"]
