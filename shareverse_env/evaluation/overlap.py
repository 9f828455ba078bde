"""Co-visibility masks: the pixels of one agent's frame that another agent sees at the same time.

For agent ``a`` at frame ``t``, every pixel of its tiled frame is lifted to a 3-D world point
with a's ground-truth z-depth and camera; the point is *co-visible* when some other agent ``b``
sees it at the same frame ``t``: it lies in front of one of b's four cameras, projects inside
that view, and b's own depth there agrees with the point's depth (so points hidden from b behind
something nearer do not count, nor points on b's own car, which b's cameras do not see). Sky
pixels (``inf`` depth) never count.

The depth test compares the point's depth in b's camera with the range of b's depths at the
2×2 pixel centres around the projection, widened by ``rel_tol·z + abs_tol``. A single nearest
pixel would reject much distant ground: near the horizon one pixel row spans a large depth
range (e.g. 20 % per row 20 m ahead of a 1.9 m high camera with f = 48 px), far more than any
sensible tolerance.

These masks say where the two agents' views *should* agree; the quality runner reports PSNR and
SSIM over them, which is where cross-agent attention and a shared memory should help.

Example (two agents at the same pose over flat ground see exactly the same non-sky pixels):
    >>> import numpy as np
    >>> from shareverse_env.core.geometry import CameraRig
    >>> rig = CameraRig()
    >>> depth = ground_plane_depth(rig, (32, 48))          # (64, 96): ground below, sky above
    >>> depth2 = np.broadcast_to(depth, (2, 1, 64, 96))     # 2 agents, 1 frame
    >>> poses = np.zeros((2, 1, 3))
    >>> mask = covisibility_masks(depth2, poses, rig)
    >>> bool((mask == np.isfinite(depth2)).all()), round(float(mask.mean()), 2)
    (True, 0.5)
"""

from __future__ import annotations

import numpy as np

from shareverse_env.core.geometry import CameraRig
from shareverse_env.core.tiling import tile_views, untile_views

REL_TOL = 0.05
"""Relative depth tolerance of the occlusion test (5 % of the point's depth)."""

ABS_TOL = 0.5
"""Absolute depth tolerance of the occlusion test, metres."""


def pixel_rays(rig: CameraRig, view_hw: tuple[int, int]) -> np.ndarray:
    """``(H, W, 3)`` camera-frame rays through the pixel centres, scaled to unit z.

    A z-depth ``d`` at pixel ``(v, u)`` is the camera-frame point ``d * rays[v, u]``.
    """
    height, width = view_hw
    k = rig.intrinsics(height, width)
    x = (np.arange(width) + 0.5 - k[0, 2]) / k[0, 0]
    y = (np.arange(height) + 0.5 - k[1, 2]) / k[1, 1]
    return np.stack(np.broadcast_arrays(x[None, :], y[:, None], np.ones((height, width))), -1)


def ground_plane_depth(rig: CameraRig, view_hw: tuple[int, int], max_range: float = np.inf):
    """Tiled ``(2H, 2W)`` z-depth of flat ground seen by a level rig; ``inf`` above the horizon.

    Ground farther than ``max_range`` metres (along the ray) is ``inf`` too. Useful for tests and
    examples; level cameras see the same ground pattern in all four views.
    """
    rays = pixel_rays(rig, view_hw)
    with np.errstate(divide="ignore"):
        depth = np.where(rays[..., 1] > 0, rig.mount_height / rays[..., 1], np.inf)
    depth = np.where(depth * np.linalg.norm(rays, axis=-1) <= max_range, depth, np.inf)
    top = np.concatenate([depth, depth], axis=1)
    return np.concatenate([top, top], axis=0)


