"""Where a chunk must be *generated*: the pixels the episode's first frames cannot explain.

A scene cache copies what was seen; a model earns its keep where nothing was seen yet (newly
revealed places) and on the other cars, which the cache leaves out. To score every variant on
the same pixels, these regions are fixed per sequence from the truth alone:

- **cars**: every other agent's car box projected into the agent's views at each frame (the
  composite's own outline, :func:`~shareverse_env.scene.composite.car_masks`);
- **holes**: the pixels that the episode's first frames, lifted with their exact depth into the
  scene cache (as the env's cache starts), do not cover in the chunk's planned cameras, plus
  the cars. A variant's own cache grows as it archives generated frames, so in later chunks it
  covers part of these holes itself; the region stays the same for every variant.

:func:`seam_ratio` measures a visible seam along the holes' edge: the fine detail (luma
gradient energy) in a band one pixel either side of the edge, generated over true. A hard
composite edge adds gradient there (ratio above 1), a blurred fill removes it (below 1).

Example:
    >>> import numpy as np
    >>> holes = np.zeros((1, 8, 12), bool)  # tiled: four 4 x 6 views
    >>> holes[:, :, 3:6] = holes[:, :, 9:] = True  # the right half of every view
    >>> truth = np.full((1, 8, 12, 3), 100, np.uint8); truth[:, ::2] = 110  # fine stripes
    >>> seamed = truth.copy(); seamed[holes] += 60  # a fill of another brightness
    >>> blurred = truth.copy(); blurred[holes] = 105  # a flat, blurred fill
    >>> [round(float(seam_ratio(x, truth, holes)[0]), 2) for x in (truth, seamed, blurred)]
    [1.0, 25.0, 0.67]
"""

from __future__ import annotations

import numpy as np

from shareverse_env.core.geometry import CameraRig
from shareverse_env.core.tiling import untile_views
from shareverse_env.evaluation.metrics import LUMA_WEIGHTS


def first_frame_regions(
    frames: np.ndarray,
    depth: np.ndarray,
    poses: np.ndarray,
    plans: list[np.ndarray],
    rig: CameraRig,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(holes, cars)`` per chunk, each ``(A, 28, 2H, 2W)`` bool.

    Args:
        frames: ``(A, 2H, 2W, 3)`` the episode's first frames.
        depth: ``(A, 2H, 2W)`` their exact z-depth (``inf`` = sky).
        poses: ``(A, 3)`` the first poses.
        plans: per chunk, ``(A, 29, 3)`` the true plan (row 0: the conditioning frame).
        rig: the camera rig.
    """
    from shareverse_env.scene.composite import SceneCompositor

    view_hw = (frames.shape[1] // 2, frames.shape[2] // 2)
    scene = SceneCompositor(rig, view_hw, depth_estimator=None)
    scene.reset(frames, depth, poses)
    out = []
    for plan in plans:
        new = np.asarray(plan, dtype=np.float64)[:, 1:]
        agents = list(range(len(new)))
        renders = scene.render(new, agents)
        cars = np.stack([scene.car_masks(new, a) for a in agents])
        holes = np.stack([~r.valid for r in renders]) | cars
        out.append((holes, cars))
    return out


def _edge_band(mask: np.ndarray) -> np.ndarray:
    """Pixels within one pixel (4-neighbourhood) of the boundary of ``mask (H, W)``, both
    sides; the image border is not a boundary."""
    mask = np.asarray(mask, dtype=bool)
    padded = np.pad(mask, 1, mode="edge")
    neighbours = (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:])
    differs = np.zeros_like(mask)
    for n in neighbours:
        differs |= n != mask
    return differs


def seam_ratio(generated: np.ndarray, truth: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Per frame, luma gradient energy in the band along the holes' edge, generated over true.

    ``generated``, ``truth`` ``(T, 2H, 2W, 3)`` uint8, ``holes`` ``(T, 2H, 2W)`` bool; each
    camera view on its own (the tile borders are not edges). ``nan`` for frames without an edge
    or without true gradient there.
    """
    gen_views = untile_views(np.asarray(generated))  # (T, 4, H, W, 3)
    true_views = untile_views(np.asarray(truth))
    hole_views = untile_views(np.asarray(holes)[..., None])[..., 0]
    out = np.full(len(gen_views), np.nan)
    for t in range(len(gen_views)):
        num = den = 0.0
        for v in range(4):
            band = _edge_band(hole_views[t, v])
            if not band.any():
                continue
            num += _band_energy(gen_views[t, v], band)
            den += _band_energy(true_views[t, v], band)
        if den > 0:
            out[t] = num / den
    return out


def _band_energy(image: np.ndarray, band: np.ndarray) -> float:
    """Sum of squared forward luma differences whose first pixel lies in ``band``."""
    luma = image.astype(np.float64) @ LUMA_WEIGHTS
    dy = np.diff(luma, axis=0) ** 2
    dx = np.diff(luma, axis=1) ** 2
    return float(dy[band[:-1]].sum() + dx[band[:, :-1]].sum())
