"""A patch discriminator on latent frames, for an adversarial term beside the diffusion loss.

The shipped sampler takes one step from t = 999: the transformer's estimate of the clean chunk.
Trained by mean squared error alone, that estimate is the conditional mean, so wherever the
conditioning leaves the content open (the places no frame or cache render has shown yet) it is
a blur. A discriminator that tells true latent frames from estimated ones, patch by patch, asks
the estimate to look like *a* plausible frame instead (as adversarial diffusion distillation
does for one-step samplers). It works on the VAE's latents, so it costs a few small
convolutions per step and never runs the decoder.

The VAE stages have the same problem one level down: a decoder trained by L1 (and LPIPS)
answers what the latents leave open with a smooth average, and every pixel the scene cache does
not cover is its output. :class:`ImagePatchDiscriminator` judges decoded camera views patch by
patch for those stages (as VQGAN and the Stable Diffusion VAE train their decoders).

Example:
    >>> import torch
    >>> disc = LatentPatchDiscriminator(latent_channels=8, width=16)
    >>> latents = torch.randn(2, 1, 8, 8, 16, 24)  # (B, A, F, C, h, w)
    >>> disc(latents).shape  # one logit per patch of each latent frame
    torch.Size([16, 1, 8, 12])
    >>> loss = discriminator_hinge_loss(disc(latents), disc(latents * 0.1))
    >>> bool(loss >= 0)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ADVERSARIAL_MIN_TIMESTEP = 500
"""Examples noised below this timestep are left out of the adversarial term: their clean-chunk
estimate is nearly the truth (the noisy input shows it), so they teach the discriminator
nothing about the one-step sampler's output."""


class LatentPatchDiscriminator(nn.Module):
    """A PatchGAN on single latent frames: ``(..., C, h, w)`` → logits ``(N, 1, h/2, w/2)``.

    Each logit sees about 10 × 10 latent cells (80 × 80 pixels of the tile at the VAE's 8×
    compression): a few buildings' width, so it judges texture and local structure, not the
    layout of the whole view. Spectral normalisation keeps it Lipschitz, which keeps the
    hinge game stable at the small batches a CPU trains with.

    Example:
        >>> disc = LatentPatchDiscriminator(latent_channels=4, width=8)
        >>> disc(torch.zeros(3, 4, 8, 8)).shape
        torch.Size([3, 1, 4, 4])
    """

    def __init__(self, latent_channels: int, width: int = 64) -> None:
        super().__init__()
        norm = nn.utils.parametrizations.spectral_norm
        self.latent_channels = latent_channels
        self.layers = nn.Sequential(
            norm(nn.Conv2d(latent_channels, width, 3, padding=1)),
            nn.LeakyReLU(0.2),
            norm(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)),
            nn.LeakyReLU(0.2),
            norm(nn.Conv2d(2 * width, 2 * width, 3, padding=1)),
            nn.LeakyReLU(0.2),
            norm(nn.Conv2d(2 * width, 1, 3, padding=1)),
        )

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.shape[-3] != self.latent_channels:
            raise ValueError(
                f"latents of shape {tuple(latents.shape)}: expected {self.latent_channels} "
                "channels in dimension -3 (..., C, h, w)"
            )
        return self.layers(latents.reshape(-1, *latents.shape[-3:]).float())


