"""The ShareVerse sampler: one autoregressive chunk for all agents of a shared world."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler
from shareverse_env.models.cache_input import cache_states, empty_cache_states
from shareverse_env.models.conditioning import (
    CHUNK_LATENT_FRAMES,
    ChunkConditioning,
    pad_image_latents,
    transformer_in_channels,
)
from shareverse_env.models.configs import build_scheduler, build_transformer, build_vae, get_spec
from shareverse_env.models.pipeline_folder import (
    PipelineComponents,
    PipelineMeta,
    read_components,
    write_components,
)
from shareverse_env.models.transformer import MemoryContext, ShareVerseTransformer
from shareverse_env.models.vae import decode_chunk, encode_images
from tqdm.auto import tqdm

from shareverse_env.core.cache_guide import CacheGuide, NoCache
from shareverse_env.core.geometry import (
    CHUNK_FRAMES,
    VAE_SPATIAL_FACTOR,
    CameraRig,
    check_finite_poses,
    pack_raymaps,
    raymaps,
)


@dataclass
class MemoryInput:
    """Retrieved memory for every agent: scaled image latents ``(N, M, C, h, w)`` and poses ``(N, M, 3)``."""

    latents: torch.Tensor
    poses: np.ndarray


@dataclass
class ChunkRequest:
    """One world's chunk for :meth:`ShareVersePipeline.generate_batch`.

    ``images`` ``(N, 2H, 2W, 3)`` uint8 conditioning frames, ``poses`` ``(N, 29, 3)`` planned ego
    poses, ``memory`` the world's retrieved memory (or ``None``), ``generator`` seeds the world's
    initial noise, ``cache`` the scene cache rendered into the chunk's cameras (required by a
    model with a cache input, refused by one without; :data:`~.cache_input.NO_CACHE` runs a
    cache model with nothing known) — the arguments of
    :meth:`ShareVersePipeline.__call__` for one world.
    """

    images: np.ndarray
    poses: np.ndarray
    memory: MemoryInput | None = None
    generator: torch.Generator | None = None
    cache: CacheGuide | NoCache | None = None


@dataclass
class _CheckedRequest:
    images: np.ndarray
    poses: np.ndarray
    memory_poses: np.ndarray | None  # None: no memory (or an empty one)
    cache: CacheGuide | NoCache | None = None

    @property
    def agents(self) -> int:
        return self.images.shape[0]

    @property
    def memory_frames(self) -> int:
        return 0 if self.memory_poses is None else self.memory_poses.shape[1]


@dataclass
class _EncodedWorld:
    """One world after the ``encode`` phase, on the device: image latents ``(1, N, F, C, h, w)``,
    raymaps ``(1, N, F, 24, h, w)`` and memory raymaps ``(N, M, 24, h, w)`` (or ``None``)."""

    image_latents: torch.Tensor
    raymaps: torch.Tensor
    memory_raymaps: torch.Tensor | None
    cache_states: torch.Tensor | None = None


@dataclass
class ChunkOutput:
    """One generated chunk.

    ``frames`` ``(N, 28, 2H, 2W, 3)`` uint8: the new frames (the conditioning frame excluded).
    ``frame_latents`` ``(N, 28, C, h, w)``: each new frame encoded as one image latent (scaled),
    ready to archive in the spatial memory (``None`` when not requested). ``latents``
    ``(N, 8, C, h, w)``: the denoised chunk latents. ``timings``: seconds per stage.
    """

    frames: np.ndarray
    frame_latents: torch.Tensor | None
    latents: torch.Tensor
    timings: dict[str, float] = field(default_factory=dict)


class ShareVersePipeline:
    """Generates one chunk for N agents: I2V conditioning, raymaps, memory, DDIM, causal decode.

    Args:
        transformer: the denoiser.
        vae: the causal CogVideoX VAE (8× spatial, 4× temporal).
        scheduler: a CogVideoX DDIM scheduler (v-prediction).
        view_hw: size of one camera view; tiled frames are ``(2H, 2W)``.
        rig: the camera rig the raymaps describe.
        num_inference_steps, guidance_scale: sampler defaults.

    Example (random tiny model, two agents driving straight):

    >>> import numpy as np
    >>> from shareverse_env.core.geometry import plan_chunk
    >>> pipe = ShareVersePipeline.from_config_name("tiny", seed=0)
    >>> images = np.zeros((2, *pipe.frame_shape), dtype=np.uint8)
    >>> poses = np.stack([plan_chunk(np.zeros(3), np.array([8.0, 0, 0]))] * 2)
    >>> out = pipe(images, poses, generator=torch.Generator().manual_seed(0), progress=False)
    >>> out.frames.shape
    (2, 28, 64, 96, 3)
    """

    def __init__(
        self,
        transformer: ShareVerseTransformer,
        vae: AutoencoderKLCogVideoX,
        scheduler: CogVideoXDDIMScheduler,
        view_hw: tuple[int, int],
        rig: CameraRig | None = None,
        num_inference_steps: int = 8,
        guidance_scale: float = 1.0,
    ) -> None:
        height, width = view_hw
        if height % 16 or width % 16 or height <= 0 or width <= 0:
            raise ValueError(f"view_hw must be positive multiples of 16; got {view_hw}")
        latent_hw = (2 * height // VAE_SPATIAL_FACTOR, 2 * width // VAE_SPATIAL_FACTOR)
        cfg = transformer.config
        if cfg.use_learned_positional_embeddings and latent_hw != (
            cfg.sample_height,
            cfg.sample_width,
        ):
            raise ValueError(
                f"view_hw {view_hw} gives {latent_hw} latents; this transformer serves only "
                f"{cfg.sample_height}x{cfg.sample_width} (tiled "
                f"{cfg.sample_height * VAE_SPATIAL_FACTOR}x{cfg.sample_width * VAE_SPATIAL_FACTOR} "
                "frames)"
            )
        latent_channels = vae.config.latent_channels
        in_channels = transformer_in_channels(latent_channels)
        if cfg.in_channels != in_channels or cfg.out_channels != latent_channels:
            raise ValueError(
                f"transformer channels (in {cfg.in_channels}, out {cfg.out_channels}) do not fit "
                f"a VAE with {latent_channels} latent channels (expected in {in_channels},"
                f" out {latent_channels})"
            )
        self.transformer = transformer.eval()
        self.vae = vae.eval()
        self.scheduler = scheduler
        self.view_hw = (int(height), int(width))
        self.rig = rig or CameraRig()
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = float(guidance_scale)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config_name(cls, name: str, seed: int = 0, **kwargs: Any) -> ShareVersePipeline:
        """A randomly initialised pipeline of a named size (``"tiny"``, ``"small"``, …)."""
        spec = get_spec(name)
        kwargs.setdefault("num_inference_steps", spec.num_inference_steps)
        with torch.random.fork_rng(devices=[]):  # seed the weights, leave the caller's RNG alone
            torch.manual_seed(seed)
            transformer, vae = build_transformer(name), build_vae(name)
        return cls(transformer, vae, build_scheduler(**spec.scheduler), spec.view_hw, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike[str],
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> ShareVersePipeline:
        """Load a folder written by :meth:`save_pretrained` (safetensors + JSON only), then move
        it to ``device`` / ``dtype`` (the format: :mod:`~shareverse_env.models.pipeline_folder`)."""
        parts = read_components(folder)
        pipe = cls(
            parts.transformer,
            parts.vae,
            parts.scheduler,
            parts.meta.view_hw,
            rig=parts.meta.rig,
            num_inference_steps=parts.meta.num_inference_steps,
            guidance_scale=parts.meta.guidance_scale,
        )
        return pipe.to(device, dtype)

    def save_pretrained(self, folder: str | os.PathLike[str]) -> None:
        """Write transformer, VAE, scheduler and ``pipeline.json`` atomically to ``folder``;
        the format: :mod:`~shareverse_env.models.pipeline_folder`."""
        meta = PipelineMeta.of(self)
        write_components(
            folder, PipelineComponents(self.transformer, self.vae, self.scheduler, meta)
        )

    def to(
        self, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> ShareVersePipeline:
        """Move (and optionally cast) the transformer and VAE; returns ``self``."""
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        if kwargs:
            self.transformer.to(**kwargs)
            self.vae.to(**kwargs)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (2 * self.view_hw[0], 2 * self.view_hw[1], 3)

    @property
    def latent_hw(self) -> tuple[int, int]:
        return (
            self.frame_shape[0] // VAE_SPATIAL_FACTOR,
            self.frame_shape[1] // VAE_SPATIAL_FACTOR,
        )

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    # ------------------------------------------------------------------ pieces
    def _check_frames(self, name: str, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.shape[-3:] != self.frame_shape:
            raise ValueError(
                f"{name} must be uint8 (..., {', '.join(map(str, self.frame_shape))}) tiled "
                f"frames; got {frames.dtype} {frames.shape}"
            )
        return frames

    @torch.no_grad()
    def encode_frames(self, frames: np.ndarray, batch_size: int = 64) -> torch.Tensor:
        """uint8 tiled frames ``(B, 2H, 2W, 3)`` → scaled image latents ``(B, C, h, w)``."""
        frames = self._check_frames("frames", frames)
        out = []
        for start in range(0, len(frames), batch_size):
            x = torch.from_numpy(frames[start : start + batch_size]).to(self.device)
            x = x.permute(0, 3, 1, 2).to(self.vae.dtype) / 127.5 - 1.0
            out.append(encode_images(self.vae, x)[:, :, 0] * self.scaling_factor)
        return torch.cat(out)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """Scaled chunk latents ``(B, F_lat, C, h, w)`` → uint8 frames ``(B, 1 + 4(F_lat-1), 2H, 2W, 3)``."""
        video = decode_chunk(self.vae, latents.permute(0, 2, 1, 3, 4) / self.scaling_factor)
        video = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return video.permute(0, 2, 3, 4, 1).cpu().numpy()

    def packed_raymaps(
        self, poses: np.ndarray, memory_poses: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`chunk_raymaps` as float32 CPU tensors: a training loader's threads build them
        ahead of the step, and the step moves them to the device."""
        rays, center = raymaps(poses, self.rig, self.view_hw, downsample=VAE_SPATIAL_FACTOR)
        packed = torch.from_numpy(pack_raymaps(rays)).permute(0, 1, 4, 2, 3)
        if memory_poses is None:
            return packed, None
        agents, count = memory_poses.shape[:2]
        mem_rays, _ = raymaps(
            memory_poses.reshape(agents * count, 1, 3),
            self.rig,
            self.view_hw,
            downsample=VAE_SPATIAL_FACTOR,
            center=center,
        )
        mem = torch.from_numpy(pack_raymaps(mem_rays)).permute(0, 1, 4, 2, 3)
        return packed, mem.reshape(agents, count, *mem.shape[2:])

    def chunk_raymaps(
        self, poses: np.ndarray, memory_poses: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Packed raymaps ``(N, F_lat, 24, h, w)`` for the chunk and ``(N, M, 24, h, w)`` for memory.

        Both share the chunk's mean-normalised origin, so memory and all agents live in one frame.
        """
        packed, memory_packed = self.packed_raymaps(poses, memory_poses)
        device, dtype = self.device, self.dtype
        return packed.to(device, dtype), (
            None if memory_packed is None else memory_packed.to(device, dtype)
        )

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def __call__(
        self,
        images: np.ndarray,
        poses: np.ndarray,
        memory: MemoryInput | None = None,
        generator: torch.Generator | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        progress: bool = True,
        encode_for_memory: bool = True,
        cache: CacheGuide | NoCache | None = None,
    ) -> ChunkOutput:
        """Generate one chunk for all agents.

        Args:
            images: conditioning frames ``(N, 2H, 2W, 3)`` uint8 (each agent's last frame).
            poses: planned ego poses ``(N, 29, 3)``; row 0 is the conditioning frame's pose.
            memory: retrieved memory frames, or ``None`` to generate without memory.
            generator: seeds the initial noise (CPU generator for reproducibility).
            num_inference_steps, guidance_scale: override the pipeline defaults.
            prompt_embeds: ``(1, T, text_embed_dim)`` optional; ``negative_prompt_embeds`` for
                classifier-free guidance (default: the model's default text).
            progress: show a tqdm bar over denoising steps.
            encode_for_memory: also encode each new frame as an image latent for the cache.
            cache: the scene cache rendered into the chunk's cameras, for a model with a cache
                input (:mod:`~shareverse_env.models.cache_input`); ``NO_CACHE`` runs such a
                model with nothing known (the all-zero input its training drops to).
        """
        return self.generate_batch(
            [ChunkRequest(images, poses, memory, generator, cache)],
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            progress=progress,
            encode_for_memory=encode_for_memory,
        )[0]

    @torch.no_grad()
    def generate_batch(
        self,
        requests: Sequence[ChunkRequest],
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        progress: bool = True,
        encode_for_memory: bool = True,
    ) -> list[ChunkOutput]:
        """Generate one chunk for each of several independent worlds in one call.

        Each request is one world: its agents attend to each other (cross-agent attention), share
        one raymap normalisation and read their own memory; worlds never see each other. Worlds
        take the transformer's batch dimension, so one forward per denoising step serves all of
        them; worlds whose agent count or memory length differ cannot share a tensor, and each
        such group gets its own forward. The VAE encodes and decodes world by world.
        Keywords are those of :meth:`__call__` and apply to every world. Each output's
        ``timings`` are those of the whole batch.

        Example (two worlds, one and two agents):

        >>> from shareverse_env.core.geometry import plan_chunk
        >>> pipe = ShareVersePipeline.from_config_name("tiny", seed=0)
        >>> def world(agents, seed):
        ...     images = np.zeros((agents, *pipe.frame_shape), dtype=np.uint8)
        ...     poses = np.stack([plan_chunk(np.zeros(3), np.array([8.0, 0, 0]))] * agents)
        ...     return ChunkRequest(images, poses, generator=torch.Generator().manual_seed(seed))
        >>> outs = pipe.generate_batch([world(1, 0), world(2, 1)], progress=False)
        >>> [out.frames.shape for out in outs]
        [(1, 28, 64, 96, 3), (2, 28, 64, 96, 3)]
        """
        if len(requests) == 0:
            return []
        timings: dict[str, float] = {}
        checked = [
            self._check_request(r, None if len(requests) == 1 else f"request {i}: ")
            for i, r in enumerate(requests)
        ]
        steps = self.num_inference_steps if num_inference_steps is None else num_inference_steps
        if steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1; got {steps}")
        guidance = self.guidance_scale if guidance_scale is None else float(guidance_scale)
        if guidance > 1.0 and prompt_embeds is None:
            raise ValueError("guidance_scale > 1 needs prompt_embeds (there is nothing to guide)")

        start = time.perf_counter()
        encoded = [self._encode_world(c) for c in checked]
        timings["encode"] = time.perf_counter() - start

        # Worlds that can share one tensor: same agent count and memory length (0: no memory).
        groups: dict[tuple[int, int], list[int]] = {}
        for i, c in enumerate(checked):
            groups.setdefault((c.agents, c.memory_frames), []).append(i)

        start = time.perf_counter()
        conditioning = {
            key: self._group_conditioning(members, encoded, requests)
            for key, members in groups.items()
        }
        contexts = {key: self._memory_context(cond, guidance) for key, cond in conditioning.items()}
        timings["memory"] = time.perf_counter() - start

        start = time.perf_counter()
        final = self._denoise(
            groups,
            conditioning,
            contexts,
            [(c.agents, r.generator) for c, r in zip(checked, requests, strict=True)],
            steps,
            guidance,
            prompt_embeds,
            negative_prompt_embeds,
            progress,
        )
        timings["denoise"] = time.perf_counter() - start

        start = time.perf_counter()
        # The VAE runs world by world: its activations (frames × pixels × channels) are what
        # grows, and decoding 4 worlds at once took twice as long as one by one on the CPU.
        new_frames = [self.decode_latents(lat)[:, 1:] for lat in final]  # (N, 28, 2H, 2W, 3)
        timings["decode"] = time.perf_counter() - start

        start = time.perf_counter()
        frame_latents: list[torch.Tensor | None] = [None] * len(requests)
        if encode_for_memory:
            frame_latents = [self._archive_latents(frames) for frames in new_frames]
        timings["archive"] = time.perf_counter() - start
        return [
            ChunkOutput(frames, frame_lat, lat, dict(timings))
            for frames, frame_lat, lat in zip(new_frames, frame_latents, final, strict=True)
        ]

    # ------------------------------------------------------------------ phases of generate_batch
    def _encode_world(self, checked: _CheckedRequest) -> _EncodedWorld:
        """Phase ``encode``: one world's image latents and raymaps, on the device."""
        device, dtype = self.device, self.dtype
        cond = self.encode_frames(checked.images)[None].to(device, dtype)  # (1, N, C, h, w)
        chunk_rays, memory_rays = self.chunk_raymaps(checked.poses, checked.memory_poses)
        cache = None
        if isinstance(checked.cache, NoCache):
            channels = self.transformer.config.cache_in_channels
            cache = empty_cache_states(checked.agents, channels, cond.shape[-2:])[None]
            cache = cache.to(device, dtype)
        elif checked.cache is not None:
            cache = cache_states(checked.cache, self.encode_frames)[None].to(device, dtype)
        return _EncodedWorld(
            pad_image_latents(cond, CHUNK_LATENT_FRAMES), chunk_rays[None], memory_rays, cache
        )

    def _group_conditioning(
        self,
        members: list[int],
        encoded: list[_EncodedWorld],
        requests: Sequence[ChunkRequest],
    ) -> ChunkConditioning:
        """The conditioning of the worlds ``members`` (same agent count and memory length),
        stacked on the batch dimension in that order."""
        memory_latents = memory_raymaps = None
        if encoded[members[0]].memory_raymaps is not None:
            device, dtype = self.device, self.dtype
            memory_latents = torch.stack([requests[i].memory.latents for i in members])
            memory_latents = memory_latents.to(device, dtype)
            memory_raymaps = torch.stack([encoded[i].memory_raymaps for i in members])
        return ChunkConditioning(
            image_latents=torch.cat([encoded[i].image_latents for i in members]),
            raymaps=torch.cat([encoded[i].raymaps for i in members]),
            memory_latents=memory_latents,
            memory_raymaps=memory_raymaps,
            cache_states=(
                None
                if encoded[members[0]].cache_states is None
                else torch.cat([encoded[i].cache_states for i in members])
            ),
        )

    def _memory_context(
        self, conditioning: ChunkConditioning, guidance: float
    ) -> MemoryContext | None:
        """Phase ``memory``: the memory's keys and values, computed once for all steps."""
        states = conditioning.memory_states()
        if states is None:
            return None
        context = self.transformer.encode_memory(states, conditioning.memory_raymaps)
        if guidance > 1.0:  # the unconditional half reads the same memory
            context = context.repeat(2)
        return context

    def _denoise(
        self,
        groups: dict[tuple[int, int], list[int]],
        conditioning: dict[tuple[int, int], ChunkConditioning],
        contexts: dict[tuple[int, int], MemoryContext | None],
        worlds: list[tuple[int, torch.Generator | None]],
        steps: int,
        guidance: float,
        prompt_embeds: torch.Tensor | None,
        negative_prompt_embeds: torch.Tensor | None,
        progress: bool,
    ) -> list[torch.Tensor]:
        """Phase ``denoise``: DDIM from fresh noise; ``worlds`` (agent count, generator) in
        request order. Returns each world's latents ``(N, F_lat, C, h, w)`` in request order."""
        channels = self.vae.config.latent_channels
        h, w = self.latent_hw
        device, dtype = self.device, self.dtype
        text = None if prompt_embeds is None else prompt_embeds.to(device, dtype)
        negative = None
        if guidance > 1.0:
            negative = negative_prompt_embeds
            negative = torch.zeros_like(text) if negative is None else negative.to(device, dtype)
        self.scheduler.set_timesteps(steps, device=device)
        # Noise in request order, each from its own generator: a world gets the same noise
        # whether it is sampled alone or in a batch.
        noise = [
            torch.randn(
                (1, agents, CHUNK_LATENT_FRAMES, channels, h, w),
                generator=generator,
                dtype=torch.float32,
            ).to(device, dtype)
            * self.scheduler.init_noise_sigma
            for agents, generator in worlds
        ]
        latents = {key: torch.cat([noise[i] for i in members]) for key, members in groups.items()}
        for t in tqdm(self.scheduler.timesteps, desc="denoise", disable=not progress, leave=False):
            for key in groups:
                latents[key] = self._denoise_step(
                    latents[key], t, conditioning[key], contexts[key], text, negative, guidance
                )
        final: list[torch.Tensor] = [torch.empty(0)] * len(worlds)
        for key, members in groups.items():
            for row, i in enumerate(members):
                final[i] = latents[key][row]  # (N, F_lat, C, h, w)
        return final

    def _denoise_step(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        conditioning: ChunkConditioning,
        context: MemoryContext | None,
        text: torch.Tensor | None,
        negative: torch.Tensor | None,
        guidance: float,
    ) -> torch.Tensor:
        """One DDIM step of ``latents (worlds, N, F, C, h, w)``; ``context`` is already doubled
        for classifier-free guidance."""
        worlds = latents.shape[0]
        model_in = conditioning.hidden_states(self.scheduler.scale_model_input(latents, t))
        ray_in = conditioning.raymaps
        cache_in = conditioning.cache_states
        text_in = None if text is None else text.expand(worlds, -1, -1)
        if guidance > 1.0:  # both halves see the same cache, as they read the same memory
            model_in, ray_in = torch.cat([model_in] * 2), torch.cat([ray_in] * 2)
            cache_in = None if cache_in is None else torch.cat([cache_in] * 2)
            text_in = torch.cat([negative.expand(worlds, -1, -1), text_in])
        timestep = t.expand(model_in.shape[0]).to(model_in.device)
        pred = self.transformer(
            model_in,
            timestep,
            raymaps=ray_in,
            encoder_hidden_states=text_in,
            memory_context=context,
            cache_states=cache_in,
        ).sample
        if guidance > 1.0:
            uncond, cond_pred = pred.chunk(2)
            pred = uncond + guidance * (cond_pred - uncond)
        return self.scheduler.step(pred, t, latents, return_dict=False)[0]

    def _archive_latents(self, frames: np.ndarray) -> torch.Tensor:
        """Phase ``archive``: new frames ``(N, 28, 2H, 2W, 3)`` → image latents ``(N, 28, C, h, w)``."""
        channels = self.vae.config.latent_channels
        h, w = self.latent_hw
        return self.encode_frames(frames.reshape(-1, *self.frame_shape)).reshape(
            len(frames), CHUNK_FRAMES - 1, channels, h, w
        )

    def _check_request(self, request: ChunkRequest, prefix: str | None) -> _CheckedRequest:
        """Validate one world's inputs; ``prefix`` names the request in a batch's errors."""
        prefix = prefix or ""
        images = self._check_frames(f"{prefix}images", request.images)
        if images.ndim != 4:
            raise ValueError(
                f"{prefix}images must have shape (agents, H, W, 3); got {images.shape}"
            )
        agents = images.shape[0]
        poses = check_finite_poses(np.asarray(request.poses, dtype=np.float64), "poses")
        if poses.shape != (agents, CHUNK_FRAMES, 3):
            raise ValueError(
                f"{prefix}poses must have shape ({agents}, {CHUNK_FRAMES}, 3) for {agents} "
                f"agents; got {poses.shape}"
            )
        memory = request.memory
        mem_poses = None
        if memory is not None:
            channels = self.vae.config.latent_channels
            h, w = self.latent_hw
            mem_poses = check_finite_poses(
                np.asarray(memory.poses, dtype=np.float64), "memory poses"
            )
            count = mem_poses.shape[1] if mem_poses.ndim == 3 else -1
            expected = (agents, count, channels, h, w)
            if mem_poses.shape != (agents, count, 3) or tuple(memory.latents.shape) != expected:
                raise ValueError(
                    f"{prefix}memory must hold latents (agents={agents}, M, {channels}, {h}, {w})"
                    f" and poses (agents, M, 3); got {tuple(memory.latents.shape)} and "
                    f"{mem_poses.shape}"
                )
            if count == 0:
                mem_poses = None
        cache = request.cache
        wanted = self.transformer.config.cache_in_channels
        if wanted and cache is None:
            raise ValueError(
                f"{prefix}cache is required: this model has a scene-cache input "
                f"(cache_in_channels={wanted}); pass a CacheGuide rendered from the scene cache "
                "(the generative backend does this with backend_options scene_cache=True)"
            )
        if cache is not None:
            if not wanted:
                raise ValueError(
                    f"{prefix}cache given, but this model has no scene-cache input "
                    "(cache_in_channels=0)"
                )
            expected = (agents, CHUNK_FRAMES, *self.frame_shape)
            if not isinstance(cache, NoCache) and (
                not isinstance(cache, CacheGuide) or cache.rgb.shape != expected
            ):
                raise ValueError(
                    f"{prefix}cache must be NO_CACHE or a CacheGuide with rgb of shape "
                    f"{expected}; got "
                    f"{getattr(getattr(cache, 'rgb', None), 'shape', type(cache).__name__)}"
                )
        return _CheckedRequest(images, poses, mem_poses, cache)
