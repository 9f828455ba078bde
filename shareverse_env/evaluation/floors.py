"""Trivial floors that a generative model must beat: the conditioning frame, blurred or averaged.

PSNR and SSIM reward blur when a prediction is uncertain, so repeating the sharp first frame is
not the strongest trivial baseline: a blurred copy of it scores higher, and so may the first
frame passed through the model's own VAE. These functions make such frames from the
conditioning frame alone (the information the model has); the quality runner repeats them over
every chunk (:mod:`.variants`).

Every function works per camera view of a tiled frame ``(..., 2H, 2W, 3)`` (layout
``[[front, rear], [left, right]]``), so no blur or average crosses the seam between two views.

Example:
    >>> frame = np.zeros((1, 8, 12, 3), np.uint8)
    >>> frame[:, :4, :6] = 200  # the front view is bright, the others black
    >>> mean_colour_views(frame)[0, :, :, 0].tolist()[0]
    [200, 200, 200, 200, 200, 200, 0, 0, 0, 0, 0, 0]
    >>> blurred = blur_views(frame, sigma=1.0)
    >>> int(blurred[0, 0, 5, 0]), int(blurred[0, 0, 6, 0])  # no bleeding across the seam
    (200, 0)
    >>> BLUR_SIGMAS, blur_sigma(0), blur_sigma(3)
    ((6.0, 16.0), 6.0, 16.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from shareverse_env.core.geometry import NEW_FRAMES_PER_CHUNK
from shareverse_env.core.tiling import tile_views, untile_views
from shareverse_env.evaluation.metrics import PSNR_CAP_DB

BLUR_SIGMAS: tuple[float, float] = (6.0, 16.0)
"""Gaussian σ (pixels, per view) of the ``repeat_blur`` floor: in the first chunk, and in every
later one. The further the truth is from the first frame, the more blur pays off.

Chosen once by :func:`choose_blur_sigmas` on the *training* split of ``data/eval_long`` (4
sequences of 10 chunks, towns the validation splits do not contain), each σ from
:data:`BLUR_SIGMA_CANDIDATES` as the one whose blurred first frame, repeated, has the highest
mean chunk PSNR against the truth: ``python scripts/choose_blur_sigma.py --data
data/eval_long --split train`` (its table is in docs/quality.md). The chunk PSNR there is that
of the chunk's pooled MSE: the runner's per-frame PSNR, capped at 60 dB, gives a car that has
not yet moved 60 dB for every unblurred frame, and would choose σ = 0 (the ``repeat`` floor,
which runs anyway) for reasons that have nothing to do with blur."""

BLUR_SIGMA_CANDIDATES: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 24.0)
"""The σ values :func:`choose_blur_sigmas` tries by default."""


def blur_sigma(chunk: int) -> float:
    """The ``repeat_blur`` floor's σ in chunk ``chunk`` (0-based), from :data:`BLUR_SIGMAS`."""
    return BLUR_SIGMAS[0] if chunk == 0 else BLUR_SIGMAS[1]


def gaussian_blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` blurred per channel with a separable Gaussian (edges replicated).

    ``sigma <= 0`` returns the frames unchanged.
    """
    if sigma <= 0:
        return frames
    radius = int(3 * sigma) + 1
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    n, h, w, _ = frames.shape
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().permute(0, 3, 1, 2)
    x = x.reshape(n * 3, 1, h, w)
    x = torch.nn.functional.pad(x, (radius,) * 4, mode="replicate")
    x = torch.nn.functional.conv2d(x, kernel.view(1, 1, 1, -1))
    x = torch.nn.functional.conv2d(x, kernel.view(1, 1, -1, 1))
    return x.reshape(n, 3, h, w).permute(0, 2, 3, 1).round().clamp(0, 255).byte().numpy()


def _per_view(frames: np.ndarray, fn) -> np.ndarray:
    """Apply ``fn`` to the views ``(M, H, W, 3)`` of tiled frames ``(..., 2H, 2W, 3)``."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise TypeError(
            f"expected uint8 tiled frames (..., 2H, 2W, 3); got {frames.dtype} {frames.shape}"
        )
    lead = frames.shape[:-3]
    views = untile_views(frames.reshape(-1, *frames.shape[-3:]))  # (M, 4, H, W, 3)
    out = fn(views.reshape(-1, *views.shape[-3:])).reshape(views.shape)
    return tile_views(out).reshape(*lead, *frames.shape[-3:])


def blur_views(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Tiled uint8 frames ``(..., 2H, 2W, 3)`` with each camera view blurred on its own."""
    return _per_view(frames, lambda v: gaussian_blur(v, sigma))


def mean_colour_views(frames: np.ndarray) -> np.ndarray:
    """Tiled uint8 frames with each camera view filled with its own mean colour."""

    def fill(views: np.ndarray) -> np.ndarray:
        mean = views.reshape(len(views), -1, 3).mean(axis=1).round().astype(np.uint8)
        return np.broadcast_to(mean[:, None, None, :], views.shape).copy()

    return _per_view(frames, fill)


def choose_blur_sigmas(
    sequences: Iterable[np.ndarray],
    sigmas: Sequence[float] = BLUR_SIGMA_CANDIDATES,
) -> tuple[tuple[float, float], dict[float, tuple[float, float]]]:
    """The σ whose blurred first frame, repeated, best predicts the first chunk, and the σ that
    best predicts the later chunks.

    Args:
        sequences: each the true frames ``(A, T, 2H, 2W, 3)`` of one sequence (``T >= 57`` for
            a later chunk to score).
        sigmas: the candidates (``0`` is the sharp ``repeat`` baseline).

    Returns:
        ``((σ first, σ later), {σ: (mean PSNR of the first chunks, of the later ones)})``; a
        chunk's PSNR is that of its pooled MSE over its 28 new frames, averaged over every
        agent's chunks of every sequence.
    """
    first_scores: dict[float, list[float]] = {float(s): [] for s in sigmas}
    later_scores: dict[float, list[float]] = {float(s): [] for s in sigmas}
    for frames in sequences:
        chunks = (frames.shape[1] - 1) // NEW_FRAMES_PER_CHUNK
        for sigma in first_scores:
            start = blur_views(frames[:, 0], sigma).astype(np.float64)
            for k in range(chunks):
                truth = frames[:, 1 + NEW_FRAMES_PER_CHUNK * k : 1 + NEW_FRAMES_PER_CHUNK * (k + 1)]
                mse = ((truth - start[:, None]) ** 2).mean(axis=(1, 2, 3, 4))
                db = 10 * np.log10(255.0**2 / np.maximum(mse, 255.0**2 * 10 ** (-PSNR_CAP_DB / 10)))
                (first_scores if k == 0 else later_scores)[sigma].extend(db.tolist())
    if not any(first_scores.values()) or not any(later_scores.values()):
        raise ValueError("choose_blur_sigmas needs sequences of at least two chunks (57 frames)")
    means = {
        s: (float(np.mean(first_scores[s])), float(np.mean(later_scores[s]))) for s in first_scores
    }
    best_first = max(means, key=lambda s: means[s][0])
    best_later = max(means, key=lambda s: means[s][1])
    return (best_first, best_later), means