def _check(depth: np.ndarray, poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    depth = np.asarray(depth)
    poses = np.asarray(poses, dtype=np.float64)
    if depth.ndim != 4:
        raise ValueError(f"depth must have shape (agents, frames, 2H, 2W); got {depth.shape}")
    if depth.shape[-2] % 2 or depth.shape[-1] % 2:
        raise ValueError(f"tiled depth needs even height and width; got {depth.shape[-2:]}")
    if poses.shape != (*depth.shape[:2], 3):
        raise ValueError(f"poses must have shape {(*depth.shape[:2], 3)}; got {poses.shape}")
    if np.isnan(depth).any():
        raise ValueError("depth holds NaN; use inf for sky")
    return depth, poses


def covisibility_masks(
    depth: np.ndarray,
    poses: np.ndarray,
    rig: CameraRig | None = None,
    *,
    rel_tol: float = REL_TOL,
    abs_tol: float = ABS_TOL,
    frames_per_batch: int = 16,
) -> np.ndarray:
    """Which pixels of each agent's tiled frame another agent sees at the same frame.

    Args:
        depth: ``(A, F, 2H, 2W)`` ground-truth z-depth in metres, tiled
            ``[[front, rear], [left, right]]``, ``inf`` on sky (the dataset's ``depth``).
        poses: ``(A, F, 3)`` ego poses ``(x, y, yaw)``.
        rig: the camera rig that rendered the depth (default :class:`CameraRig`; a dataset's is
            ``rig_from_info(dataset.json["rig"])``).
        rel_tol, abs_tol: the depth test accepts ``|z - d_b| ≤ rel_tol·z + abs_tol`` (against the
            range of b's depths around the projection; see the module docstring).
        frames_per_batch: frames processed at once (bounds memory, not the result).

    Returns:
        bool ``(A, F, 2H, 2W)``; all ``False`` when there is a single agent.

    Example:
        >>> import numpy as np
        >>> rig = CameraRig()
        >>> far = ground_plane_depth(rig, (32, 48), max_range=30.0)
        >>> depth = np.broadcast_to(far, (2, 1, 64, 96))
        >>> poses = np.array([[[0.0, 0.0, 0.0]], [[500.0, 0.0, np.pi]]])  # 500 m apart
        >>> bool(covisibility_masks(depth, poses, rig).any())
        False
    """
    return correspondences(
        depth, poses, rig, rel_tol=rel_tol, abs_tol=abs_tol, frames_per_batch=frames_per_batch
    )[0]


def correspondences(
    depth: np.ndarray,
    poses: np.ndarray,
    rig: CameraRig | None = None,
    *,
    rel_tol: float = REL_TOL,
    abs_tol: float = ABS_TOL,
    frames_per_batch: int = 16,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`covisibility_masks` with, for every co-visible pixel, where the other agent sees it.

    Returns ``(mask, partner, index)``, each ``(A, F, 2H, 2W)``: ``mask`` as
    :func:`covisibility_masks`; ``partner`` the agent that sees the pixel's point (the first one
    in index order; ``-1`` where none does); ``index`` the flat pixel index ``row · 2W + col``
    in ``partner``'s tiled frame at the same time of the pixel nearest to the projection
    (``-1`` where none).

    Example (two agents at the same pose: every ground pixel maps onto itself):
        >>> import numpy as np
        >>> rig = CameraRig()
        >>> depth = np.broadcast_to(ground_plane_depth(rig, (32, 48)), (2, 1, 64, 96))
        >>> mask, partner, index = correspondences(depth, np.zeros((2, 1, 3)), rig)
        >>> own = np.arange(64 * 96).reshape(64, 96)
        >>> bool((index[0, 0][mask[0, 0]] == own[mask[0, 0]]).all()), int(partner[0, 0].max())
        (True, 1)
    """
    depth, poses = _check(depth, poses)
    rig = rig or CameraRig()
    agents, frames = depth.shape[:2]
    mask = np.zeros(depth.shape, dtype=bool)
    partner = np.full(depth.shape, -1, dtype=np.int64)
    index = np.full(depth.shape, -1, dtype=np.int64)
    if agents < 2:
        return mask, partner, index
    for start in range(0, frames, frames_per_batch):
        stop = min(start + frames_per_batch, frames)
        got = _matches(depth[:, start:stop], poses[:, start:stop], rig, rel_tol, abs_tol)
        mask[:, start:stop], partner[:, start:stop], index[:, start:stop] = got
    return mask, partner, index


def _matches(
    depth: np.ndarray, poses: np.ndarray, rig: CameraRig, rel_tol: float, abs_tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`correspondences` for one batch of frames."""
    agents, frames = depth.shape[:2]
    views = untile_views(depth[..., None])[..., 0].astype(np.float64)  # (A, F, 4, H, W)
    height, width = views.shape[-2:]
    k = rig.intrinsics(height, width)
    # Flat tiled index of every (view, row, col): where a view pixel sits in the tiled frame.
    tiled_index = untile_views(np.arange(4 * height * width).reshape(2 * height, 2 * width, 1))
    tiled_index = tiled_index[..., 0]  # (4, H, W)
    finite = np.isfinite(views)
    cam_pts = np.where(finite, views, 0.0)[..., None] * pixel_rays(rig, (height, width))
    cam_to_world = rig.camera_to_world(poses)  # (A, F, 4, 4, 4)
    rot, trans = cam_to_world[..., :3, :3], cam_to_world[..., :3, 3]
    world = np.einsum("afvij,afvhwj->afvhwi", rot, cam_pts) + trans[..., None, None, :]
    seen = np.zeros(views.shape, dtype=bool)
    partner = np.full(views.shape, -1, dtype=np.int64)
    index = np.full(views.shape, -1, dtype=np.int64)
    frame_idx = np.arange(frames)[:, None, None, None]
    for a in range(agents):
        for b in range(agents):
            if a == b:
                continue
            for j in range(rig.num_views):
                # Point in b's camera j: R^T (X - t), batched over a's frames, views and pixels.
                rel = world[a] - trans[b, :, j][:, None, None, None, :]
                p = np.einsum("fij,fvhwi->fvhwj", rot[b, :, j], rel)
                z = p[..., 2]
                front = finite[a] & (z > 1e-6)
                zs = np.where(front, z, 1.0)
                u = k[0, 0] * p[..., 0] / zs + k[0, 2]
                v = k[1, 1] * p[..., 1] / zs + k[1, 2]
                inside = front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
                lo, hi = _depth_range(views[b, :, j], frame_idx, u, v)
                tol = rel_tol * z + abs_tol
                hit = inside & (z >= lo - tol) & (z <= hi + tol)
                first = hit & ~seen[a]
                col = np.clip(np.floor(np.nan_to_num(u)), 0, width - 1).astype(np.int64)
                row = np.clip(np.floor(np.nan_to_num(v)), 0, height - 1).astype(np.int64)
                partner[a][first] = b
                index[a][first] = tiled_index[j][row[first], col[first]]
                seen[a] |= hit

    def tile(x):
        return tile_views(x[..., None])[..., 0]

    return tile(seen), tile(partner), tile(index)


def _depth_range(
    depth: np.ndarray, frame_idx: np.ndarray, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of ``depth (F, H, W)`` over the 2×2 pixel centres around ``(u, v)``."""
    height, width = depth.shape[-2:]
    # Pixel centres sit at integer + 0.5; clip so that points outside give harmless indices.
    u0 = np.clip(np.floor(np.nan_to_num(u) - 0.5), 0, width - 1).astype(np.int64)
    v0 = np.clip(np.floor(np.nan_to_num(v) - 0.5), 0, height - 1).astype(np.int64)
    u1, v1 = np.minimum(u0 + 1, width - 1), np.minimum(v0 + 1, height - 1)
    corners = np.stack(
        [depth[frame_idx, vv, uu] for vv, uu in ((v0, u0), (v0, u1), (v1, u0), (v1, u1))]
    )
    return corners.min(axis=0), corners.max(axis=0)
