"""Raymap encoder: packed 24-channel raymaps to DiT-width tokens (paper Sec. 3.2)."""

from __future__ import annotations

import torch
from torch import nn


class RaymapEncoder(nn.Module):
    """Patchify raymaps like the video latents and project them once per injection point.

    Input ``(B, F, C, h, w)`` at latent resolution (``C = 24``: four pixel frames × ``[r_d, r_o]``);
    output ``(injections, B, F·(h/p)·(w/p), dim)`` in the video tokens' frame → row → column order.
    The ray origins are multiplied by ``origin_scale`` so that metres become O(1). Every output
    projection starts at zero, so a fresh encoder leaves the base model unchanged.

    >>> enc = RaymapEncoder(dim=32, patch_size=2, injections=2)
    >>> enc(torch.randn(1, 3, 24, 4, 6)).shape
    torch.Size([2, 1, 18, 32])
    >>> float(enc(torch.randn(1, 3, 24, 4, 6)).detach().abs().max())
    0.0
    """

    def __init__(
        self,
        dim: int,
        patch_size: int,
        injections: int,
        in_channels: int = 24,
        origin_scale: float = 0.1,
    ) -> None:
        super().__init__()
        if in_channels % 6:
            raise ValueError(f"raymap channels must be a multiple of 6; got {in_channels}")
        self.in_channels = in_channels
        self.patch = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.act = nn.SiLU()
        self.outputs = nn.ModuleList(nn.Linear(dim, dim) for _ in range(injections))
        scale = torch.ones(in_channels)
        for group in range(in_channels // 6):
            scale[group * 6 + 3 : group * 6 + 6] = origin_scale
        self.register_buffer("channel_scale", scale, persistent=False)
        self.zero_outputs()

    def zero_outputs(self) -> None:
        """Zero every output projection (the paper's initialisation)."""
        for layer in self.outputs:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, raymaps: torch.Tensor) -> torch.Tensor:
        batch, frames, channels, h, w = raymaps.shape
        if channels != self.in_channels:
            raise ValueError(f"raymaps must have {self.in_channels} channels; got {channels}")
        x = raymaps.reshape(batch * frames, channels, h, w) * self.channel_scale[:, None, None]
        x = self.act(self.patch(x.to(self.patch.weight.dtype)))  # (B·F, dim, h/p, w/p)
        x = x.flatten(2).transpose(1, 2).reshape(batch, -1, x.shape[1])
        return torch.stack([layer(x) for layer in self.outputs])
