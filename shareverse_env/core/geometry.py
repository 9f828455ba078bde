"""Geometry of the driving world: poses, the four-camera rig, chunk trajectories and raymaps.

This module is the leaf of the package (numpy only) and fixes the conventions that every other
part shares:

* World frame: right-handed, metres, z up. An ego pose is SE(2) ``(x, y, yaw)``; yaw is measured
  counter-clockwise from the world x axis and the car's own frame has x forward, y left, z up.
* Cameras follow OpenCV: x right, y down, z forward. Four level cameras per car, in the order
  :data:`VIEW_NAMES` (front, rear, left, right), each with a 90° horizontal field of view.
* Tiled frames put the views row-major as ``[[front, rear], [left, right]]``
  (:mod:`shareverse_env.core.tiling`).
* A chunk has :data:`CHUNK_FRAMES` frames planned from one action; frame 0 is the current pose.

Example:
    >>> import numpy as np
    >>> rig = CameraRig()
    >>> traj = plan_chunk(np.zeros(3), np.array([10.0, 0.0, 0.0]))
    >>> traj.shape, float(traj[-1, 0])
    ((29, 3), 10.0)
    >>> rays, center = raymaps(traj[None], rig, (64, 96))
    >>> rays.shape, pack_raymaps(rays).shape
    ((1, 29, 16, 24, 6), (1, 8, 16, 24, 24))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shareverse_env.core.tiling import tile_views

VIEW_NAMES: tuple[str, ...] = ("front", "rear", "left", "right")
"""Camera order inside a rig and inside a tiled frame (row-major 2×2)."""

VIEW_YAWS: tuple[float, ...] = (0.0, np.pi, np.pi / 2, -np.pi / 2)
"""Yaw of each camera's optical axis relative to the car's heading (left is +90°)."""

FPS = 10
"""Frames per second of every chunk, dataset and video."""

CHUNK_FRAMES = 29
"""Frames a chunk plans: the conditioning frame (the current pose) plus 28 new ones."""

NEW_FRAMES_PER_CHUNK = CHUNK_FRAMES - 1
"""Frames a single env step adds per agent (2.8 s at 10 fps)."""

MEMORY_FRAMES = 4
"""Frames retrieved from the spatial memory cache for each chunk."""

MAX_DEPTH = 1000.0
"""Largest finite z-depth (metres) of an estimated depth map: the depth network's output and an
aligned estimate are clamped here (the renderer draws geometry up to 250 m; ``inf`` is sky)."""

VAE_SPATIAL_FACTOR = 8
"""Pixels per latent cell, along each axis, of the CogVideoX VAE (the raymaps' resolution)."""

VAE_TEMPORAL_FACTOR = 4
"""Pixel frames per latent frame of the causal CogVideoX VAE (after the first)."""


# --------------------------------------------------------------------------------------------
# Poses
# --------------------------------------------------------------------------------------------


def wrap_angle(angle: np.ndarray | float) -> np.ndarray:
    """Wrap angles to ``[-pi, pi)``."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def compose_se2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return ``a ∘ b``: the pose ``b`` (given in the frame of ``a``) expressed in a's parent frame.

    Both arguments are ``(..., 3)`` arrays of ``(x, y, yaw)`` and broadcast against each other.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    c, s = np.cos(a[..., 2]), np.sin(a[..., 2])
    x = a[..., 0] + c * b[..., 0] - s * b[..., 1]
    y = a[..., 1] + s * b[..., 0] + c * b[..., 1]
    return np.stack([x, y, a[..., 2] + b[..., 2]], axis=-1)


def inverse_se2(a: np.ndarray) -> np.ndarray:
    """Inverse of SE(2) poses ``(..., 3)``: ``compose_se2(inverse_se2(a), a)`` is the identity."""
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a[..., 2]), np.sin(a[..., 2])
    x = -(c * a[..., 0] + s * a[..., 1])
    y = s * a[..., 0] - c * a[..., 1]
    return np.stack([x, y, -a[..., 2]], axis=-1)


def relative_se2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pose of ``b`` in the frame of ``a`` (``a⁻¹ ∘ b``)."""
    return compose_se2(inverse_se2(a), b)


def world_to_ego(pose: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Express world points ``xy (..., 2)`` in the ego frame of ``pose (..., 3)``."""
    pose = np.asarray(pose, dtype=np.float64)
    d = np.asarray(xy, dtype=np.float64) - pose[..., :2]
    c, s = np.cos(pose[..., 2]), np.sin(pose[..., 2])
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)


def se2_to_se3(pose: np.ndarray, z: float | np.ndarray = 0.0) -> np.ndarray:
    """Lift SE(2) poses ``(..., 3)`` to homogeneous SE(3) matrices ``(..., 4, 4)`` at height z."""
    pose = np.asarray(pose, dtype=np.float64)
    c, s = np.cos(pose[..., 2]), np.sin(pose[..., 2])
    out = np.zeros((*pose.shape[:-1], 4, 4))
    out[..., 0, 0], out[..., 0, 1] = c, -s
    out[..., 1, 0], out[..., 1, 1] = s, c
    out[..., 2, 2] = 1.0
    out[..., 0, 3], out[..., 1, 3] = pose[..., 0], pose[..., 1]
    out[..., 2, 3] = z
    out[..., 3, 3] = 1.0
    return out


def check_finite_poses(poses: np.ndarray, name: str = "poses") -> np.ndarray:
    """Return ``poses`` as a float64 ``(..., 3)`` array, or raise ``ValueError`` naming the problem."""
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (..., 3) of (x, y, yaw); got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; got non-finite values in {arr.shape} array")
    return arr


# --------------------------------------------------------------------------------------------
# The camera rig
# --------------------------------------------------------------------------------------------


def _default_offsets() -> tuple[tuple[float, float], ...]:
    # Roof-mounted, slightly spread out like a real surround rig (front, rear, left, right).
    return ((0.6, 0.0), (-0.6, 0.0), (0.0, 0.45), (0.0, -0.45))


@dataclass(frozen=True)
class CameraRig:
    """Four level cameras on the car roof: front, rear, left, right (OpenCV convention).

    Args:
        mount_height: camera height above the ground in metres.
        offsets: ``(x, y)`` position of each camera in the car frame (x forward, y left).
        hfov_deg: horizontal field of view of every camera; 90° covers 360° with four views.

    Example:
        >>> rig = CameraRig()
        >>> K = rig.intrinsics(64, 96)
        >>> [round(float(v), 6) for v in (K[0, 0], K[0, 2], K[1, 2])]
        [48.0, 48.0, 32.0]
        >>> rig.camera_to_world(np.array([0.0, 0.0, 0.0])).shape
        (4, 4, 4)
    """

    mount_height: float = 1.9
    offsets: tuple[tuple[float, float], ...] = field(default_factory=_default_offsets)
    hfov_deg: float = 90.0

    def __post_init__(self) -> None:
        if len(self.offsets) != len(VIEW_NAMES):
            raise ValueError(f"offsets needs one (x, y) per view {VIEW_NAMES}; got {self.offsets}")
        if not 0.0 < self.hfov_deg < 180.0:
            raise ValueError(f"hfov_deg must lie in (0, 180); got {self.hfov_deg}")

    @property
    def num_views(self) -> int:
        return len(VIEW_NAMES)

    def focal(self, width: int) -> float:
        """Focal length in pixels for a view ``width`` pixels wide (square pixels)."""
        return 0.5 * width / np.tan(np.deg2rad(self.hfov_deg) / 2)

    def intrinsics(self, height: int, width: int) -> np.ndarray:
        """The 3×3 pinhole matrix K of each view; the principal point is the image centre.

        Pixel ``(u, v)`` covers ``[u, u+1) × [v, v+1)``, so its centre is at ``u + 0.5``.
        """
        f = self.focal(width)
        return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])

    def camera_to_ego(self) -> np.ndarray:
        """``(4, 4, 4)``: for each view, the SE(3) transform from camera to car coordinates."""
        out = np.zeros((4, 4, 4))
        for i, (yaw, (ox, oy)) in enumerate(zip(VIEW_YAWS, self.offsets, strict=True)):
            c, s = np.cos(yaw), np.sin(yaw)
            # Columns are the camera's x (right), y (down) and z (forward) axes in the car frame.
            out[i, :3, 0] = (s, -c, 0.0)
            out[i, :3, 1] = (0.0, 0.0, -1.0)
            out[i, :3, 2] = (c, s, 0.0)
            out[i, :3, 3] = (ox, oy, self.mount_height)
            out[i, 3, 3] = 1.0
        return out

    def camera_to_world(self, poses: np.ndarray) -> np.ndarray:
        """``(..., 4, 4, 4)`` camera-to-world transforms of every view for ego poses ``(..., 3)``."""
        return se2_to_se3(poses)[..., None, :, :] @ self.camera_to_ego()

    def camera_yaws(self, poses: np.ndarray) -> np.ndarray:
        """World yaw of each view's optical axis, ``(..., 4)``."""
        return np.asarray(poses)[..., 2:3] + np.asarray(VIEW_YAWS)

    def camera_positions(self, poses: np.ndarray) -> np.ndarray:
        """World ``(x, y, z)`` of each camera centre, ``(..., 4, 3)``."""
        return self.camera_to_world(poses)[..., :3, 3]


# --------------------------------------------------------------------------------------------
# Pose-delta kinematics
# --------------------------------------------------------------------------------------------


def ego_chunk_trajectory(action: np.ndarray, num_frames: int = CHUNK_FRAMES) -> np.ndarray:
    """Per-frame ego poses ``(..., num_frames, 3)`` for a pose-delta action ``(..., 3)``.

    The action ``(forward, lateral, yaw)`` is the pose change over the chunk in the ego frame at
    its start. Positions follow a cubic Hermite curve from the origin to ``(forward, lateral)``
    whose tangents point along the start heading and the end heading, both scaled by ``forward``
    (so a pure forward action moves at constant speed, and a pure sideways one slides smoothly).
    Yaw changes linearly, i.e. at a constant rate. Frame 0 is the identity and the last frame is
    exactly the action.
    """
    a = np.asarray(action, dtype=np.float64)
    s = np.linspace(0.0, 1.0, num_frames)
    s2, s3 = s * s, s * s * s
    h10 = s3 - 2 * s2 + s  # weight of the start tangent
    h01 = -2 * s3 + 3 * s2  # weight of the end point
    h11 = s3 - s2  # weight of the end tangent
    fwd, lat, yaw = a[..., 0:1], a[..., 1:2], a[..., 2:3]
    x = h10 * fwd + h01 * fwd + h11 * fwd * np.cos(yaw)
    y = h01 * lat + h11 * fwd * np.sin(yaw)
    out = np.stack([x, y, s * yaw], axis=-1)
    out[..., -1, :] = a  # exact end pose, free of rounding
    return out


def plan_chunk(start: np.ndarray, action: np.ndarray, num_frames: int = CHUNK_FRAMES) -> np.ndarray:
    """World poses ``(..., num_frames, 3)`` of a chunk that starts at ``start`` and applies ``action``."""
    ego = ego_chunk_trajectory(action, num_frames)
    return compose_se2(np.asarray(start, dtype=np.float64)[..., None, :], ego)


# --------------------------------------------------------------------------------------------
# Raymaps (ShareVerse Sec. 3.2)
# --------------------------------------------------------------------------------------------


def camera_ray_directions(
    rig: CameraRig, view_hw: tuple[int, int], downsample: int = 1
) -> np.ndarray:
    """Unit ray directions in camera coordinates at the centres of ``downsample``-sized cells.

    Returns ``(h, w, 3)`` with ``h = H / downsample``; cell ``(i, j)`` covers pixels
    ``[s·j, s·(j+1)) × [s·i, s·(i+1))`` and its ray passes through that block's centre.
    """
    height, width = view_hw
    if height % downsample or width % downsample:
        raise ValueError(f"view size {view_hw} must be divisible by downsample={downsample}")
    k = rig.intrinsics(height, width)
    h, w = height // downsample, width // downsample
    u = (np.arange(w) + 0.5) * downsample
    v = (np.arange(h) + 0.5) * downsample
    x = (u - k[0, 2]) / k[0, 0]
    y = (v - k[1, 2]) / k[1, 1]
    d = np.stack(np.broadcast_arrays(x[None, :], y[:, None], np.ones((h, w))), axis=-1)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def raymaps(
    poses: np.ndarray,
    rig: CameraRig,
    view_hw: tuple[int, int],
    downsample: int = VAE_SPATIAL_FACTOR,
    center: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Tiled 6-channel raymaps ``[r_d, r_o]`` for ego poses ``(A, F, 3)`` of every agent of a chunk.

    ``r_d`` is the unit world-frame ray direction of each cell (K⁻¹ then the camera rotation R),
    ``r_o`` the camera centre minus ``center``. When ``center`` is ``None`` it is the mean camera
    centre over all agents, frames and views of the chunk, so that every agent's raymap lives in
    one shared, mean-normalised coordinate system; pass the returned centre to encode other frames
    (e.g. retrieved memory) in that same system.

    Returns ``(rays (A, F, 2h, 2w, 6) float32, center (3,) float64)`` where ``h, w`` is the view
    size divided by ``downsample`` (the VAE's 8× at latent resolution).
    """
    poses = check_finite_poses(poses)
    if poses.ndim != 3:
        raise ValueError(f"poses must have shape (agents, frames, 3); got {poses.shape}")
    cam = rig.camera_to_world(poses)  # (A, F, 4, 4, 4)
    rot, trans = cam[..., :3, :3], cam[..., :3, 3]  # (A, F, 4, 3, 3), (A, F, 4, 3)
    if center is None:
        center = trans.reshape(-1, 3).mean(axis=0)
    center = np.asarray(center, dtype=np.float64)
    d_cam = camera_ray_directions(rig, view_hw, downsample)  # (h, w, 3)
    # R · d for every cell as one batched (3×3)·(3×hw) product: 18× faster than the equivalent
    # einsum, and the training loader computes raymaps for every example of every step.
    h, w = d_cam.shape[:2]
    d_world = (
        np.matmul(rot, d_cam.reshape(-1, 3).T).swapaxes(-1, -2).reshape(*rot.shape[:-2], h, w, 3)
    )
    origin = np.broadcast_to((trans - center)[..., None, None, :], d_world.shape)
    views = np.concatenate([d_world, origin], axis=-1)  # (A, F, 4, h, w, 6)
    return tile_views(views).astype(np.float32), center


def pack_raymaps(rays: np.ndarray, temporal_factor: int = VAE_TEMPORAL_FACTOR) -> np.ndarray:
    """Pack per-frame raymaps ``(..., F, h, w, C)`` into latent frames ``(..., F_lat, h, w, 4C)``.

    Matches the causal VAE: latent frame 0 stands for pixel frame 0 alone, every later latent
    frame for the next ``temporal_factor`` pixel frames. Frame 0 is repeated to fill its group,
    so ``F`` must be ``1 + temporal_factor·k`` (29 → 8, 1 → 1). Within a latent frame the channels
    are ordered frame by frame: ``[frame0 (C), frame1 (C), frame2 (C), frame3 (C)]``.
    """
    frames = rays.shape[-4]
    if (frames - 1) % temporal_factor:
        raise ValueError(f"frame count must be 1 + {temporal_factor}·k; got {frames}")
    first = np.repeat(rays[..., :1, :, :, :], temporal_factor - 1, axis=-4)
    padded = np.concatenate([first, rays], axis=-4)  # (..., F + tf - 1, h, w, C)
    lead = padded.shape[:-4]
    f_lat = padded.shape[-4] // temporal_factor
    h, w, c = padded.shape[-3:]
    grouped = padded.reshape(*lead, f_lat, temporal_factor, h, w, c)
    grouped = np.moveaxis(grouped, -4, -2)  # (..., f_lat, h, w, tf, C)
    return grouped.reshape(*lead, f_lat, h, w, temporal_factor * c)


def latent_frame_count(frames: int, temporal_factor: int = VAE_TEMPORAL_FACTOR) -> int:
    """Latent frames the causal VAE makes of ``frames`` pixel frames (29 → 8, 1 → 1)."""
    if frames < 1 or (frames - 1) % temporal_factor:
        raise ValueError(f"frame count must be 1 + {temporal_factor}·k; got {frames}")
    return (frames - 1) // temporal_factor + 1
