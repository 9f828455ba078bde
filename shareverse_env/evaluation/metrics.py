"""Image quality metrics on uint8 frames: PSNR and SSIM, optionally restricted to a mask, and
the detail ratio, which tells a sharp frame from a blurred one.

Both functions take images ``(..., H, W, 3)`` with any leading batch dimensions and return one
value per image (shape ``(...)``, a NumPy float64 scalar for a single image). Averages over a
sequence are taken *per frame first, then over frames*, as video-generation papers report
them (a per-frame PSNR averaged over frames, not the PSNR of the pooled MSE).

SSIM is the standard one of Wang et al. (2004): an 11×11 Gaussian window with σ = 1.5,
``K1 = 0.01``, ``K2 = 0.03``, dynamic range 255, computed **per RGB channel and averaged over
the channels** (as ``skimage.metrics.structural_similarity(..., channel_axis=-1,
gaussian_weights=True, use_sample_covariance=False, data_range=255)`` and ``pytorch_msssim``
do). The window is only evaluated where it fits inside the image ("valid" filtering, i.e.
skimage's crop of 5 pixels at every border), so the SSIM map of an ``H × W`` image is
``(H - 10) × (W - 10)``. NumPy only: no SciPy or scikit-image needed.

PSNR and SSIM reward a blurred prediction: under uncertainty the mean of the possible frames
scores higher than any one sharp frame. :func:`detail_ratio_tiled` makes the trade-off visible:
the fine detail (luma gradient energy) of a generated frame relative to the true frame's, 1 for
as much detail as the truth, below 1 for blur, above 1 for noise or ringing.

Example:
    >>> import numpy as np
    >>> a = np.full((2, 32, 48, 3), 100, np.uint8)
    >>> b = a.copy(); b[1] += 10
    >>> psnr(a, b).round(2).tolist()
    [inf, 28.13]
    >>> ssim(a, b).round(4).tolist()
    [1.0, 0.9955]
"""

from __future__ import annotations

import numpy as np

from shareverse_env.core.tiling import untile_views

DATA_RANGE = 255.0
"""Dynamic range of uint8 images."""

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


PSNR_CAP_DB = 60.0
"""Per-frame PSNR cap of the quality runner, dB. A frame identical to the truth (a standing car
repeated by the ``repeat`` baselines) would score ``inf`` and swamp every average; 60 dB is far
above any generated frame (an RMS error of 0.26 grey levels)."""


