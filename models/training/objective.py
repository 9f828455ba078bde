"""Losses: CogVideoX's v-prediction diffusion objective and the VAE's reconstruction loss."""

from __future__ import annotations

from contextlib import nullcontext
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from shareverse_env.models.conditioning import ChunkConditioning, pad_image_latents
from shareverse_env.models.pipeline import ShareVersePipeline
from shareverse_env.models.training.adversarial import AdversarialTerm
from shareverse_env.models.training.batches import ChunkExample, to_video_tensor
from shareverse_env.models.training.cache_data import drop_cache
from shareverse_env.models.training.config import TrainConfig
from shareverse_env.models.vae import decode_chunk, encode_images, encode_moments, encode_video

from shareverse_env.core.tiling import untile_views


@torch.no_grad()
def encode_chunks(
    pipe: ShareVersePipeline,
    examples: list[ChunkExample],
    config: TrainConfig,
    generator: torch.Generator,
) -> dict[str, torch.Tensor | None]:
    """Latents, conditioning, raymaps and memory of a batch, with the frozen VAE.

    The conditioning frame gets pixel noise σ = exp(N(μ, s)) before encoding (paper Sec. 3.4:
    it bridges clean training frames and the imperfect frames generated at inference).
    Examples drawn from a latent cache (:mod:`.latent_cache`) bring their chunk and memory
    latents; only their conditioning frame is encoded here, with the same random draws.
    """
    device, dtype, scale = pipe.device, pipe.dtype, pipe.scaling_factor
    batch, agents = len(examples), examples[0].video.shape[0]
    cached = [e.latents is not None for e in examples]
    if any(cached) and not all(cached):
        raise ValueError("a batch mixes cached and uncached examples")
    video = to_video_tensor(np.stack([e.video for e in examples]), device, dtype)
    flat = video.flatten(0, 1)  # (B·A, 3, 29, H, W), or (B·A, 3, 1, H, W) when cached
    if all(cached):
        latents = torch.cat([e.latents for e in examples]).to(device, dtype) * scale
    else:
        latents = encode_video(pipe.vae, flat) * scale  # (B·A, C, 8, h, w)
    latents = latents.permute(0, 2, 1, 3, 4).unflatten(0, (batch, agents))
    cond = flat[:, :, 0]
    sigma = torch.exp(
        torch.randn(cond.shape[0], generator=generator) * config.image_noise_log_std
        + config.image_noise_log_mean
    ).to(device, dtype)
    noise = torch.randn(cond.shape, generator=generator).to(device, dtype)
    cond_latent = (
        encode_images(pipe.vae, cond + sigma[:, None, None, None] * noise)[:, :, 0] * scale
    )
    image_latents = pad_image_latents(
        cond_latent.unflatten(0, (batch, agents)).to(latents.dtype), latents.shape[2]
    )
    if config.image_dropout > 0:
        keep = torch.rand(batch, generator=generator) >= config.image_dropout
        image_latents = image_latents * keep.to(device, dtype)[:, None, None, None, None, None]
    rays, memory, memory_rays = [], [], []
    for e in examples:
        if e.raymaps is not None:
            r = e.raymaps.to(device, dtype)
            mr = None if e.memory_raymaps is None else e.memory_raymaps.to(device, dtype)
        else:
            r, mr = pipe.chunk_raymaps(e.poses, e.memory_poses)
        rays.append(r)
        if e.memory_latents is not None:
            memory.append(e.memory_latents.to(device, dtype) * scale)  # (A, 4, C, h, w)
            memory_rays.append(mr)
        elif e.memory_frames is not None:
            mem_video = to_video_tensor(e.memory_frames, device, dtype)  # (A, 3, 4, H, W)
            mem_images = mem_video.permute(0, 2, 1, 3, 4).flatten(0, 1)
            mem = encode_images(pipe.vae, mem_images)[:, :, 0] * scale
            memory.append(mem.unflatten(0, (agents, -1)))
            memory_rays.append(mr)
    cache = None
    if examples[0].cache_states is not None:
        # Drawn last, so that runs without a cache input draw exactly what they drew before.
        cache = torch.stack([e.cache_states for e in examples]).to(device, dtype)
        cache = drop_cache(cache, config.cache_drop, generator)
    return {
        "latents": latents,
        "image_latents": image_latents,
        "raymaps": torch.stack(rays),
        "memory": torch.stack(memory) if memory else None,
        "memory_raymaps": torch.stack(memory_rays) if memory_rays else None,
        "cache_states": cache,
    }


