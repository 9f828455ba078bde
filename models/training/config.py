"""Settings of one training stage."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from shareverse_env.models.lpips_net import NETS

from shareverse_env.core.geometry import VAE_TEMPORAL_FACTOR

STAGES = ("vae", "decoder", "stage1", "stage2")
"""``vae``: the small VAE from scratch; ``decoder``: the VAE's decoder alone, its encoder frozen
(the latent space, and so a transformer trained on it, stays valid); ``stage1``: 29-frame chunks
without memory; ``stage2``: chunks with 4 memory frames retrieved by Eq. 3 and the
unidirectional mask."""

VAE_STAGES = ("vae", "decoder")
"""Stages that train the VAE (on clips of frames) rather than the transformer."""


PARALLEL = ("ddp", "fsdp")
"""Data parallelism under torchrun: ``ddp`` (DistributedDataParallel: every rank holds the
whole model) or ``fsdp`` (torch's FSDP2: parameters, gradients and optimiser state sharded)."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one stage; the defaults suit the ``small`` model on a CPU.

    >>> TrainConfig(stage="stage1", steps=10).validate()
    """

    stage: str = "stage1"
    steps: int = 1000
    batch_size: int = 1
    lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "cpu"
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    # With several processes (torchrun): "ddp" replicates the trained module, "fsdp" shards it.
    parallel: str = "ddp"
    checkpoint_minutes: float = 10.0
    checkpoint_every: int = 0
    # Wall-clock budget of one invocation (0: none): stop after the step in progress, save.
    max_minutes: float = 0.0
    log_every: int = 1
    # Paper Sec. 3.4 / CogVideoX-I2V: pixel noise σ = exp(N(mean, std)) on the conditioning frame.
    image_noise_log_mean: float = -3.0
    image_noise_log_std: float = 0.5
    image_dropout: float = 0.0
    memory_source: str = "all"
    min_history: int = 8
    # Chunk starts are drawn on multiples of this; None: 1, or the latent cache's stride.
    start_stride: int | None = None
    vae_clip_frames: int = 9
    vae_kl_weight: float = 1e-6
    # Weight of the gradient-difference term of the VAE stages (0: L1 alone). L1 alone
    # lets the decoder answer uncertainty with blur; this term asks edges to be as strong as
    # in the truth.
    vae_gradient_weight: float = 0.0
    # Weight of a perceptual term (LPIPS with the backbone vae_perceptual_net, per camera view,
    # on vae_perceptual_frames frames of each clip; 0 frames: all) next to L1 in the VAE stages.
    # VGG by default, so that the evaluation's AlexNet LPIPS is not the quantity trained on.
    vae_perceptual_weight: float = 0.0
    vae_perceptual_net: str = "vgg"
    vae_perceptual_frames: int = 2
    # A model with a scene-cache input (cache_in_channels > 0): the share of examples whose
    # whole cache input is dropped, and the largest depth-noise level of the cache's buffers
    # (models/training/cache_data.py).
    cache_drop: float = 0.15
    cache_depth_noise: float = 0.10
    # Share of diffusion timesteps drawn from the pipeline's own sampler schedule (0: all
    # uniform). The shipped sampler takes one step from t = 999, where the model
    # predicts the whole chunk from its conditioning alone: uniform draws land there 0.1 % of
    # the time.
    sampler_timestep_share: float = 0.0
    # Learning-rate multiplier of the scene-cache input's new projection (``cache_embed``):
    # it starts at zero while the rest is trained already.
    cache_lr_scale: float = 1.0
    # Loss weight of the latent cells the model must draw itself with a cache input (uncovered
    # by the cache, or in another car's box): the env shows the cache render everywhere else.
    # 1: the plain mean.
    hole_weight: float = 1.0
    # Cosine decay of the learning rate to ``lr * lr_final`` over ``lr_decay_steps`` steps from
    # ``lr_decay_start``, then held there (0 steps: constant after warm-up). A function
    # of the step alone, so resuming, or adding a decay to a run at a later invocation, is exact.
    lr_decay_start: int = 0
    lr_decay_steps: int = 0
    lr_final: float = 0.1
    # Share of a batch's examples drawn from a rollout store (the env's own episodes,
    # models/training/rollout_store.py) when the trainer has one; 1: rollouts only.
    rollout_share: float = 0.5
    # Weight of an adversarial term on the clean-chunk estimate (models/training/adversarial.py;
    # 0: off): a latent patch discriminator, trained beside the transformer at
    # ``discriminator_lr``, asks the one-step estimate for texture where MSE alone returns the
    # blurred mean. The term is scaled by the ratio of the two losses' gradient norms at the
    # prediction, so 0.1 means a tenth of the reconstruction's pull. In the VAE stages the
    # discriminator judges decoded camera views instead (an RGB PatchGAN, on
    # vae_perceptual_frames frames of each clip), balanced at the decoder's output.
    adversarial_weight: float = 0.0
    discriminator_lr: float = 2e-4
    discriminator_width: int = 64
    # Steps at the start of a stage in which the discriminator trains alone (the term's
    # generator side is off): a fresh discriminator's gradients are noise, and the balance
    # would let them pull as hard as the reconstruction.
    adversarial_start: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}; got {self.stage!r}")
        if self.max_minutes < 0:
            raise ValueError(f"max_minutes must be >= 0; got {self.max_minutes}")
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(
                f"mixed_precision must be no, bf16 or fp16; got {self.mixed_precision!r}"
            )
        if self.parallel not in PARALLEL:
            raise ValueError(f"parallel must be one of {PARALLEL}; got {self.parallel!r}")
        if self.start_stride is not None and self.start_stride < 1:
            raise ValueError(f"start_stride must be >= 1; got {self.start_stride}")
        if (self.vae_clip_frames - 1) % VAE_TEMPORAL_FACTOR:
            raise ValueError(f"vae_clip_frames must be 1 + 4k; got {self.vae_clip_frames}")
        if not self.vae_gradient_weight >= 0:
            raise ValueError(f"vae_gradient_weight must be >= 0; got {self.vae_gradient_weight}")
        if not self.vae_perceptual_weight >= 0:
            raise ValueError(
                f"vae_perceptual_weight must be >= 0; got {self.vae_perceptual_weight}"
            )
        if self.vae_perceptual_net not in NETS:
            raise ValueError(
                f"vae_perceptual_net must be one of {sorted(NETS)}; got {self.vae_perceptual_net!r}"
            )
        if self.vae_perceptual_frames < 0:
            raise ValueError(
                f"vae_perceptual_frames must be >= 0; got {self.vae_perceptual_frames}"
            )
        if not 0 <= self.cache_drop <= 1:
            raise ValueError(f"cache_drop must be in [0, 1]; got {self.cache_drop}")
        if not 0 <= self.cache_depth_noise < 1:
            raise ValueError(f"cache_depth_noise must be in [0, 1); got {self.cache_depth_noise}")
        if self.hole_weight < 1:
            raise ValueError(f"hole_weight must be at least 1; got {self.hole_weight}")
        if not self.adversarial_weight >= 0:
            raise ValueError(f"adversarial_weight must be >= 0; got {self.adversarial_weight}")
        if self.adversarial_start < 0:
            raise ValueError(f"adversarial_start must be >= 0; got {self.adversarial_start}")
        if self.discriminator_width < 1:
            raise ValueError(f"discriminator_width must be >= 1; got {self.discriminator_width}")
        if not 0 <= self.rollout_share <= 1:
            raise ValueError(f"rollout_share must be in [0, 1]; got {self.rollout_share}")
        if not 0 <= self.sampler_timestep_share <= 1:
            raise ValueError(
                f"sampler_timestep_share must be in [0, 1]; got {self.sampler_timestep_share}"
            )
        if self.lr_decay_start < 0 or self.lr_decay_steps < 0:
            raise ValueError(
                "lr_decay_start and lr_decay_steps must be >= 0; got "
                f"{self.lr_decay_start} and {self.lr_decay_steps}"
            )
        if not 0 <= self.lr_final <= 1:
            raise ValueError(f"lr_final must be in [0, 1]; got {self.lr_final}")
        if not self.cache_lr_scale > 0:
            raise ValueError(f"cache_lr_scale must be > 0; got {self.cache_lr_scale}")
        if self.memory_source not in ("all", "others", "own"):
            raise ValueError(
                f"memory_source must be all, others or own; got {self.memory_source!r}"
            )

    def learning_rate(self, step: int) -> float:
        """The schedule's rate at ``step`` (0-based): linear warm-up, then constant or cosine decay.

        >>> cfg = TrainConfig(lr=1e-4, warmup_steps=0, lr_decay_start=100, lr_decay_steps=50)
        >>> [round(cfg.learning_rate(s) * 1e5, 2) for s in (0, 100, 125, 150, 900)]
        [10.0, 10.0, 5.5, 1.0, 1.0]
        """
        warm = self.warmup_steps
        rate = self.lr * min(1.0, (step + 1) / warm) if warm else self.lr
        if self.lr_decay_steps and step >= self.lr_decay_start:
            progress = min(1.0, (step - self.lr_decay_start) / self.lr_decay_steps)
            rate *= self.lr_final + (1 - self.lr_final) * 0.5 * (1 + math.cos(math.pi * progress))
        return rate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
