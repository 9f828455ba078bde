"""3D rotary position tables for memory, chunk and cross-agent token sequences.

CogVideoX applies RoPE to video tokens only, with the head dimension split over (time, row,
column). ShareVerse needs the same tables for three sequences: the chunk's own latent frames,
the retrieved memory frames (which sit before the chunk on the time axis), and the agents'
chunks joined along time for cross-agent attention.
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import get_3d_rotary_pos_embed

Rope = tuple[torch.Tensor, torch.Tensor]


def _crop_region(grid_hw: tuple[int, int], base_hw: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """CogVideoX 1.0's crop of the base grid that a smaller grid's positions span."""
    h, w = grid_hw
    bh, bw = base_hw
    if h / w > bh / bw:
        rh, rw = bh, round(bh / h * w)
    else:
        rw, rh = bw, round(bw / w * h)
    top, left = round((bh - rh) / 2.0), round((bw - rw) / 2.0)
    return (top, left), (top + rh, left + rw)


def rope_table(
    head_dim: int,
    grid_hw: tuple[int, int],
    base_hw: tuple[int, int],
    frame_positions: torch.Tensor | list[int],
    device: torch.device | None = None,
) -> Rope:
    """``(cos, sin)`` of shape ``(len(frame_positions)·h·w, head_dim)`` in frame → row → column order.

    ``frame_positions`` are temporal indices (any order, repeats allowed); the spatial grid is
    placed on the model's base grid exactly as diffusers' CogVideoX pipelines do, so that a plain
    CogVideoX transformer given the table for frames ``0..F-1`` sees identical positions.

    >>> cos, sin = rope_table(16, (4, 6), (4, 6), [0, 1, 2])
    >>> tuple(cos.shape)
    (72, 16)
    """
    positions = torch.as_tensor(frame_positions, dtype=torch.long)
    if positions.ndim != 1 or positions.numel() == 0:
        raise ValueError(
            f"frame_positions must be a non-empty 1-D list; got {tuple(positions.shape)}"
        )
    if int(positions.min()) < 0:
        raise ValueError("frame_positions must be non-negative")
    span = int(positions.max()) + 1
    cos, sin = get_3d_rotary_pos_embed(
        embed_dim=head_dim,
        crops_coords=_crop_region(grid_hw, base_hw),
        grid_size=grid_hw,
        temporal_size=span,
        device=device,
    )
    per_frame = grid_hw[0] * grid_hw[1]
    index = (positions[:, None] * per_frame + torch.arange(per_frame)[None, :]).reshape(-1)
    index = index.to(cos.device)
    return cos[index], sin[index]


def cross_agent_positions(
    num_agents: int, frame_positions: torch.Tensor, mode: str
) -> torch.Tensor:
    """Temporal indices of the agents' chunks joined along time for cross-agent attention.

    ``"synchronous"`` gives every agent the chunk's own frame indices, so frames captured at the
    same instant share a temporal position and the attention is equivariant to the agents'
    order. ``"concatenated"`` numbers the joined sequence straight through (agent ``a``'s frame
    ``f`` at ``a·F + f``), the literal reading of the paper's Eq. 1.
    """
    frame_positions = torch.as_tensor(frame_positions, dtype=torch.long)
    if mode == "synchronous":
        return frame_positions.repeat(num_agents)
    if mode == "concatenated":
        span = int(frame_positions.max()) + 1
        offsets = torch.arange(num_agents).repeat_interleave(frame_positions.numel()) * span
        return frame_positions.repeat(num_agents) + offsets
    raise ValueError(f"cross_agent_positions must be 'synchronous' or 'concatenated'; got {mode!r}")