def _check_pair(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None, min_hw: int = 1):
    """Validate two uint8 image batches and an optional boolean mask; return them as arrays."""
    a, b = np.asarray(a), np.asarray(b)
    for name, x in (("a", a), ("b", b)):
        if x.dtype != np.uint8:
            raise TypeError(f"{name} must be uint8 images (..., H, W, 3); got dtype {x.dtype}")
        if x.ndim < 3 or x.shape[-1] != 3:
            raise ValueError(f"{name} must have shape (..., H, W, 3); got {x.shape}")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape; got {a.shape} and {b.shape}")
    if a.shape[-3] < min_hw or a.shape[-2] < min_hw:
        raise ValueError(f"images must be at least {min_hw}×{min_hw}; got {a.shape[-3:-1]}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"mask must be bool (..., H, W); got dtype {mask.dtype}")
        if mask.shape != a.shape[:-1]:
            raise ValueError(
                f"mask must have shape {a.shape[:-1]} (images minus channels); got {mask.shape}"
            )
    return a, b, mask


def _scalar_or_array(x: np.ndarray) -> np.ndarray:
    return x[()] if x.ndim == 0 else x


def psnr(
    a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, max_db: float | None = None
) -> np.ndarray:
    """Peak signal-to-noise ratio in dB, one value per image: ``10 log10(255² / MSE)``.

    Args:
        a, b: uint8 images ``(..., H, W, 3)`` of the same shape.
        mask: optional bool ``(..., H, W)``; the MSE is then taken over the masked pixels only
            (all three channels of each). An image whose mask is empty gives ``nan``.
        max_db: cap on the result. Identical images have MSE 0 and PSNR ``inf`` unless capped;
            averages over frames should use a cap (the quality runner uses
            :data:`~shareverse_env.evaluation.metrics.PSNR_CAP_DB`).

    Returns:
        float64 array of shape ``a.shape[:-3]`` (a NumPy scalar for one image).

    Example:
        >>> import numpy as np
        >>> a = np.zeros((4, 4, 3), np.uint8); b = a.copy(); b[0, 0] = 255
        >>> float(psnr(a, b).round(3)), float(psnr(a, b, max_db=10.0))  # MSE = 255² / 16
        (12.041, 10.0)
        >>> m = np.zeros((4, 4), bool); m[1:, 1:] = True
        >>> float(psnr(a, b, mask=m))
        inf
    """
    a, b, mask = _check_pair(a, b, mask)
    sq = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is None:
        mse = sq.mean(axis=(-3, -2, -1))
    else:
        count = mask.sum(axis=(-2, -1)) * 3
        total = (sq * mask[..., None]).sum(axis=(-3, -2, -1))
        with np.errstate(invalid="ignore", divide="ignore"):
            mse = total / count
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(DATA_RANGE**2 / mse)
    if max_db is not None:
        out = np.where(np.isnan(out), np.nan, np.minimum(out, max_db))
    return _scalar_or_array(np.asarray(out, dtype=np.float64))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian of ``size`` taps (the SSIM window is its outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of ``x (..., H, W)`` with ``g`` along H then W."""
    k = len(g)
    h, w = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    # A sum of shifted slices: no (..., H, W, k) temporary, so batches of frames stay cheap.
    rows = sum(g[i] * x[..., i : i + h, :] for i in range(k))
    return sum(g[i] * rows[..., :, i : i + w] for i in range(k))


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM ``(..., H - 10, W - 10)``, averaged over the three channels.

    Pixel ``(i, j)`` of the map is the SSIM of the window centred on image pixel
    ``(i + 5, j + 5)``.

    Example:
        >>> import numpy as np
        >>> ssim_map(np.zeros((16, 20, 3), np.uint8), np.zeros((16, 20, 3), np.uint8)).shape
        (6, 10)
    """
    a, b, _ = _check_pair(a, b, None, min_hw=SSIM_WINDOW)
    g = gaussian_window()
    # Channels to the front so that the filter runs over the two last axes.
    x = np.moveaxis(a.astype(np.float64), -1, -3)
    y = np.moveaxis(b.astype(np.float64), -1, -3)
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
    var_x = _filter_valid(x * x, g) - mu_x**2
    var_y = _filter_valid(y * y, g) - mu_y**2
    cov = _filter_valid(x * y, g) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (num / den).mean(axis=-3)


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Structural similarity, one value per image (see the module docstring for the variant).

    Args:
        a, b: uint8 images ``(..., H, W, 3)``, at least 11×11.
        mask: optional bool ``(..., H, W)``: the result is the mean of the SSIM map over the
            masked pixels whose window fits inside the image (``nan`` when there are none).

    Returns:
        float64 array of shape ``a.shape[:-3]`` (a NumPy scalar for one image).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> a = np.repeat(np.linspace(0, 255, 32)[None, :, None], 32, 0).repeat(3, 2)
        >>> def noisy(sigma):
        ...     return np.clip(a + rng.normal(0, sigma, a.shape), 0, 255).astype(np.uint8)
        >>> clean = a.astype(np.uint8)
        >>> float(ssim(clean, clean)), bool(ssim(clean, noisy(20)) < ssim(clean, noisy(5)) < 1)
        (1.0, True)
    """
    a, b, mask = _check_pair(a, b, mask, min_hw=SSIM_WINDOW)
    smap = ssim_map(a, b)
    if mask is None:
        return _scalar_or_array(smap.mean(axis=(-2, -1)))
    pad = SSIM_WINDOW // 2
    inner = mask[..., pad:-pad, pad:-pad]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (smap * inner).sum(axis=(-2, -1)) / inner.sum(axis=(-2, -1))
    return _scalar_or_array(np.asarray(out, dtype=np.float64))


def ssim_tiled(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """SSIM of tiled frames ``(..., 2H, 2W, 3)`` whose windows never straddle two views.

    Each of the four ``H × W`` views gets its own SSIM map (:func:`ssim_map`); the result is the
    mean over the four maps' pixels (with ``mask``: over their masked pixels, pooled over views).

    Example:
        >>> import numpy as np
        >>> frames = np.zeros((3, 64, 96, 3), np.uint8)
        >>> ssim_tiled(frames, frames).tolist()
        [1.0, 1.0, 1.0]
    """
    a, b, mask = _check_pair(a, b, mask, min_hw=2 * SSIM_WINDOW)
    if a.shape[-3] % 2 or a.shape[-2] % 2:
        raise ValueError(f"tiled frames need even height and width; got {a.shape[-3:-1]}")
    smap = ssim_map(untile_views(a), untile_views(b))  # (..., 4, H - 10, W - 10)
    if mask is None:
        return _scalar_or_array(smap.mean(axis=(-3, -2, -1)))
    pad = SSIM_WINDOW // 2
    inner = untile_views(mask[..., None])[..., 0][..., pad:-pad, pad:-pad]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (smap * inner).sum(axis=(-3, -2, -1)) / inner.sum(axis=(-3, -2, -1))
    return _scalar_or_array(np.asarray(out, dtype=np.float64))


LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])
"""ITU-R BT.601 weights of R, G, B in the luma used by :func:`gradient_energy`."""


def gradient_energy(images: np.ndarray) -> np.ndarray:
    """Mean squared luma gradient of each image ``(..., H, W, 3)`` uint8 → ``(...)``.

    Forward differences along both axes, on luma in grey levels (0–255), averaged over the
    differences that exist (``(H - 1) × W`` vertical and ``H × (W - 1)`` horizontal ones).

    Example:
        >>> import numpy as np
        >>> flat = np.full((8, 8, 3), 90, np.uint8)
        >>> stripes = flat.copy(); stripes[:, ::2] = 100
        >>> float(gradient_energy(flat)), float(gradient_energy(stripes))
        (0.0, 50.0)
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:  # TypeError, as the other metrics raise for a wrong dtype
        raise TypeError(f"images must be uint8 images (..., H, W, 3); got dtype {images.dtype}")
    if images.ndim < 3 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (..., H, W, 3); got {images.shape}")
    luma = images.astype(np.float64) @ LUMA_WEIGHTS
    dy = np.diff(luma, axis=-2) ** 2
    dx = np.diff(luma, axis=-1) ** 2
    total = dy.sum(axis=(-2, -1)) + dx.sum(axis=(-2, -1))
    count = dy.shape[-2] * dy.shape[-1] + dx.shape[-2] * dx.shape[-1]
    return _scalar_or_array(np.asarray(total / max(count, 1), dtype=np.float64))


def detail_ratio_tiled(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Fine detail of tiled frames ``(..., 2H, 2W, 3)`` relative to the truth, one per frame.

    ``gradient_energy(generated) / gradient_energy(truth)``, each summed over the four camera
    views separately (no gradient across a tile border). 1 means as much detail as the truth,
    below 1 blur, above 1 noise; ``nan`` where the true frame is flat.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> truth = rng.integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)
        >>> blurred = ((truth[:, :, 1:].astype(int) + truth[:, :, :-1]) // 2).astype(np.uint8)
        >>> blurred = np.concatenate([blurred, truth[:, :, -1:]], axis=2)
        >>> float(detail_ratio_tiled(truth, truth)[0]), bool(detail_ratio_tiled(blurred, truth)[0] < 0.7)
        (1.0, True)
    """
    generated, truth, _ = _check_pair(generated, truth, None, min_hw=2)
    if generated.shape[-3] % 2 or generated.shape[-2] % 2:
        raise ValueError(f"tiled frames need even height and width; got {generated.shape[-3:-1]}")
    gen = gradient_energy(untile_views(generated)).sum(axis=-1)
    ref = gradient_energy(untile_views(truth)).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(ref > 0, gen / np.where(ref > 0, ref, 1.0), np.nan)
    return _scalar_or_array(np.asarray(out, dtype=np.float64))


def colour_drift_tiled(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Colour drift of tiled frames ``(..., 2H, 2W, 3)`` from the truth, in grey levels (0–255).

    For each of the four camera views, the mean of each RGB channel over the view's pixels;
    the result is the absolute difference of those means from the true frame's, averaged over
    the four views and the three channels. It ignores where things are and sees only a global
    cast: a generated frame that slides toward one colour (say, a brown-orange smear) drifts
    even where its PSNR is no worse than a blur's. 0 for the same colour balance.

    Example:
        >>> import numpy as np
        >>> truth = np.zeros((1, 8, 12, 3), np.uint8)
        >>> cast = truth.copy(); cast[..., 0] = 40  # every view 40 grey levels redder
        >>> colour_drift_tiled(truth, truth).tolist(), colour_drift_tiled(cast, truth).tolist()
        ([0.0], [13.333333333333334])
    """
    generated, truth, _ = _check_pair(generated, truth, None, min_hw=2)
    if generated.shape[-3] % 2 or generated.shape[-2] % 2:
        raise ValueError(f"tiled frames need even height and width; got {generated.shape[-3:-1]}")
    gen = untile_views(generated).astype(np.float64).mean(axis=(-3, -2))  # (..., 4, 3)
    ref = untile_views(truth).astype(np.float64).mean(axis=(-3, -2))
    return _scalar_or_array(np.abs(gen - ref).mean(axis=(-2, -1)))
