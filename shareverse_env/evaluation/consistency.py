"""Cross-agent consistency: do two agents' frames show the same world where both see it?

The paper's Table 1 idea with exact correspondences: for every co-visible pixel of one agent's
frame (:func:`~.overlap.correspondences`, from the true depth and poses), its colour is compared
with the colour at its projection in the other agent's frame at the same time. A consistent
shared world gives small differences; two agents hallucinating different towns give large ones.
Even the exact renderer's own frames differ a little (view-dependent shading, fog, the pixel
grid), so a generator's figure is read against the truth's.

Example (identical frames for two agents at the same pose agree everywhere they overlap):
    >>> import numpy as np
    >>> from shareverse_env.core.geometry import CameraRig
    >>> from shareverse_env.evaluation.overlap import correspondences, ground_plane_depth
    >>> rig = CameraRig()
    >>> depth = np.broadcast_to(ground_plane_depth(rig, (32, 48)), (2, 1, 64, 96))
    >>> match = correspondences(depth, np.zeros((2, 1, 3)), rig)
    >>> frames = np.broadcast_to(np.arange(64 * 96 * 3, dtype=np.uint8).reshape(64, 96, 3),
    ...                          (2, 1, 64, 96, 3))
    >>> diff, agree = cross_agent_difference(frames, *match)
    >>> float(diff[0, 0]), float(agree[0, 0])
    (0.0, 1.0)
"""

from __future__ import annotations

import numpy as np

AGREE_TOLERANCE = 20.0
"""Grey levels (mean over R, G, B) within which two corresponding pixels *agree*."""


def cross_agent_difference(
    frames: np.ndarray,
    mask: np.ndarray,
    partner: np.ndarray,
    index: np.ndarray,
    tolerance: float = AGREE_TOLERANCE,
) -> tuple[np.ndarray, np.ndarray]:
    """Per agent and frame: the mean colour difference over co-visible pixels and the share
    of them that agree within ``tolerance``.

    Args:
        frames: ``(A, F, 2H, 2W, 3)`` uint8, every agent's frames at the same times.
        mask, partner, index: :func:`~.overlap.correspondences` of those times, ``(A, F, 2H, 2W)``.
        tolerance: agreement threshold, grey levels (mean over channels).

    Returns:
        ``(diff, agree)``, each float ``(A, F)``; ``nan`` for frames without co-visible pixels.
    """
    frames = np.asarray(frames)
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (A, F, 2H, 2W, 3); got {frames.shape}")
    if mask.shape != frames.shape[:-1]:
        raise ValueError(f"mask must have shape {frames.shape[:-1]}; got {mask.shape}")
    agents, count = frames.shape[:2]
    flat = frames.reshape(agents, count, -1, 3).astype(np.int16)
    diff = np.full((agents, count), np.nan)
    agree = np.full((agents, count), np.nan)
    for a in range(agents):
        for f in range(count):
            pix = np.flatnonzero(mask[a, f])
            if not len(pix):
                continue
            other = flat[partner[a, f].reshape(-1)[pix], f, index[a, f].reshape(-1)[pix]]
            d = np.abs(flat[a, f, pix] - other).mean(-1)
            diff[a, f] = d.mean()
            agree[a, f] = (d <= tolerance).mean()
    return diff, agree
