"""The ShareVerse sampler: one autoregressive chunk for all agents of a shared world."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler
from tqdm.auto import tqdm

from shareverse_env.geometry import (
    CHUNK_FRAMES,
    CameraRig,
    check_finite_poses,
    pack_raymaps,
    raymaps,
)

from .configs import build_scheduler, build_transformer, build_vae, get_spec
from .transformer import MemoryContext, ShareVerseTransformer
from .vae import decode_chunk, encode_images

SPATIAL_FACTOR = 8


@dataclass
class MemoryInput:
    """Retrieved memory for every agent: scaled image latents ``(N, M, C, h, w)`` and poses ``(N, M, 3)``."""

    latents: torch.Tensor
    poses: np.ndarray


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
    >>> from shareverse_env.geometry import plan_chunk
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
        latent_hw = (2 * height // SPATIAL_FACTOR, 2 * width // SPATIAL_FACTOR)
        cfg = transformer.config
        if cfg.use_learned_positional_embeddings and latent_hw != (
            cfg.sample_height,
            cfg.sample_width,
        ):
            raise ValueError(
                f"view_hw {view_hw} gives {latent_hw} latents; this transformer serves only "
                f"{cfg.sample_height}x{cfg.sample_width} (tiled {cfg.sample_height * 8}x"
                f"{cfg.sample_width * 8} frames)"
            )
        latent_channels = vae.config.latent_channels
        if cfg.in_channels != 2 * latent_channels or cfg.out_channels != latent_channels:
            raise ValueError(
                f"transformer channels (in {cfg.in_channels}, out {cfg.out_channels}) do not fit "
                f"a VAE with {latent_channels} latent channels (expected in {2 * latent_channels},"
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
    def from_pretrained(cls, folder: str, **kwargs: Any) -> ShareVersePipeline:
        """Load a folder written by :meth:`save_pretrained` (safetensors + JSON only)."""
        from .loading import load_pipeline

        return load_pipeline(folder, **kwargs)

    def save_pretrained(self, folder: str) -> None:
        """Write transformer, VAE, scheduler and ``pipeline.json`` atomically to ``folder``."""
        from .loading import save_pipeline

        save_pipeline(self, folder)

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
        return (self.frame_shape[0] // SPATIAL_FACTOR, self.frame_shape[1] // SPATIAL_FACTOR)

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

    def chunk_raymaps(
        self, poses: np.ndarray, memory_poses: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Packed raymaps ``(N, F_lat, 24, h, w)`` for the chunk and ``(N, M, 24, h, w)`` for memory.

        Both share the chunk's mean-normalised origin, so memory and all agents live in one frame.
        """
        rays, center = raymaps(poses, self.rig, self.view_hw, downsample=SPATIAL_FACTOR)
        packed = torch.from_numpy(pack_raymaps(rays)).permute(0, 1, 4, 2, 3)
        memory_packed = None
        if memory_poses is not None:
            agents, count = memory_poses.shape[:2]
            mem_rays, _ = raymaps(
                memory_poses.reshape(agents * count, 1, 3),
                self.rig,
                self.view_hw,
                downsample=SPATIAL_FACTOR,
                center=center,
            )
            mem = torch.from_numpy(pack_raymaps(mem_rays)).permute(0, 1, 4, 2, 3)
            memory_packed = mem.reshape(agents, count, *mem.shape[2:])
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
        """
        timings: dict[str, float] = {}
        images = self._check_frames("images", images)
        if images.ndim != 4:
            raise ValueError(f"images must have shape (agents, H, W, 3); got {images.shape}")
        agents = images.shape[0]
        poses = check_finite_poses(np.asarray(poses, dtype=np.float64), "poses")
        if poses.shape != (agents, CHUNK_FRAMES, 3):
            raise ValueError(
                f"poses must have shape ({agents}, {CHUNK_FRAMES}, 3) for {agents} agents; "
                f"got {poses.shape}"
            )
        steps = self.num_inference_steps if num_inference_steps is None else num_inference_steps
        if steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1; got {steps}")
        guidance = self.guidance_scale if guidance_scale is None else float(guidance_scale)
        if guidance > 1.0 and prompt_embeds is None:
            raise ValueError("guidance_scale > 1 needs prompt_embeds (there is nothing to guide)")
        channels = self.vae.config.latent_channels
        h, w = self.latent_hw
        if memory is not None:
            mem_poses = check_finite_poses(
                np.asarray(memory.poses, dtype=np.float64), "memory poses"
            )
            count = mem_poses.shape[1] if mem_poses.ndim == 3 else -1
            expected = (agents, count, channels, h, w)
            if mem_poses.shape != (agents, count, 3) or tuple(memory.latents.shape) != expected:
                raise ValueError(
                    f"memory must hold latents (agents={agents}, M, {channels}, {h}, {w}) and "
                    f"poses (agents, M, 3); got {tuple(memory.latents.shape)} and {mem_poses.shape}"
                )
        device, dtype = self.device, self.dtype

        start = time.perf_counter()
        cond = self.encode_frames(images)  # (N, C, h, w)
        frames_lat = (CHUNK_FRAMES - 1) // 4 + 1
        image_latents = torch.zeros(
            1, agents, frames_lat, channels, h, w, device=device, dtype=dtype
        )
        image_latents[0, :, 0] = cond
        rays, mem_rays = self.chunk_raymaps(poses, None if memory is None else mem_poses)
        rays = rays[None]
        timings["encode"] = time.perf_counter() - start

        start = time.perf_counter()
        context: MemoryContext | None = None
        if memory is not None and memory.latents.shape[1] > 0:
            mem = memory.latents.to(device, dtype)
            states = torch.cat([mem, mem], dim=2)[None]  # clean latent in both slots
            context = self.transformer.encode_memory(states, mem_rays[None])
        timings["memory"] = time.perf_counter() - start

        start = time.perf_counter()
        text = None if prompt_embeds is None else prompt_embeds.to(device, dtype)
        if guidance > 1.0:
            negative = negative_prompt_embeds
            if negative is None:
                negative = torch.zeros_like(text)
            text = torch.cat([negative.to(device, dtype), text])
            if context is not None:
                context = context.repeat(2)
        self.scheduler.set_timesteps(steps, device=device)
        shape = (1, agents, frames_lat, channels, h, w)
        latents = torch.randn(shape, generator=generator, dtype=torch.float32).to(device, dtype)
        latents = latents * self.scheduler.init_noise_sigma
        for t in tqdm(self.scheduler.timesteps, desc="denoise", disable=not progress, leave=False):
            model_in = self.scheduler.scale_model_input(latents, t)
            model_in = torch.cat([model_in, image_latents], dim=3)
            ray_in = rays
            if guidance > 1.0:
                model_in, ray_in = torch.cat([model_in] * 2), torch.cat([rays] * 2)
            timestep = t.expand(model_in.shape[0]).to(device)
            pred = self.transformer(
                model_in,
                timestep,
                raymaps=ray_in,
                encoder_hidden_states=text,
                memory_context=context,
            ).sample
            if guidance > 1.0:
                uncond, cond_pred = pred.chunk(2)
                pred = uncond + guidance * (cond_pred - uncond)
            latents = self.scheduler.step(pred, t, latents, return_dict=False)[0]
        timings["denoise"] = time.perf_counter() - start

        start = time.perf_counter()
        video = self.decode_latents(latents[0])  # (N, 29, 2H, 2W, 3)
        new_frames = video[:, 1:]
        timings["decode"] = time.perf_counter() - start

        start = time.perf_counter()
        frame_latents = None
        if encode_for_memory:
            flat = new_frames.reshape(-1, *self.frame_shape)
            frame_latents = self.encode_frames(flat).reshape(
                agents, CHUNK_FRAMES - 1, channels, h, w
            )
        timings["archive"] = time.perf_counter() - start
        return ChunkOutput(new_frames, frame_latents, latents[0], timings)
