"""The transformer's inputs for one chunk, built one way for the sampler and the trainer.

ShareVerse is CogVideoX-I2V with camera and memory conditioning (paper Sec. 3). For a chunk of
``B`` worlds × ``N`` agents × ``F`` latent frames (8 for the 29-frame chunk), the transformer
takes:

- ``hidden_states`` ``(B, N, F, in_channels, h, w)``: the noisy latents, then on channels the
  *image latents*: the conditioning frame's latent at latent frame 0 and zeros over the rest of
  the chunk (CogVideoX-I2V's padding);
- ``raymaps`` ``(B, N, F, 24, h, w)``: the chunk's packed raymaps;
- ``memory_states`` ``(B, N, M, in_channels, h, w)``: the ``M`` retrieved memory latents,
  clean, so the same latent fills the noisy slot and the image slot; the transformer places
  them before the chunk in time and lets them attend only to each other;
- ``memory_raymaps`` ``(B, N, M, 24, h, w)``: their raymaps, in the chunk's normalisation;
- ``cache_states`` ``(B, N, F, cache_in_channels, h, w)``: the scene cache rendered into the
  chunk's cameras, for a model with a cache input
  (:mod:`~shareverse_env.models.cache_input`), ``None`` otherwise.

The sampler (:meth:`~shareverse_env.models.pipeline.ShareVersePipeline.generate_batch`) and the
training objective (:func:`~shareverse_env.models.training.objective.diffusion_loss`) both go
through :class:`ChunkConditioning`: a new input channel group is one edit here (a field,
its place in :meth:`ChunkConditioning.hidden_states`, its count in :func:`transformer_in_channels`).

Example (one world, two agents, two memory frames, 4 latent channels at 8×12):

>>> import torch
>>> cond = torch.ones(1, 2, 4, 8, 12)  # the conditioning frame's latent, per agent
>>> conditioning = ChunkConditioning(
...     image_latents=pad_image_latents(cond),
...     raymaps=torch.zeros(1, 2, CHUNK_LATENT_FRAMES, 24, 8, 12),
...     memory_latents=torch.full((1, 2, 2, 4, 8, 12), 0.5),
...     memory_raymaps=torch.zeros(1, 2, 2, 24, 8, 12),
... )
>>> inputs = conditioning.transformer_inputs(torch.randn(1, 2, CHUNK_LATENT_FRAMES, 4, 8, 12))
>>> tuple(inputs["hidden_states"].shape), transformer_in_channels(4)
((1, 2, 8, 8, 8, 12), 8)
>>> float(inputs["hidden_states"][:, :, 0, 4:].mean()), float(inputs["hidden_states"][:, :, 1:, 4:].abs().sum())
(1.0, 0.0)
>>> tuple(inputs["memory_states"].shape), float(inputs["memory_states"].mean())
((1, 2, 2, 8, 8, 12), 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from shareverse_env.core.geometry import CHUNK_FRAMES, latent_frame_count

CHUNK_LATENT_FRAMES = latent_frame_count(CHUNK_FRAMES)
"""Latent frames of one generated chunk (29 frames → 8)."""


def transformer_in_channels(latent_channels: int) -> int:
    """Input channels the transformer needs for a VAE of ``latent_channels``: noisy + image."""
    return 2 * latent_channels


def pad_image_latents(
    cond_latents: torch.Tensor, frames: int = CHUNK_LATENT_FRAMES
) -> torch.Tensor:
    """Conditioning-frame latents ``(B, N, C, h, w)`` → image latents ``(B, N, frames, C, h, w)``.

    The latent sits at frame 0; the other frames are zeros (CogVideoX-I2V).
    """
    if cond_latents.ndim != 5:
        raise ValueError(
            f"conditioning latents must be (worlds, agents, C, h, w); got {tuple(cond_latents.shape)}"
        )
    batch, agents, channels, h, w = cond_latents.shape
    image = cond_latents.new_zeros(batch, agents, frames, channels, h, w)
    image[:, :, 0] = cond_latents
    return image


def memory_states(memory_latents: torch.Tensor) -> torch.Tensor:
    """Clean memory latents ``(B, N, M, C, h, w)`` → transformer memory states ``(…, 2C, h, w)``.

    A memory frame is clean: its latent fills the noisy slot and the image slot alike.
    """
    return torch.cat([memory_latents, memory_latents], dim=3)


@dataclass
class ChunkConditioning:
    """What the transformer is told about a chunk besides its noisy latents.

    ``image_latents`` ``(B, N, F, C, h, w)`` (see :func:`pad_image_latents`), ``raymaps``
    ``(B, N, F, 24, h, w)``, ``memory_latents`` ``(B, N, M, C, h, w)`` scaled clean latents
    and ``memory_raymaps`` ``(B, N, M, 24, h, w)``, or ``None`` for a chunk without memory;
    ``cache_states`` ``(B, N, F, Cc, h, w)`` or ``None`` for a model without a cache input.
    """

    image_latents: torch.Tensor
    raymaps: torch.Tensor
    memory_latents: torch.Tensor | None = None
    memory_raymaps: torch.Tensor | None = None
    cache_states: torch.Tensor | None = None

    def hidden_states(self, noisy_latents: torch.Tensor) -> torch.Tensor:
        """Noisy latents ``(B, N, F, C, h, w)`` joined on channels with the conditioning."""
        return torch.cat([noisy_latents, self.image_latents], dim=3)

    def memory_states(self) -> torch.Tensor | None:
        """:func:`memory_states` of the memory latents (``None`` without memory)."""
        return None if self.memory_latents is None else memory_states(self.memory_latents)

    def transformer_inputs(self, noisy_latents: torch.Tensor) -> dict[str, Any]:
        """Keyword arguments of the transformer's forward, all but ``timestep`` (and text)."""
        return {
            "hidden_states": self.hidden_states(noisy_latents),
            "raymaps": self.raymaps,
            "memory_states": self.memory_states(),
            "memory_raymaps": self.memory_raymaps,
            "cache_states": self.cache_states,
        }
