"""The scene-cache input of a cache-conditioned ShareVerse model (GEN3C-style conditioning).

The shared 3D scene cache (:mod:`shareverse_env.scene.cache`) is rendered into every camera of
every agent's planned chunk. A model built with ``cache_in_channels > 0`` sees that render, so
it continues the cache instead of inventing a town. Per latent frame of the chunk it gets
``latent_channels + 3`` channels:

- the cache render's RGB, holes filled with mid-grey (0 in the VAE's [-1, 1] range), the last
  frame of each latent frame's group (frames 0, 4, 8, …, 28) encoded by the pipeline's VAE as
  one image latent — the form the memory frames take, which the model already reads — and
  zeroed where the latent mask below is 0. Encoding 8 single images costs an eighth of
  encoding the 29-frame clip as a video (0.45 s against 4.1 s for two agents with the shipped
  VAE on one CPU thread);
- the validity mask, **min-pooled** to the latent grid: a latent cell counts as covered only
  when every pixel of its 8×8 patch, in every frame that latent frame stands for, is covered
  (latent frame 0 is frame 0, latent frame ``k`` frames ``4k-3 … 4k``);
- the layout of the *other* cars, which the cache leaves out: the fraction of the cell their
  projected boxes cover (**mean**-pooled, unlike the cache mask: a distant car a few pixels wide
  would vanish under a min) and their nearness ``1 / max(z, 1 m)`` there (mean-pooled).

Row 0 of a :class:`CacheGuide` is the conditioning frame itself (fully valid): the chunk's
latent frame 0 is that frame, exactly as the image latents say.

Example (one agent, a half-covered tiny chunk, a stand-in "VAE" that averages 8×8 patches):

>>> import numpy as np, torch
>>> frames, h, w = 29, 16, 24
>>> rgb = np.full((1, frames, h, w, 3), 200, np.uint8)
>>> valid = np.zeros((1, frames, h, w), bool); valid[:, :, :, :12] = True
>>> guide = CacheGuide(rgb, valid, np.zeros((1, frames, h, w), np.float32))
>>> def encode(images):  # (B, H, W, 3) uint8 -> (B, C=1, h, w)
...     x = torch.from_numpy(images).float().mean(-1, keepdim=True).permute(0, 3, 1, 2)
...     return torch.nn.functional.avg_pool2d(x, 8) / 255
>>> states = cache_states(guide, encode)
>>> tuple(states.shape), cache_in_channels(1)
((1, 8, 4, 2, 3), 4)
>>> states[0, 3, 1].tolist()  # the mask: the left 12 pixels of 24 cover 1.5 cells; 1 counts
[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from shareverse_env.core.cache_guide import CacheGuide
from shareverse_env.core.geometry import CHUNK_FRAMES, VAE_SPATIAL_FACTOR, VAE_TEMPORAL_FACTOR

EXTRA_CHANNELS = 3
"""Channels besides the render's latent: cache mask, car coverage, car nearness."""

HOLE_GREY = 128
"""Fill of uncovered pixels before encoding: mid-grey is 0 in the VAE's [-1, 1] input."""


def empty_cache_states(agents: int, channels: int, latent_hw: tuple[int, int]) -> torch.Tensor:
    """The all-zero ``cache_states`` ``(agents, 8, channels, h, w)`` of :data:`NO_CACHE`.

    >>> tuple(empty_cache_states(2, 7, (8, 12)).shape)
    (2, 8, 7, 8, 12)
    """
    frames = len(latent_keyframes())
    return torch.zeros(agents, frames, channels, *latent_hw)


def cache_in_channels(latent_channels: int) -> int:
    """``cache_in_channels`` of a transformer whose VAE has ``latent_channels``."""
    return latent_channels + EXTRA_CHANNELS


def _group_frames(x: torch.Tensor) -> list[torch.Tensor]:
    """``(N, 29, …)`` → the frames of each latent frame: ``[0]``, ``[1..4]``, ``[5..8]``, …"""
    groups = [x[:, :1]]
    for start in range(1, x.shape[1], VAE_TEMPORAL_FACTOR):
        groups.append(x[:, start : start + VAE_TEMPORAL_FACTOR])
    return groups


def pool_min(mask: torch.Tensor) -> torch.Tensor:
    """``(N, 29, H, W)`` in [0, 1] → ``(N, 8, H/8, W/8)``: the minimum over each latent cell."""
    out = [
        -F.max_pool2d(-g.amin(dim=1, keepdim=True), VAE_SPATIAL_FACTOR)[:, 0]
        for g in _group_frames(mask)
    ]
    return torch.stack(out, dim=1)


def pool_mean(x: torch.Tensor) -> torch.Tensor:
    """``(N, 29, H, W)`` → ``(N, 8, H/8, W/8)``: the mean over each latent cell."""
    out = [
        F.avg_pool2d(g.mean(dim=1, keepdim=True), VAE_SPATIAL_FACTOR)[:, 0]
        for g in _group_frames(x)
    ]
    return torch.stack(out, dim=1)


def latent_keyframes(frames: int = CHUNK_FRAMES) -> np.ndarray:
    """The frame encoded for each latent frame: 0, then the last of each group of four."""
    return np.arange(0, frames, VAE_TEMPORAL_FACTOR)


def cache_states(
    guide: CacheGuide, encode_images: Callable[[np.ndarray], torch.Tensor]
) -> torch.Tensor:
    """The transformer's ``cache_states`` ``(N, 8, C + 3, h, w)`` for one world's chunk.

    ``encode_images`` maps uint8 frames ``(B, 2H, 2W, 3)`` to scaled image latents
    ``(B, C, h, w)`` (:meth:`ShareVersePipeline.encode_frames
    <shareverse_env.models.pipeline.ShareVersePipeline.encode_frames>`).
    """
    keys = latent_keyframes(guide.rgb.shape[1])
    rgb = np.where(guide.valid[:, keys, ..., None], guide.rgb[:, keys], np.uint8(HOLE_GREY))
    agents = rgb.shape[0]
    latents = encode_images(rgb.reshape(-1, *rgb.shape[2:]))
    latents = latents.reshape(agents, len(keys), *latents.shape[1:])
    valid = torch.from_numpy(guide.valid).to(latents.device, torch.float32)
    cars = torch.from_numpy(np.asarray(guide.cars, np.float32)).to(latents.device)
    mask = pool_min(valid)
    coverage = pool_mean((cars > 0).float())
    nearness = pool_mean(cars)
    if mask.shape != latents.shape[:2] + latents.shape[-2:]:
        raise ValueError(
            f"cache frames of {tuple(guide.valid.shape[-2:])} pixels do not match latents "
            f"{tuple(latents.shape)} (8× spatial, 29 frames → 8)"
        )
    extra = torch.stack([mask, coverage, nearness], dim=2).to(latents.dtype)
    return torch.cat([latents * extra[:, :, :1], extra], dim=2)
