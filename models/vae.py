"""Chunk-level encode/decode with the causal CogVideoX VAE.

The causal VAE maps ``1 + 4k`` frames to ``1 + k`` latent frames: latent 0 is the chunk's first
frame alone, each later latent four new frames. diffusers' ``decode`` processes latents two at a
time and only treats the first frame specially when a batch has an odd count, so an even number
of latents (a 29-frame chunk has 8) would come back as ``4·8 = 32`` frames. ``decode_chunk``
therefore decodes the first three latents together (``1 + 4 + 4`` frames), the rest in pairs
through the decoder's causal cache, and pads a lone final latent with a copy whose extra four
frames are dropped.
"""

from __future__ import annotations

import itertools

import torch
from diffusers import AutoencoderKLCogVideoX

from shareverse_env.core.geometry import VAE_TEMPORAL_FACTOR

ENCODER_SIDE = ("encoder", "quant_conv")
"""The VAE's submodules that map frames to latents: the latent space is a function of these (and
of the scaling factor) alone, so the decoder can be retrained without invalidating a transformer
or a latent cache."""

ENCODE_GROUP = 2 * VAE_TEMPORAL_FACTOR
"""Frames diffusers' CogVideoX encoder takes at a time after the first (two latent frames)."""


def _check_video(name: str, x: torch.Tensor, ndim: int, layout: str) -> None:
    if x.ndim != ndim:
        raise ValueError(f"{name} must have shape {layout}; got {tuple(x.shape)}")


def encode_video(vae: AutoencoderKLCogVideoX, video: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 1 + 4k, H, W)`` in [-1, 1] → unscaled latent means ``(B, C, 1 + k, h, w)``."""
    return encode_moments(vae, video).chunk(2, dim=1)[0]


def encode_moments(vae: AutoencoderKLCogVideoX, video: torch.Tensor) -> torch.Tensor:
    """Posterior moments ``(B, 2C, 1 + k, h, w)`` (mean, log-variance) of ``1 + 4k`` frames.

    Training the VAE samples from these (``DiagonalGaussianDistribution``); inference uses the mean.
    """
    _check_video("video", video, 5, "(batch, 3, frames, height, width)")
    frames = video.shape[2]
    if (frames - 1) % VAE_TEMPORAL_FACTOR:
        raise ValueError(f"video must have 1 + 4k frames; got {frames}")
    latents = []
    # The first group must hold 1 + 8j frames for diffusers' encoder batching; encode causally in
    # groups ourselves so any 1 + 4k works.
    cache = None
    if (frames - 1) % ENCODE_GROUP == 0:
        first = 1 + ENCODE_GROUP * ((frames - 1) // ENCODE_GROUP)
    else:
        first = 1 + VAE_TEMPORAL_FACTOR
    bounds = [0, first, *list(range(first + ENCODE_GROUP, frames + 1, ENCODE_GROUP))]
    if bounds[-1] != frames:
        bounds.append(frames)
    for start, end in itertools.pairwise(bounds):
        enc, cache = vae.encoder(video[:, :, start:end], conv_cache=cache)
        if vae.quant_conv is not None:
            enc = vae.quant_conv(enc)
        latents.append(enc)
    return torch.cat(latents, dim=2)


def encode_images(vae: AutoencoderKLCogVideoX, images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` in [-1, 1] → unscaled latent means ``(B, C, 1, h, w)``, one per image."""
    _check_video("images", images, 4, "(batch, 3, height, width)")
    return encode_video(vae, images[:, :, None])


def decode_chunk(vae: AutoencoderKLCogVideoX, latents: torch.Tensor) -> torch.Tensor:
    """Unscaled latents ``(B, C, 1 + k, h, w)`` → frames ``(B, 3, 1 + 4k, H, W)`` in [-1, 1]."""
    _check_video("latents", latents, 5, "(batch, channels, frames, h, w)")
    frames = latents.shape[2]
    out = []
    cache = None
    first = 1 if frames <= 2 else 3
    bounds = [0, first, *list(range(first + 2, frames + 1, 2))]
    if bounds[-1] != frames:
        bounds.append(frames)
    for start, end in itertools.pairwise(bounds):
        z = latents[:, :, start:end]
        lone = start > 0 and end - start == 1
        if lone:
            z = torch.cat([z, z], dim=2)
        if vae.post_quant_conv is not None:
            z = vae.post_quant_conv(z)
        dec, cache = vae.decoder(z, conv_cache=cache)
        out.append(dec[:, :, :VAE_TEMPORAL_FACTOR] if lone else dec)
    return torch.cat(out, dim=2)
