"""Named model sizes: the transformer, the VAE and the sampler defaults that go with them.

``tiny`` is for tests (a chunk in seconds), ``small`` is the CPU model the project trains and
ships (128×192 tiled frames), ``cogvideox-5b-i2v`` is the paper's full-size model, whose
transformer and VAE match CogVideoX-5B-I2V so that :func:`from_cogvideox` loads its weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler
from shareverse_env.models.transformer import ShareVerseTransformer


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build a model of one size from scratch."""

    transformer: dict[str, Any]
    vae: dict[str, Any]
    view_hw: tuple[int, int]
    num_inference_steps: int
    scheduler: dict[str, Any] = field(default_factory=dict)


# CogVideoX's schedule: v-prediction, zero-terminal SNR, scaled-linear betas, trailing spacing.
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
    "clip_sample": False,
    "set_alpha_to_one": True,
    "snr_shift_scale": 1.0,
}

_SMALL_VAE: dict[str, Any] = {
    "block_out_channels": (8, 16, 32, 32),
    "latent_channels": 8,
    "norm_num_groups": 8,
    "layers_per_block": 1,
    "scaling_factor": 1.0,
}

MODEL_SPECS: dict[str, ModelSpec] = {
    "tiny": ModelSpec(
        transformer={
            "num_attention_heads": 2,
            "attention_head_dim": 16,
            "in_channels": 8,
            "out_channels": 4,
            "time_embed_dim": 32,
            "text_embed_dim": 16,
            "num_layers": 2,
            "sample_height": 8,
            "sample_width": 12,
            "sample_frames": 29,
            "max_text_seq_length": 0,
        },
        vae={
            "block_out_channels": (8, 8, 16, 16),
            "latent_channels": 4,
            "norm_num_groups": 4,
            "layers_per_block": 1,
            "scaling_factor": 1.0,
        },
        view_hw=(32, 48),
        num_inference_steps=2,
    ),
    "small": ModelSpec(
        transformer={
            "num_attention_heads": 6,
            "attention_head_dim": 64,
            "in_channels": 16,
            "out_channels": 8,
            # 6 × 384 with a narrow time embedding: ~16 M parameters, ≤ 40 MB in fp16 to ship.
            "time_embed_dim": 64,
            "text_embed_dim": 64,
            "num_layers": 6,
            "sample_height": 16,
            "sample_width": 24,
            "sample_frames": 29,
            "max_text_seq_length": 0,
        },
        vae=_SMALL_VAE,
        view_hw=(64, 96),
        # One DDIM step from t = 999 (zero-terminal SNR): the network's own estimate of the
        # clean chunk. The shipped model scores highest there (PSNR and SSIM fall with every
        # step added, while its VAE caps the detail any step count can show) and the denoiser's
        # share of a chunk is a quarter of 4 steps' (docs/quality.md, "Sampler steps").
        num_inference_steps=1,
    ),
    "cogvideox-5b-i2v": ModelSpec(
        transformer={
            "num_attention_heads": 48,
            "attention_head_dim": 64,
            "in_channels": 32,
            "out_channels": 16,
            "time_embed_dim": 512,
            "text_embed_dim": 4096,
            "num_layers": 42,
            "sample_height": 60,
            "sample_width": 90,
            "sample_frames": 49,
            "max_text_seq_length": 226,
            "use_learned_positional_embeddings": True,
            "attention_bias": True,
        },
        vae={"scaling_factor": 0.7, "latent_channels": 16},
        view_hw=(240, 360),
        num_inference_steps=50,
    ),
}


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` called ``name``; a clear error lists the known names."""
    if name not in MODEL_SPECS:
        raise ValueError(f"unknown model config {name!r}; choose one of {sorted(MODEL_SPECS)}")
    return MODEL_SPECS[name]


def build_transformer(name: str, **overrides: Any) -> ShareVerseTransformer:
    """A randomly initialised :class:`ShareVerseTransformer` of size ``name``."""
    return ShareVerseTransformer(**{**get_spec(name).transformer, **overrides})


def build_vae(name: str, **overrides: Any) -> AutoencoderKLCogVideoX:
    """A randomly initialised CogVideoX VAE (8× spatial, 4× temporal) of size ``name``."""
    vae_kwargs = dict(get_spec(name).vae)
    blocks = len(vae_kwargs.get("block_out_channels", (128, 256, 256, 512)))
    vae_kwargs.setdefault("down_block_types", ("CogVideoXDownBlock3D",) * blocks)
    vae_kwargs.setdefault("up_block_types", ("CogVideoXUpBlock3D",) * blocks)
    return AutoencoderKLCogVideoX(**{**vae_kwargs, **overrides})


def build_scheduler(**overrides: Any) -> CogVideoXDDIMScheduler:
    """CogVideoX's DDIM scheduler with the training schedule above."""
    return CogVideoXDDIMScheduler(**{**SCHEDULER_CONFIG, **overrides})