class ImagePatchDiscriminator(nn.Module):
    """A PatchGAN on RGB camera views: ``(N, 3, H, W)`` in ``[-1, 1]`` → logits ``(N, 1, H/8, W/8)``.

    Three stride-2 convolutions: each logit sees 38 × 38 pixels, a window or a kerb's
    worth at the 64 × 96 views of the small model, so it asks for texture and edges, not for a
    plausible street layout. Spectrally normalised, like :class:`LatentPatchDiscriminator`.

    Example:
        >>> disc = ImagePatchDiscriminator(width=8)
        >>> disc(torch.zeros(2, 3, 64, 96)).shape
        torch.Size([2, 1, 8, 12])
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        norm = nn.utils.parametrizations.spectral_norm
        self.layers = nn.Sequential(
            norm(nn.Conv2d(3, width, 4, stride=2, padding=1)),
            nn.LeakyReLU(0.2),
            norm(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)),
            nn.LeakyReLU(0.2),
            norm(nn.Conv2d(2 * width, 4 * width, 4, stride=2, padding=1)),
            nn.LeakyReLU(0.2),
            norm(nn.Conv2d(4 * width, 1, 3, padding=1)),
        )

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        if views.ndim != 4 or views.shape[1] != 3:
            raise ValueError(
                f"views of shape {tuple(views.shape)}: expected (N, 3, H, W) RGB camera views"
            )
        return self.layers(views.float())


def discriminator_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's hinge loss: true patches pushed above +1, estimated ones below −1.

    Example:
        >>> float(discriminator_hinge_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)))
        0.0
    """
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The estimate's side of the hinge game: raise the discriminator's logits on it.

    >>> float(generator_adversarial_loss(torch.tensor([1.0, 3.0])))
    -2.0
    """
    return -fake_logits.mean()


def adaptive_weight(
    reconstruction: torch.Tensor,
    adversarial: torch.Tensor,
    output: torch.Tensor,
    limit: float = 10.0,
) -> torch.Tensor:
    """The ratio of the two losses' gradient norms at ``output`` (the transformer's prediction,
    which both depend on), detached and clamped to ``[0, limit]``.

    Multiplied into the adversarial term, it keeps that term's pull on the estimate at a fixed
    share of the reconstruction's, whatever the losses' scales and however the discriminator's
    confidence changes (VQGAN weighs its adversarial loss the same way, at the decoder's last
    layer; here the transformer's output is that layer's). The gradients are taken at the
    output tensor, so this backpropagates through the loss heads only, not the transformer.

    Example:
        >>> out = torch.ones(4, requires_grad=True)
        >>> w = adaptive_weight((out * 2).sum(), (out * 4).sum(), out)
        >>> round(float(w), 4)
        0.5
    """
    (g_rec,) = torch.autograd.grad(reconstruction, output, retain_graph=True)
    (g_adv,) = torch.autograd.grad(adversarial, output, retain_graph=True)
    weight = g_rec.norm() / (g_adv.norm() + 1e-4)
    return weight.clamp(0.0, limit).detach()


class AdversarialTerm:
    """The discriminator, its optimiser and the two sides of the hinge game, for a trainer.

    :meth:`generator_loss` adds the weighted term to a step's diffusion loss (and keeps the
    step's true and estimated latents); :meth:`discriminator_step`, called after the
    transformer's update, trains the discriminator on them.

    Example:
        >>> import torch
        >>> term = AdversarialTerm(latent_channels=4, weight=0.1, lr=1e-3, width=8)
        >>> velocity = torch.randn(1, 1, 2, 4, 8, 8, requires_grad=True)
        >>> estimate, real = -velocity, torch.randn(1, 1, 2, 4, 8, 8)
        >>> loss = (velocity - 1).square().mean()
        >>> total, logs = term.generator_loss(loss, velocity, estimate, real, torch.tensor([999]))
        >>> sorted(logs)
        ['adv', 'adv_weight', 'mse']
        >>> sorted(term.discriminator_step())
        ['d_fake', 'd_loss', 'd_real']
    """

    def __init__(
        self,
        latent_channels: int | None,
        weight: float,
        lr: float,
        width: int = 64,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        """``latent_channels=None`` judges RGB views (:class:`ImagePatchDiscriminator`, for the
        VAE stages); a channel count judges latent frames."""
        self.weight = weight
        with torch.random.fork_rng(devices=[]):  # its start depends on the seed alone
            torch.manual_seed(seed)
            disc = (
                ImagePatchDiscriminator(width)
                if latent_channels is None
                else LatentPatchDiscriminator(latent_channels, width)
            )
            self.discriminator = disc.to(device)
        # beta1 0.5: the usual GAN setting; momentum lags behind a moving target.
        self.optimizer = torch.optim.AdamW(
            self.discriminator.parameters(), lr=lr, betas=(0.5, 0.99), weight_decay=0.0
        )
        self._pair: tuple[torch.Tensor, torch.Tensor] | None = None
        # False: the discriminator still trains on each step's pair, but the loss is returned
        # unchanged (a warm-up, so that its first, random gradients never reach the model).
        self.active = True

    def generator_loss(
        self,
        loss: torch.Tensor,
        velocity: torch.Tensor,
        estimate: torch.Tensor,
        real: torch.Tensor,
        timesteps: torch.Tensor | None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``loss`` plus the adversarial term on the examples noised at or above
        :data:`ADVERSARIAL_MIN_TIMESTEP` (``loss`` alone when there are none).

        ``velocity`` is the network output both terms depend on (the balance is taken there);
        ``timesteps=None`` (a decoder's views) keeps every example."""
        self._pair = None
        if timesteps is None:
            keep = torch.ones(estimate.shape[0], dtype=torch.bool, device=estimate.device)
        else:
            keep = timesteps.to(estimate.device) >= ADVERSARIAL_MIN_TIMESTEP
        logs = {"mse": float(loss.detach())}
        if not bool(keep.any()):
            return loss, {**logs, "adv": float("nan"), "adv_weight": 0.0}
        fake = estimate[keep]
        if not self.active:
            self._pair = (real[keep].detach(), fake.detach())
            return loss, {**logs, "adv": float("nan"), "adv_weight": 0.0}
        self.discriminator.requires_grad_(False)  # the transformer's step moves only itself
        try:
            adversarial = generator_adversarial_loss(self.discriminator(fake))
        finally:
            self.discriminator.requires_grad_(True)
        balance = adaptive_weight(loss, adversarial, velocity)
        self._pair = (real[keep].detach(), fake.detach())
        logs.update(adv=float(adversarial.detach()), adv_weight=float(balance))
        return loss + self.weight * balance * adversarial, logs

    def discriminator_step(self) -> dict[str, float]:
        """One update of the discriminator on the last :meth:`generator_loss`'s latents
        (NaNs and no update when that step had no example at a high enough timestep)."""
        if self._pair is None:
            return {"d_loss": float("nan"), "d_real": float("nan"), "d_fake": float("nan")}
        real, fake = self._pair
        self._pair = None
        self.optimizer.zero_grad(set_to_none=True)
        real_logits, fake_logits = self.discriminator(real), self.discriminator(fake)
        loss = discriminator_hinge_loss(real_logits, fake_logits)
        loss.backward()
        self.optimizer.step()
        return {
            "d_loss": float(loss.detach()),
            "d_real": float(real_logits.detach().mean()),
            "d_fake": float(fake_logits.detach().mean()),
        }

    def state_dict(self) -> dict[str, dict]:
        return {
            "discriminator": self.discriminator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, dict]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
