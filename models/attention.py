"""Attention over token groups with CogVideoX's projections, qk-norm and rotary embedding.

ShareVerse's unidirectional memory mask ("generated tokens see memory and themselves, memory
tokens see only memory") has a block structure, so it is computed as two unmasked attention
calls instead of one masked call: memory queries against memory keys, and text + video queries
against every key. This is exactly the masked result and never builds an ``S×S`` mask, which at
full size would be gigabytes per batch element.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import apply_rotary_emb
from shareverse_env.models.rope import Rope


def project_qkv(
    attn: Attention, tokens: torch.Tensor, rope: Rope | None = None, skip: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values ``(B, heads, S, head_dim)``; RoPE on tokens after the first ``skip``."""
    batch = tokens.shape[0]
    heads = attn.heads
    q, k, v = attn.to_q(tokens), attn.to_k(tokens), attn.to_v(tokens)
    head_dim = k.shape[-1] // heads
    q = q.view(batch, -1, heads, head_dim).transpose(1, 2)
    k = k.view(batch, -1, heads, head_dim).transpose(1, 2)
    v = v.view(batch, -1, heads, head_dim).transpose(1, 2)
    if attn.norm_q is not None:
        q = attn.norm_q(q)
    if attn.norm_k is not None:
        k = attn.norm_k(k)
    if rope is not None:
        if skip:
            q = torch.cat([q[:, :, :skip], apply_rotary_emb(q[:, :, skip:], rope)], dim=2)
            k = torch.cat([k[:, :, :skip], apply_rotary_emb(k[:, :, skip:], rope)], dim=2)
        else:
            q, k = apply_rotary_emb(q, rope), apply_rotary_emb(k, rope)
    return q, k, v


def attend(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention and the output projection: ``(B, S_q, dim)``."""
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
    out = out.transpose(1, 2).flatten(2)
    out = attn.to_out[0](out)
    return attn.to_out[1](out)
