"""The ShareVerse denoiser: a CogVideoX transformer with raymaps, cross-agent attention and memory.

Parameter names of the base model are kept exactly (``patch_embed``, ``transformer_blocks.i``,
``norm_out``, …), so a diffusers CogVideoX checkpoint loads straight into it; the additions live
in ``raymap_encoder`` and ``cross_agent_blocks`` and start as no-ops.

Token flow per agent (paper Eq. 1–2 and Sec. 3.4), for DiT block ``i``:

1. every ``raymap_every`` blocks, the encoded raymap of the chunk is added to the video tokens;
2. every ``cross_agent_every`` blocks, cross-agent attention over all agents' video tokens;
3. the CogVideoX block, whose attention also sees the memory tokens' keys and values.

Memory tokens run through the same blocks in their own stream that never sees text or video
tokens (the unidirectional mask) and is modulated with the embedding of timestep 0 (memory is
clean). The stream therefore depends on the memory alone: the sampler computes it once per
chunk (:meth:`ShareVerseTransformer.encode_memory`) and reuses its keys and values at every
denoising step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.transformers.cogvideox_transformer_3d import (
    CogVideoXBlock,
    CogVideoXTransformer3DModel,
)
from shareverse_env.models.attention import attend, project_qkv
from shareverse_env.models.cross_agent import CrossAgentAttention
from shareverse_env.models.raymap_encoder import RaymapEncoder
from shareverse_env.models.rope import Rope, cross_agent_positions, rope_table
from torch import nn

from shareverse_env.core.geometry import VAE_TEMPORAL_FACTOR

KeyValue = tuple[torch.Tensor, torch.Tensor]


class ShareVerseBlock(CogVideoXBlock):
    """A CogVideoX block whose attention can also read memory keys and values.

    Adds methods only (no parameters), so weights of a ``CogVideoXBlock`` load unchanged. With no
    memory its :meth:`forward` computes exactly what ``CogVideoXBlock.forward`` does.
    """

    def memory_forward(
        self, memory: torch.Tensor, temb: torch.Tensor, rope: Rope | None
    ) -> tuple[torch.Tensor, KeyValue]:
        """Advance the memory stream one block; return it and the keys/values video tokens read."""
        empty = memory[:, :0]
        normed, _, gate, _ = self.norm1(memory, empty, temb)
        q, k, v = project_qkv(self.attn1, normed, rope)
        memory = memory + gate * attend(self.attn1, q, k, v)
        normed, _, gate_ff, _ = self.norm2(memory, empty, temb)
        memory = memory + gate_ff * self.ff(normed)
        return memory, (k, v)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        image_rotary_emb: Rope | None = None,
        memory_kv: KeyValue | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        text_length = encoder_hidden_states.shape[1]
        normed, normed_text, gate, text_gate = self.norm1(
            hidden_states, encoder_hidden_states, temb
        )
        q, k, v = project_qkv(
            self.attn1, torch.cat([normed_text, normed], dim=1), image_rotary_emb, text_length
        )
        if memory_kv is not None:
            k = torch.cat([k, memory_kv[0]], dim=2)
            v = torch.cat([v, memory_kv[1]], dim=2)
        out = attend(self.attn1, q, k, v)
        hidden_states = hidden_states + gate * out[:, text_length:]
        encoder_hidden_states = encoder_hidden_states + text_gate * out[:, :text_length]

        normed, normed_text, gate_ff, text_gate_ff = self.norm2(
            hidden_states, encoder_hidden_states, temb
        )
        ff = self.ff(torch.cat([normed_text, normed], dim=1))
        hidden_states = hidden_states + gate_ff * ff[:, text_length:]
        encoder_hidden_states = encoder_hidden_states + text_gate_ff * ff[:, :text_length]
        return hidden_states, encoder_hidden_states


@dataclass
class MemoryContext:
    """Per-block memory keys and values for one chunk (``B·N`` sequences), reusable across steps."""

    keys_values: list[KeyValue]
    num_frames: int

    def repeat(self, times: int) -> MemoryContext:
        """The same context for a batch repeated ``times`` (classifier-free guidance)."""
        kv = [(k.repeat(times, 1, 1, 1), v.repeat(times, 1, 1, 1)) for k, v in self.keys_values]
        return MemoryContext(kv, self.num_frames)


class ShareVerseTransformer(CogVideoXTransformer3DModel):
    """CogVideoX-based multi-agent denoiser (see the module docstring for the token flow).

    All CogVideoX keywords are accepted; the ShareVerse ones are:

    - ``raymap_channels`` (24), ``raymap_every`` (2), ``raymap_origin_scale`` (0.1);
    - ``cross_agent_every`` (2): a cross-agent block before every such DiT block;
      ``cross_agent_positions``: ``"synchronous"`` (default, order-equivariant) or
      ``"concatenated"`` (the joined sequence numbered straight through);
    - ``memory_frames`` (4): memory latent frames take temporal positions ``0..memory_frames-1``
      and the chunk's latent frames follow them;
    - ``default_text_tokens`` (0): length of a learned prompt embedding used when no
      ``encoder_hidden_states`` are given (0: no text tokens at all);
    - ``cache_in_channels`` (0): channels of the scene-cache input (``cache_states``, built by
      :mod:`~shareverse_env.models.cache_input`) per latent frame; 0 means none, and such a
      model refuses a cache input. Patchified by ``cache_embed`` and added to the video
      tokens, which is the same as concatenating them to ``hidden_states`` with new input
      weights; those start at zero, so a model given cache channels computes exactly what it
      did without them until it is trained.

    Example (a tiny random model; two agents, three latent frames each):

    >>> from shareverse_env.models import ShareVerseTransformer, build_transformer
    >>> model = build_transformer("tiny")
    >>> x = torch.randn(1, 2, 3, model.config.in_channels, 8, 12)
    >>> model(x, torch.tensor([500])).sample.shape
    torch.Size([1, 2, 3, 4, 8, 12])
    """

    _no_split_modules: ClassVar[list[str]] = [
        "CogVideoXBlock",
        "CogVideoXPatchEmbed",
        "CrossAgentAttention",
    ]

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 30,
        attention_head_dim: int = 64,
        in_channels: int = 16,
        out_channels: int | None = 16,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        ofs_embed_dim: int | None = None,
        text_embed_dim: int = 4096,
        num_layers: int = 30,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        patch_size_t: int | None = None,
        temporal_compression_ratio: int = VAE_TEMPORAL_FACTOR,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = True,
        use_learned_positional_embeddings: bool = False,
        patch_bias: bool = True,
        raymap_channels: int = 24,
        raymap_every: int = 2,
        raymap_origin_scale: float = 0.1,
        cross_agent_every: int = 2,
        cross_agent_positions: str = "synchronous",
        memory_frames: int = 4,
        default_text_tokens: int = 0,
        cache_in_channels: int = 0,
    ) -> None:
        if not use_rotary_positional_embeddings:
            raise ValueError(
                "ShareVerse needs use_rotary_positional_embeddings=True (3D RoPE indexes the "
                "cross-agent sequence); CogVideoX checkpoints without RoPE are not supported"
            )
        if patch_size_t is not None:
            raise ValueError("patch_size_t (CogVideoX 1.5) is not supported; use patch_size_t=None")
        if cross_agent_positions not in ("synchronous", "concatenated"):
            raise ValueError(
                "cross_agent_positions must be 'synchronous' or 'concatenated'; "
                f"got {cross_agent_positions!r}"
            )
        if cache_in_channels < 0:
            raise ValueError(f"cache_in_channels must be >= 0; got {cache_in_channels}")
        for name, value in (
            ("raymap_every", raymap_every),
            ("cross_agent_every", cross_agent_every),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1; got {value}")
        super().__init__(
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            flip_sin_to_cos=flip_sin_to_cos,
            freq_shift=freq_shift,
            time_embed_dim=time_embed_dim,
            ofs_embed_dim=ofs_embed_dim,
            text_embed_dim=text_embed_dim,
            num_layers=num_layers,
            dropout=dropout,
            attention_bias=attention_bias,
            sample_width=sample_width,
            sample_height=sample_height,
            sample_frames=sample_frames,
            patch_size=patch_size,
            patch_size_t=patch_size_t,
            temporal_compression_ratio=temporal_compression_ratio,
            max_text_seq_length=max_text_seq_length,
            activation_fn=activation_fn,
            timestep_activation_fn=timestep_activation_fn,
            norm_elementwise_affine=norm_elementwise_affine,
            norm_eps=norm_eps,
            spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            use_rotary_positional_embeddings=use_rotary_positional_embeddings,
            use_learned_positional_embeddings=use_learned_positional_embeddings,
            patch_bias=patch_bias,
        )
        for block in self.transformer_blocks:
            block.__class__ = ShareVerseBlock  # methods only: parameters stay CogVideoX's
        dim = num_attention_heads * attention_head_dim
        self.raymap_encoder = RaymapEncoder(
            dim,
            patch_size,
            injections=len(range(0, num_layers, raymap_every)),
            in_channels=raymap_channels,
            origin_scale=raymap_origin_scale,
        )
        self.cross_agent_blocks = nn.ModuleList(
            CrossAgentAttention(
                dim,
                num_attention_heads,
                attention_head_dim,
                time_embed_dim,
                attention_bias=attention_bias,
                norm_elementwise_affine=norm_elementwise_affine,
                norm_eps=norm_eps,
            )
            for _ in range(0, num_layers, cross_agent_every)
        )
        self.default_text_embeds = (
            nn.Parameter(torch.zeros(1, default_text_tokens, text_embed_dim))
            if default_text_tokens
            else None
        )
        self.cache_embed = (
            nn.Conv2d(cache_in_channels, dim, kernel_size=patch_size, stride=patch_size)
            if cache_in_channels
            else None
        )
        self.init_shareverse_additions()

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def init_shareverse_additions(self) -> None:
        """Cross-agent blocks from their DiT blocks; raymap, cross-agent and cache input
        projections at zero."""
        every = self.config.cross_agent_every
        for j, cross in enumerate(self.cross_agent_blocks):
            if not cross.proj.weight.is_meta:
                cross.init_from_block(self.transformer_blocks[j * every])
                nn.init.zeros_(cross.proj.weight)
                nn.init.zeros_(cross.proj.bias)
        if not self.raymap_encoder.patch.weight.is_meta:
            self.raymap_encoder.zero_outputs()
        if self.cache_embed is not None and not self.cache_embed.weight.is_meta:
            self.zero_cache_input()

    def with_cache_input(self, channels: int) -> ShareVerseTransformer:
        """A copy of this model with a scene-cache input of ``channels`` channels.

        Every existing weight is copied; the new input projection starts at zero, so the copy
        computes exactly what this model computes (given any ``cache_states``) until trained.

        Example:
            >>> from shareverse_env.models import build_transformer
            >>> base = build_transformer("tiny")
            >>> cached = base.with_cache_input(7)
            >>> x = torch.randn(1, 2, 3, base.config.in_channels, 8, 12)
            >>> cache = torch.randn(1, 2, 3, 7, 8, 12)
            >>> t = torch.tensor([500])
            >>> bool(torch.equal(base(x, t).sample, cached(x, t, cache_states=cache).sample))
            True
        """
        if channels < 1:
            raise ValueError(f"channels must be >= 1; got {channels}")
        config = {k: v for k, v in self.config.items() if not k.startswith("_")}
        config["cache_in_channels"] = channels
        copy = type(self)(**config)
        state = self.state_dict()
        if self.cache_embed is not None:  # a different width: start the projection afresh
            state = {k: v for k, v in state.items() if not k.startswith("cache_embed.")}
        missing, unexpected = copy.load_state_dict(state, strict=False)
        if unexpected or any(not name.startswith("cache_embed.") for name in missing):
            raise RuntimeError(f"weights did not carry over: {missing[:5]} {unexpected[:5]}")
        copy.zero_cache_input()
        return copy.to(device=self.device, dtype=self.dtype)

    @torch.no_grad()
    def zero_cache_input(self) -> None:
        """Zero the scene-cache input projection (the other additions are left as they are)."""
        if self.cache_embed is not None:
            nn.init.zeros_(self.cache_embed.weight)
            nn.init.zeros_(self.cache_embed.bias)

    def shareverse_parameter_names(self) -> list[str]:
        """Names of the parameters that a plain CogVideoX checkpoint does not have."""
        prefixes = ("raymap_encoder.", "cross_agent_blocks.", "default_text_embeds", "cache_embed.")
        return [name for name, _ in self.named_parameters() if name.startswith(prefixes)]

    # ------------------------------------------------------------------ embeddings
    @property
    def inner_dim(self) -> int:
        return self.config.num_attention_heads * self.config.attention_head_dim

    def _grid(self, h: int, w: int) -> tuple[int, int]:
        p = self.config.patch_size
        return h // p, w // p

    def _base_grid(self) -> tuple[int, int]:
        p = self.config.patch_size
        return self.config.sample_height // p, self.config.sample_width // p

    def _rope(self, h: int, w: int, positions: torch.Tensor, device: torch.device) -> Rope:
        cos, sin = rope_table(
            self.config.attention_head_dim, self._grid(h, w), self._base_grid(), positions, device
        )
        return cos.to(device), sin.to(device)

    def _embed_frames(self, latents: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Patchify ``(B, F, C, h, w)`` to ``(B, F·hp·wp, dim)`` plus learned positions if any."""
        batch, frames, channels, h, w = latents.shape
        proj = self.patch_embed.proj
        x = proj(latents.reshape(batch * frames, channels, h, w).to(proj.weight.dtype))
        x = x.flatten(2).transpose(1, 2).reshape(batch, -1, x.shape[1])
        if self.config.use_learned_positional_embeddings:
            table = self._learned_video_positions()
            x = x + table[positions].reshape(1, -1, x.shape[-1]).to(x.dtype)
        return x

    def _learned_video_positions(self) -> torch.Tensor:
        """The learned table as ``(latent frames, hp·wp, dim)`` (13 frames for CogVideoX-5B-I2V)."""
        table = self.patch_embed.pos_embedding[0, self.config.max_text_seq_length :]
        hp, wp = self._base_grid()
        return table.reshape(-1, hp * wp, table.shape[-1])

    def _embed_text(self, encoder_hidden_states: torch.Tensor | None, batch: int) -> torch.Tensor:
        if encoder_hidden_states is None:
            if self.default_text_embeds is None:
                dim = self.config.text_embed_dim
                encoder_hidden_states = self.patch_embed.text_proj.weight.new_zeros(batch, 0, dim)
            else:
                encoder_hidden_states = self.default_text_embeds.expand(batch, -1, -1)
        text = self.patch_embed.text_proj(encoder_hidden_states)
        if self.config.use_learned_positional_embeddings and text.shape[1]:
            text = text + self.patch_embed.pos_embedding[:, : text.shape[1]].to(text.dtype)
        return text

    def _time_embedding(self, timestep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        emb = self.time_embedding(self.time_proj(timestep).to(dtype))
        if self.ofs_embedding is not None:  # CogVideoX 1.5 only; kept for completeness
            emb = emb + self.ofs_embedding(self.ofs_proj(torch.zeros_like(timestep)).to(dtype))
        return emb

    # ------------------------------------------------------------------ validation
    def _check_latents(self, name: str, x: torch.Tensor, agents: int | None = None) -> None:
        c = self.config
        if x.ndim != 6:
            raise ValueError(
                f"{name} must have shape (batch, agents, frames, {c.in_channels}, h, w); "
                f"got {tuple(x.shape)}"
            )
        if x.shape[3] != c.in_channels:
            raise ValueError(
                f"{name} must have {c.in_channels} channels (noisy + image latents); "
                f"got {x.shape[3]}"
            )
        h, w = x.shape[-2:]
        if h % c.patch_size or w % c.patch_size:
            raise ValueError(
                f"{name} latent size {h}x{w} must be divisible by the patch size {c.patch_size}"
            )
        if c.use_learned_positional_embeddings and (h, w) != (c.sample_height, c.sample_width):
            raise ValueError(
                f"{name} latent size {h}x{w} cannot be served: this model's learned positional "
                f"embedding is sized for {c.sample_height}x{c.sample_width} latents"
            )
        if agents is not None and x.shape[1] != agents:
            raise ValueError(f"{name} has {x.shape[1]} agents; the chunk has {agents}")

    def _check_raymaps(self, name: str, rays: torch.Tensor, latents: torch.Tensor) -> None:
        expected = (*latents.shape[:3], self.config.raymap_channels, *latents.shape[-2:])
        if tuple(rays.shape) != expected:
            raise ValueError(f"{name} must have shape {expected}; got {tuple(rays.shape)}")
        if not torch.isfinite(rays).all():
            raise ValueError(f"{name} contains non-finite values")

    def _check_cache(self, cache_states: torch.Tensor | None, latents: torch.Tensor) -> None:
        channels = self.config.cache_in_channels
        if channels and cache_states is None:
            raise ValueError(
                f"this model was built with cache_in_channels={channels} and needs cache_states "
                f"(batch, agents, frames, {channels}, h, w): the scene cache rendered into the "
                "chunk's cameras (shareverse_env.models.cache_input); run it with a scene cache"
            )
        if cache_states is None:
            return
        if not channels:
            raise ValueError(
                "cache_states given, but this model has no cache input (cache_in_channels=0)"
            )
        expected = (*latents.shape[:3], channels, *latents.shape[-2:])
        if tuple(cache_states.shape) != expected:
            raise ValueError(
                f"cache_states must have shape {expected}; got {tuple(cache_states.shape)}"
            )
        if not torch.isfinite(cache_states).all():
            raise ValueError("cache_states contains non-finite values")

    def _embed_cache(self, cache_states: torch.Tensor) -> torch.Tensor:
        """Patchify cache inputs ``(B, F, Cc, h, w)`` to ``(B, F·hp·wp, dim)``."""
        batch, frames, channels, h, w = cache_states.shape
        proj = self.cache_embed
        x = proj(cache_states.reshape(batch * frames, channels, h, w).to(proj.weight.dtype))
        return x.flatten(2).transpose(1, 2).reshape(batch, -1, x.shape[1])

    def _frame_positions(self, frames: int, offset: int) -> torch.Tensor:
        positions = torch.arange(frames) + offset
        if self.config.use_learned_positional_embeddings:
            available = self._learned_video_positions().shape[0]
            if frames + offset > available:
                raise ValueError(
                    f"{frames} latent frames after {offset} memory positions exceed the learned "
                    f"positional embedding's {available} frames"
                )
        return positions

    # ------------------------------------------------------------------ memory stream
    def encode_memory(
        self, memory_states: torch.Tensor, memory_raymaps: torch.Tensor | None = None
    ) -> MemoryContext:
        """Run the memory stream for ``(B, N, M, in_channels, h, w)`` memory latents.

        Depends on the memory alone (the unidirectional mask), so one call serves every
        denoising step of a chunk.
        """
        self._check_latents("memory_states", memory_states)
        batch, agents, frames, _, h, w = memory_states.shape
        if frames > self.config.memory_frames:
            raise ValueError(
                f"memory_states has {frames} frames; this model takes at most "
                f"{self.config.memory_frames}"
            )
        if memory_raymaps is not None:
            self._check_raymaps("memory_raymaps", memory_raymaps, memory_states)
        sequences = batch * agents
        device = memory_states.device
        positions = self._frame_positions(frames, 0)
        rope = self._rope(h, w, positions, device)
        memory = self._embed_frames(memory_states.reshape(sequences, frames, -1, h, w), positions)
        rays = None
        if memory_raymaps is not None:
            rays = self.raymap_encoder(memory_raymaps.reshape(sequences, frames, -1, h, w))
        temb = self._time_embedding(
            torch.zeros(sequences, device=device, dtype=torch.long), memory.dtype
        )
        keys_values = []
        for i, block in enumerate(self.transformer_blocks):
            if rays is not None and i % self.config.raymap_every == 0:
                memory = memory + rays[i // self.config.raymap_every]
            memory, kv = block.memory_forward(memory, temb, rope)
            keys_values.append(kv)
        return MemoryContext(keys_values, frames)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor | int | float,
        raymaps: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        memory_states: torch.Tensor | None = None,
        memory_raymaps: torch.Tensor | None = None,
        memory_context: MemoryContext | None = None,
        frame_offset: int | None = None,
        cache_states: torch.Tensor | None = None,
        return_dict: bool = True,
        **unused: Any,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        """Predict ``(B, N, F, out_channels, h, w)`` for all agents of a chunk at once.

        ``hidden_states`` ``(B, N, F, in_channels, h, w)``: noisy latents concatenated on
        channels with the image-conditioning latents (CogVideoX-I2V). ``timestep`` ``(B,)``.
        ``raymaps`` ``(B, N, F, raymap_channels, h, w)``. ``encoder_hidden_states`` ``(B, T,
        text_embed_dim)`` shared by the agents. Memory: either ``memory_states`` (+
        ``memory_raymaps``) or a precomputed ``memory_context``. ``frame_offset``: temporal
        position of the first chunk frame (default ``memory_frames``). ``cache_states``
        ``(B, N, F, cache_in_channels, h, w)``: required when ``cache_in_channels > 0``,
        refused otherwise.
        """
        if unused:
            raise TypeError(f"unexpected arguments: {sorted(unused)}")
        self._check_latents("hidden_states", hidden_states)
        batch, agents, frames, _, h, w = hidden_states.shape
        sequences = batch * agents
        device, dtype = hidden_states.device, hidden_states.dtype
        if raymaps is not None:
            self._check_raymaps("raymaps", raymaps, hidden_states)
        self._check_cache(cache_states, hidden_states)
        if memory_states is not None:
            if memory_context is not None:
                raise ValueError("pass memory_states or memory_context, not both")
            self._check_latents("memory_states", memory_states, agents)
            if memory_states.shape[0] != batch or memory_states.shape[-2:] != (h, w):
                raise ValueError(
                    f"memory_states {tuple(memory_states.shape)} does not match the chunk's "
                    f"batch {batch} and latent size {h}x{w}"
                )
            memory_context = self.encode_memory(memory_states, memory_raymaps)
        if memory_context is not None and memory_context.keys_values[0][0].shape[0] != sequences:
            raise ValueError(
                f"memory_context holds {memory_context.keys_values[0][0].shape[0]} sequences; "
                f"the chunk has batch×agents = {sequences}"
            )

        timestep = torch.as_tensor(timestep, device=device)
        if timestep.ndim == 0:
            timestep = timestep.expand(batch)
        if timestep.shape != (batch,):
            raise ValueError(f"timestep must have shape ({batch},); got {tuple(timestep.shape)}")
        temb = self._time_embedding(timestep, dtype)  # (B, time_dim)
        temb_seq = temb.repeat_interleave(agents, dim=0)  # (B·N, time_dim)

        if encoder_hidden_states is not None and (
            encoder_hidden_states.ndim != 3
            or encoder_hidden_states.shape[0] != batch
            or encoder_hidden_states.shape[2] != self.config.text_embed_dim
        ):
            raise ValueError(
                f"encoder_hidden_states must have shape ({batch}, tokens, "
                f"{self.config.text_embed_dim}); got {tuple(encoder_hidden_states.shape)}"
            )
        text = self._embed_text(encoder_hidden_states, batch).repeat_interleave(agents, dim=0)

        offset = self.config.memory_frames if frame_offset is None else frame_offset
        positions = self._frame_positions(frames, offset)
        video = self._embed_frames(hidden_states.reshape(sequences, frames, -1, h, w), positions)
        if cache_states is not None:
            video = video + self._embed_cache(cache_states.reshape(sequences, frames, -1, h, w))
        video = self.embedding_dropout(video)
        rope = self._rope(h, w, positions, device)
        cross_positions = cross_agent_positions(
            agents, positions, self.config.cross_agent_positions
        )
        cross_rope = self._rope(h, w, cross_positions, device)
        rays = None
        if raymaps is not None:
            rays = self.raymap_encoder(raymaps.reshape(sequences, frames, -1, h, w))

        length = video.shape[1]
        for i, block in enumerate(self.transformer_blocks):
            if rays is not None and i % self.config.raymap_every == 0:
                video = video + rays[i // self.config.raymap_every]
            if i % self.config.cross_agent_every == 0:
                cross = self.cross_agent_blocks[i // self.config.cross_agent_every]
                video = cross(video.reshape(batch, agents, length, -1), temb, cross_rope)
                video = video.reshape(sequences, length, -1)
            memory_kv = memory_context.keys_values[i] if memory_context is not None else None
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                video, text = self._gradient_checkpointing_func(
                    block, video, text, temb_seq, rope, memory_kv
                )
            else:
                video, text = block(video, text, temb_seq, rope, memory_kv)

        video = self.norm_final(video)
        video = self.norm_out(video, temb=temb_seq)
        video = self.proj_out(video)
        p = self.config.patch_size
        out = video.reshape(sequences, frames, h // p, w // p, -1, p, p)
        out = out.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)
        out = out.reshape(batch, agents, frames, *out.shape[2:])
        if not return_dict:
            return (out,)
        return Transformer2DModelOutput(sample=out)
