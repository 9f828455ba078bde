"""Cross-agent collaborative attention (paper Sec. 3.3, Eq. 1–2)."""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention, CogVideoXAttnProcessor2_0
from diffusers.models.normalization import CogVideoXLayerNormZero
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock
from shareverse_env.models.attention import attend, project_qkv
from shareverse_env.models.rope import Rope
from torch import nn


class CrossAgentAttention(nn.Module):
    """Attention over all agents' tokens joined along time, with a zero-initialised projection.

    ``forward(tokens (B, N, S, dim), temb (B, time_dim), rope)`` joins the N agents' sequences
    into one of length ``N·S``, applies the timestep-modulated norm and attention of a CogVideoX
    block (3D RoPE over the joined sequence), projects the result with ``proj`` (zero at
    initialisation), splits it back per agent and adds it as a residual. One batched call serves
    all agents.

    >>> layer = CrossAgentAttention(dim=32, heads=2, head_dim=16, time_embed_dim=8)
    >>> x = torch.randn(1, 2, 5, 32)
    >>> torch.equal(layer(x, torch.randn(1, 8), None), x)
    True
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        time_embed_dim: int,
        attention_bias: bool = True,
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm = CogVideoXLayerNormZero(
            time_embed_dim, dim, norm_elementwise_affine, norm_eps, bias=True
        )
        self.attn = Attention(
            query_dim=dim,
            dim_head=head_dim,
            heads=heads,
            qk_norm="layer_norm",
            eps=1e-6,
            bias=attention_bias,
            out_bias=True,
            processor=CogVideoXAttnProcessor2_0(),
        )
        self.proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def init_from_block(self, block: CogVideoXBlock) -> None:
        """Copy a DiT block's norm and attention weights (the paper's initialisation)."""
        self.norm.load_state_dict(block.norm1.state_dict())
        self.attn.load_state_dict(block.attn1.state_dict())

    def forward(self, tokens: torch.Tensor, temb: torch.Tensor, rope: Rope | None) -> torch.Tensor:
        batch, agents, length, dim = tokens.shape
        joined = tokens.reshape(batch, agents * length, dim)
        normed, _, gate, _ = self.norm(joined, joined[:, :0], temb)
        q, k, v = project_qkv(self.attn, normed, rope)
        update = self.proj(gate * attend(self.attn, q, k, v))
        return tokens + update.reshape(batch, agents, length, dim)