def draw_timesteps(
    batch: int,
    num_train_timesteps: int,
    generator: torch.Generator,
    sampler_timesteps: torch.Tensor | None = None,
    share: float = 0.0,
) -> torch.Tensor:
    """``batch`` training timesteps: uniform over ``[0, num_train_timesteps)``, and with
    probability ``share`` each one of ``sampler_timesteps`` instead (the steps the sampler
    actually takes). With ``share == 0`` it draws exactly what a plain uniform draw does.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> draw_timesteps(4, 1000, g, torch.tensor([999]), share=1.0).tolist()
        [999, 999, 999, 999]
    """
    t = torch.randint(0, num_train_timesteps, (batch,), generator=generator)
    if share > 0:
        if sampler_timesteps is None or not len(sampler_timesteps):
            raise ValueError("a sampler timestep share needs the sampler's timesteps")
        pick = torch.rand(batch, generator=generator) < share
        index = torch.randint(0, len(sampler_timesteps), (batch,), generator=generator)
        t = torch.where(pick, sampler_timesteps.to(t.dtype)[index], t)
    return t


def sampler_timesteps(pipe: ShareVersePipeline) -> torch.Tensor:
    """The timesteps ``pipe``'s sampler visits at its default step count (its scheduler
    untouched). The shipped pipeline's one DDIM step with trailing spacing: ``[999]``."""
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(pipe.num_inference_steps)
    return scheduler.timesteps.clone().long()


def diffusion_loss(
    pipe: ShareVersePipeline,
    transformer: torch.nn.Module,
    encoded: dict[str, torch.Tensor | None],
    generator: torch.Generator,
    timesteps: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    hole_weight: float = 1.0,
) -> torch.Tensor:
    """Mean squared error of the predicted velocity (CogVideoX: v-prediction, zero-terminal SNR).

    ``hole_weight`` > 1 weighs the latent cells that the model must draw itself (the scene
    cache does not cover them, or another car's box does) that much more; the mean is taken
    over the weights (:func:`hole_weights`). 1: the plain mean.

    ``timesteps`` ``(B,)`` and ``noise`` (the shape of ``encoded["latents"]``) are drawn from
    ``generator`` when left out (in that order); pass them for a loss at fixed draws.
    The transformer's inputs are :class:`~shareverse_env.models.conditioning.ChunkConditioning`'s,
    as the sampler's.
    """
    x0 = encoded["latents"]
    t = timesteps
    if t is None:
        t = draw_timesteps(x0.shape[0], pipe.scheduler.config.num_train_timesteps, generator)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator)
    return diffusion_terms(pipe, transformer, encoded, t, noise, hole_weight).loss


class DiffusionTerms(NamedTuple):
    """What one diffusion step of training computes: the loss, the predicted velocity and the
    clean-chunk estimate it implies (both attached to the graph, the latents' shape)."""

    loss: torch.Tensor
    velocity: torch.Tensor
    estimate: torch.Tensor


def diffusion_terms(
    pipe: ShareVersePipeline,
    transformer: torch.nn.Module,
    encoded: dict[str, torch.Tensor | None],
    timesteps: torch.Tensor,
    noise: torch.Tensor,
    hole_weight: float = 1.0,
) -> DiffusionTerms:
    """:func:`diffusion_loss` at given draws, with the velocity and the clean-chunk estimate
    (:func:`clean_estimate`): what the one-step sampler returns at t = 999, for a loss on the
    estimate itself."""
    x0 = encoded["latents"]
    scheduler = pipe.scheduler
    noise = noise.to(x0.device, x0.dtype)
    t = timesteps.to(x0.device)
    noisy = scheduler.add_noise(x0, noise, t)
    target = scheduler.get_velocity(x0, noise, t)
    pred = predict_velocity(transformer, encoded, noisy, t)
    estimate = clean_estimate(scheduler, noisy, pred, t)
    if hole_weight == 1.0:
        return DiffusionTerms(F.mse_loss(pred.float(), target.float()), pred, estimate)
    cache = encoded.get("cache_states")
    if cache is None:
        raise ValueError("a hole weight needs a model with a scene-cache input")
    weights = hole_weights(cache.float(), x0.shape[3], hole_weight)
    error = (pred.float() - target.float()).square()
    loss = (error * weights).sum() / (weights.sum() * x0.shape[3])
    return DiffusionTerms(loss, pred, estimate)


