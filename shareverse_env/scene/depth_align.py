"""Fit an estimated depth map to depth the scene cache already knows (pure numpy).

When the compositor archives generated frames, their depth comes from a monocular estimator
(:mod:`shareverse_env.models.depth`), right only up to an affine map of inverse depth.
:func:`align_depth` fits that map on the pixels where the cache's own reprojection has depth,
so that the new pixels it lifts sit at the cache's scale.

Example:
    >>> import numpy as np
    >>> truth = np.full((16, 16), 10.0, np.float32)
    >>> truth[8:] = 20.0
    >>> pred = 1.0 / (2.0 / truth + 0.01)  # a wrong scale and shift of inverse depth
    >>> bool(np.allclose(align_depth(pred, truth, np.ones_like(truth, bool)), truth, rtol=1e-4))
    True
"""

from __future__ import annotations

import numpy as np

from shareverse_env.core.geometry import MAX_DEPTH

MIN_OVERLAP = 64
"""Fewer overlap pixels than this and :func:`align_depth` leaves the prediction alone."""


def align_depth(
    pred: np.ndarray, reference: np.ndarray, overlap: np.ndarray, trim: float = 2.5
) -> np.ndarray:
    """Fit ``pred`` to ``reference`` on ``overlap`` by a scale and shift of inverse depth.

    Solves ``a / pred + b ≈ 1 / reference`` by least squares over the overlap pixels where both
    are finite and positive, then refits once without the outliers (residuals beyond ``trim``
    times their robust spread, 1.4826 × the median absolute deviation), so that a few wrong
    reference pixels (moving cars, occlusions) do not pull the fit. Inverse depth is what a
    monocular net gets right up to an affine map, and it keeps far pixels from dominating.

    Returns the aligned depth, float32, same shape: ``1 / (a / pred + b)`` with the inverse
    clamped to at least ``1 / MAX_DEPTH`` (so results stay positive and finite), ``inf``
    where ``pred`` is ``inf`` (sky stays sky). With fewer than :data:`MIN_OVERLAP` usable
    pixels, or a fit whose scale is not positive, ``pred`` comes back unchanged.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> truth = rng.uniform(2.0, 80.0, (64, 96)).astype(np.float32)
        >>> pred = 1.0 / (0.5 / truth + 0.02)  # a wrong scale and shift of inverse depth
        >>> pred[:2] = np.inf  # sky
        >>> mask = np.ones_like(truth, bool)
        >>> aligned = align_depth(pred, truth, mask)
        >>> bool(np.isinf(aligned[:2]).all()), bool(np.allclose(aligned[2:], truth[2:], rtol=1e-3))
        (True, True)
        >>> align_depth(pred, truth, np.zeros_like(mask)) is pred  # no overlap: unchanged
        True
    """
    pred = np.asarray(pred)
    reference = np.asarray(reference)
    overlap = np.asarray(overlap, dtype=bool)
    if pred.shape != reference.shape or pred.shape != overlap.shape:
        raise ValueError(
            f"shapes differ: pred {pred.shape}, reference {reference.shape}, overlap {overlap.shape}"
        )
    usable = overlap & np.isfinite(pred) & np.isfinite(reference) & (pred > 0) & (reference > 0)
    if usable.sum() < MIN_OVERLAP:
        return pred
    x = 1.0 / pred[usable].astype(np.float64)
    y = 1.0 / reference[usable].astype(np.float64)
    keep = np.ones(len(x), bool)
    a = b = 0.0
    for _ in range(2):  # a plain fit, then one refit without outliers
        design = np.stack([x[keep], np.ones(int(keep.sum()))], axis=1)
        (a, b), *_ = np.linalg.lstsq(design, y[keep], rcond=None)
        residual = np.abs(a * x + b - y)
        spread = 1.4826 * np.median(residual[keep]) + 1e-12
        new_keep = residual <= trim * spread
        if new_keep.sum() < MIN_OVERLAP:
            break
        keep = new_keep
    if not a > 0:
        return pred
    with np.errstate(divide="ignore"):
        inverse = a / pred.astype(np.float64) + b
    aligned = 1.0 / np.maximum(inverse, 1.0 / MAX_DEPTH)
    aligned[~(np.isfinite(pred) & (pred > 0))] = np.inf
    return aligned.astype(np.float32)
