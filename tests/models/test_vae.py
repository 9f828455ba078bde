"""Chunk-level encode/decode with the causal CogVideoX VAE."""

from __future__ import annotations

import pytest
import torch
from shareverse_env.models import build_vae
from shareverse_env.models.vae import decode_chunk, encode_images, encode_video


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return build_vae("tiny").eval()


@pytest.mark.parametrize(("frames", "latent_frames"), [(1, 1), (5, 2), (9, 3), (29, 8), (33, 9)])
def test_frame_counts_follow_the_causal_rule(vae, frames: int, latent_frames: int) -> None:
    video = torch.rand(1, 3, frames, 32, 48) * 2 - 1
    with torch.no_grad():
        latents = encode_video(vae, video)
        decoded = decode_chunk(vae, latents)
    assert latents.shape == (1, 4, latent_frames, 4, 6)
    assert decoded.shape == video.shape


def test_stock_decode_would_return_the_wrong_frame_count(vae) -> None:
    # The reason decode_chunk exists: diffusers decodes 8 latents (a 29-frame chunk) into 32.
    latents = torch.randn(1, 4, 8, 4, 6)
    with torch.no_grad():
        stock = vae.decode(latents).sample
        ours = decode_chunk(vae, latents)
    assert stock.shape[2] == 32
    assert ours.shape[2] == 29


def test_decoding_is_causal_across_groups(vae) -> None:
    # Frames of earlier latent groups do not depend on later latents.
    latents = torch.randn(1, 4, 8, 4, 6)
    changed = latents.clone()
    changed[:, :, 7] += 2.0
    with torch.no_grad():
        a, b = decode_chunk(vae, latents), decode_chunk(vae, changed)
    torch.testing.assert_close(a[:, :, :25], b[:, :, :25])
    assert (a[:, :, 25:] - b[:, :, 25:]).abs().max() > 1e-4


def test_images_encode_to_one_latent_frame_each(vae) -> None:
    images = torch.rand(3, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        batch = encode_images(vae, images)
        single = encode_images(vae, images[1:2])
    assert batch.shape == (3, 4, 1, 4, 6)
    torch.testing.assert_close(batch[1:2], single, atol=1e-5, rtol=1e-5)


def test_bad_shapes_are_named(vae) -> None:
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        encode_video(vae, torch.zeros(1, 3, 6, 32, 48))
    with pytest.raises(ValueError, match="images must have shape"):
        encode_images(vae, torch.zeros(1, 3, 1, 32, 48))
    with pytest.raises(ValueError, match="latents must have shape"):
        decode_chunk(vae, torch.zeros(4, 8, 4, 6))