def clean_estimate(
    scheduler, noisy: torch.Tensor, velocity: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """The clean latents a v-prediction implies: ``x0 = √ᾱ_t · x_t − √(1 − ᾱ_t) · v``, per
    example of ``timesteps`` ``(B,)`` (leading dimension of ``noisy``).

    Example:
        >>> from diffusers import CogVideoXDDIMScheduler
        >>> s = CogVideoXDDIMScheduler(rescale_betas_zero_snr=True, prediction_type="v_prediction")
        >>> x0, eps, t = torch.randn(2, 3), torch.randn(2, 3), torch.tensor([10, 999])
        >>> noisy, v = s.add_noise(x0, eps, t), s.get_velocity(x0, eps, t)
        >>> torch.allclose(clean_estimate(s, noisy, v, t), x0, atol=1e-4)
        True
    """
    alphas = scheduler.alphas_cumprod.to(noisy.device, torch.float32)[timesteps.long()]
    shape = (-1,) + (1,) * (noisy.dim() - 1)
    a, b = alphas.sqrt().reshape(shape), (1.0 - alphas).sqrt().reshape(shape)
    return (a * noisy.float() - b * velocity.float()).to(velocity.dtype)


def hole_weights(cache_states: torch.Tensor, latent_channels: int, weight: float) -> torch.Tensor:
    """Per-cell loss weights ``(B, A, 8, 1, h, w)`` of a batch's ``cache_states``
    ``(B, A, 8, C + 3, h, w)``: ``weight`` where the cell is uncovered (cache mask 0) or lies
    in another car's box (its coverage share), 1 where the cache covers it. Examples whose
    whole cache input was dropped have no holes to favour: all 1.

    In the env the cache render is shown wherever it is valid, so the model's own pixels are
    what fills the holes and draws the cars: this puts the training signal there.

    Example:
        >>> states = torch.zeros(2, 1, 8, 4 + 3, 2, 2)
        >>> states[0, :, :, 4, 0] = 1.0  # example 0: the top row covered; example 1: dropped
        >>> w = hole_weights(states, 4, 3.0)
        >>> w[0, 0, 0, 0].tolist(), w[1, 0, 0, 0].tolist()
        ([[1.0, 1.0], [3.0, 3.0]], [[1.0, 1.0], [1.0, 1.0]])
    """
    mask = cache_states[:, :, :, latent_channels : latent_channels + 1]
    cars = cache_states[:, :, :, latent_channels + 1 : latent_channels + 2]
    present = cache_states.flatten(1).abs().amax(dim=1) > 0
    share = torch.maximum(1.0 - mask, cars).clamp(0.0, 1.0)
    share = share * present.to(share.dtype).reshape(-1, 1, 1, 1, 1, 1)
    return 1.0 + (weight - 1.0) * share


def predict_velocity(
    transformer: torch.nn.Module,
    encoded: dict[str, torch.Tensor | None],
    noisy: torch.Tensor,
    timesteps: torch.Tensor,
) -> torch.Tensor:
    """The transformer's velocity for ``noisy`` latents of an :func:`encode_chunks` batch, with
    the sampler's inputs (:class:`~shareverse_env.models.conditioning.ChunkConditioning`)."""
    conditioning = ChunkConditioning(
        image_latents=encoded["image_latents"],
        raymaps=encoded["raymaps"],
        memory_latents=encoded["memory"],
        memory_raymaps=encoded["memory_raymaps"],
        cache_states=encoded.get("cache_states"),
    )
    return transformer(timestep=timesteps, **conditioning.transformer_inputs(noisy)).sample


def vae_loss(
    pipe: ShareVersePipeline,
    clips: np.ndarray,
    config: TrainConfig,
    generator: torch.Generator,
    train_encoder: bool = True,
    perceptual: torch.nn.Module | None = None,
    adversarial: AdversarialTerm | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 reconstruction of ``1 + 4k``-frame clips through the chunk decoder, plus a small KL.

    With ``config.vae_gradient_weight > 0`` the loss also holds that weight times
    :func:`gradient_difference` of reconstruction and truth (reported as ``grad``). With
    ``config.vae_perceptual_weight > 0`` it holds that weight times :func:`perceptual_distance`
    under ``perceptual`` (an LPIPS network; reported as ``lpips``). With ``adversarial`` (an
    :class:`AdversarialTerm` on RGB views) it adds that term on the camera views of
    ``config.vae_perceptual_frames`` frames per clip, balanced at the decoder's output
    (reported as ``adv`` and ``adv_weight``); call its ``discriminator_step`` after the update.
    ``train_encoder=False`` (the ``decoder`` stage): the posterior is computed without gradients
    and the KL, a constant then, is left out of the loss (still reported).
    """
    video = to_video_tensor(clips, pipe.device, pipe.dtype)  # (B, 3, F, H, W)
    with nullcontext() if train_encoder else torch.no_grad():
        posterior = DiagonalGaussianDistribution(encode_moments(pipe.vae, video))
    z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator).to(
        posterior.mean.device, posterior.mean.dtype
    )
    recon = decode_chunk(pipe.vae, z)
    l1 = (recon - video).abs().mean()
    kl = posterior.kl().mean()
    loss = l1 + config.vae_kl_weight * kl if train_encoder else l1
    logs = {"l1": l1.item(), "kl": kl.item()}
    if config.vae_gradient_weight > 0:
        grad = gradient_difference(recon, video)
        loss = loss + config.vae_gradient_weight * grad
        logs["grad"] = grad.item()
    if config.vae_perceptual_weight > 0:
        if perceptual is None:
            raise ValueError("vae_perceptual_weight > 0 needs the perceptual network")
        dist = perceptual_distance(
            perceptual, recon, video, config.vae_perceptual_frames, generator
        )
        loss = loss + config.vae_perceptual_weight * dist
        logs["lpips"] = dist.item()
    if adversarial is not None:
        pick = frame_pick(recon.shape[2], config.vae_perceptual_frames, generator, recon.device)
        loss, adv_logs = adversarial.generator_loss(
            loss,
            recon,
            camera_views(recon.index_select(2, pick)),
            camera_views(video.index_select(2, pick)).to(recon.dtype),
            None,
        )
        adv_logs.pop("mse")  # that is the reconstruction loss here, already logged by parts
        logs.update(adv_logs)
    return loss, logs


def frame_pick(
    count: int, frames: int, generator: torch.Generator, device: torch.device | str
) -> torch.Tensor:
    """Indices of ``frames`` of ``count`` frames drawn from ``generator`` (all when ``frames``
    is 0 or at least ``count``).

    >>> frame_pick(5, 0, torch.Generator(), "cpu").tolist()
    [0, 1, 2, 3, 4]
    """
    if 0 < frames < count:
        return torch.randperm(count, generator=generator)[:frames].to(device)
    return torch.arange(count, device=device)


def camera_views(x: torch.Tensor) -> torch.Tensor:
    """Tiled videos ``(B, 3, F, 2H, 2W)`` → the camera views ``(B·F·4, 3, H, W)``.

    >>> camera_views(torch.zeros(1, 3, 2, 8, 12)).shape
    torch.Size([8, 3, 4, 6])
    """
    tiles = untile_views(x.permute(0, 2, 3, 4, 1))  # channel-last tiles → views
    return tiles.reshape(-1, *tiles.shape[-3:]).permute(0, 3, 1, 2)


def perceptual_distance(
    net: torch.nn.Module,
    recon: torch.Tensor,
    video: torch.Tensor,
    frames: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """The mean perceptual distance of tiled videos ``(B, 3, F, 2H, 2W)`` in ``[-1, 1]``.

    Each camera view is scored on its own, as the evaluation scores them (no filter straddles
    the 2×2 tile's seams). ``frames > 0`` scores that many frames of each clip, drawn from
    ``generator`` (the same ones in every clip), to bound the cost of a deep backbone; 0 scores
    every frame.

    Example:
        >>> from shareverse_env.models.lpips_net import LPIPS
        >>> video = torch.zeros(1, 3, 5, 64, 64)
        >>> float(perceptual_distance(LPIPS("vgg"), video, video, 2, torch.Generator()))
        0.0
    """
    count = recon.shape[2]
    if 0 < frames < count:
        pick = frame_pick(count, frames, generator, recon.device)
        recon, video = recon.index_select(2, pick), video.index_select(2, pick)
    return net(camera_views(recon), camera_views(video).to(recon.dtype)).mean()


def gradient_difference(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean ``| |∇pred| − |∇target| |`` over the two spatial axes of ``(..., H, W)`` tensors.

    The gradient-difference loss of video prediction: zero when every edge is as strong as in
    the target, whatever its exact position, so it pushes a decoder towards sharp frames
    where L1 alone settles for the blurred average.

    Example:
        >>> flat, edge = torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)
        >>> edge[..., 2:] = 1.0
        >>> float(gradient_difference(edge, edge)), round(float(gradient_difference(flat, edge)), 4)
        (0.0, 0.1667)
    """
    total = pred.new_zeros(())
    for axis in (-1, -2):
        dp = pred.diff(dim=axis).abs()
        dt = target.diff(dim=axis).abs()
        total = total + (dp - dt).abs().mean()
    return total / 2
