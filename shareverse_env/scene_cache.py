"""A shared, explicit 3D scene cache: per-frame RGB-D buffers, forward-splatted into any rig camera.

A :class:`SceneBuffer` is one agent's four views at one time (tiled ``[[front, rear], [left,
right]]``): RGB, metric z-depth along each camera's optical axis (the renderer's convention,
OpenCV cameras, ``inf`` = sky), the ego pose, the agent and the time. A :class:`SceneCache` keeps
buffers separate (no fused cloud), lifts each one to world points once, and renders any subset
into the cameras of planned ego poses with a pure-torch z-buffer:

* finite pixels become world points (``depth · K⁻¹ [u+½, v+½, 1]``, then camera-to-world);
* sky pixels become directions at infinity, rendered with the camera rotation only;
* every point is splatted with a footprint of 1×1, 2×2 or 3×3 target pixels chosen from its
  magnification (source depth / target depth), so that a forward move leaves no pinholes on the
  near road while a frame re-rendered from its own pose reproduces itself exactly;
* the nearest depth wins (sky loses to everything), via ``scatter_reduce`` ``amin`` on a packed
  ``(float32 depth bits, point index)`` key; then, among the candidates within
  :data:`RESOLVE_TOLERANCE` of that depth (the same surface), the finest footprint wins, then
  the one projected closest to the pixel centre, so that a far buffer's coarse splats do not
  paint over a nearer buffer's sharper view of the same surface.

The cache depends on :mod:`shareverse_env.geometry`, numpy and torch only.

Example:
    >>> import numpy as np
    >>> from shareverse_env.geometry import CameraRig
    >>> rig, hw = CameraRig(), (16, 24)
    >>> depth = np.full((32, 48), np.inf, np.float32)
    >>> depth[16:] = 5.0  # a wall of z-depth 5 m in the lower half of every view
    >>> rgb = np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    >>> cache = SceneCache(rig, hw)
    >>> cache.add(SceneBuffer(rgb, depth, np.zeros(3), agent=0, time=0))
    >>> out = cache.render(np.zeros((1, 3)))
    >>> bool(out.valid.all()), bool((out.rgb[0] == rgb).all())
    (True, True)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from shareverse_env.geometry import (
    CameraRig,
    camera_ray_directions,
    check_finite_poses,
    tile_views,
    untile_views,
)

# Car dimensions copied from ``shareverse_env/world/vehicles.py`` (CAR_LENGTH, CAR_WIDTH and
# BODY_HEIGHT + CABIN_HEIGHT); the cache must not import the world package. Keep them in sync.
CAR_LENGTH = 4.5
"""Length of every car body, metres (``vehicles.CAR_LENGTH``)."""
CAR_WIDTH = 1.9
"""Width of every car body, metres (``vehicles.CAR_WIDTH``)."""
CAR_HEIGHT = 1.5
"""Roof height of every car, metres (``vehicles.BODY_HEIGHT + vehicles.CABIN_HEIGHT``)."""
CAR_MARGIN = 0.15
"""Extra margin around the car box inside which points are dropped, metres."""

NEAR = 0.05
"""Points nearer than this z-depth (metres) to a target camera are not drawn."""

MAX_FOOTPRINT = 3
"""Largest splat footprint, pixels per side."""

RESOLVE_TOLERANCE: tuple[float, float] | None = (0.1, 0.1)
"""(relative, metres): candidates this close behind a pixel's nearest depth compete on footprint
size (finest wins); ``None`` for a plain nearest-depth z-buffer."""

CONTINUITY = 0.3
"""Neighbouring pixels whose z-depths differ by at most this fraction are one surface."""

_KEY_EMPTY = torch.iinfo(torch.int64).max


@dataclass(frozen=True)
class SceneBuffer:
    """One agent's four tiled views at one time.

    Attributes:
        rgb: ``(2H, 2W, 3)`` uint8, tiled ``[[front, rear], [left, right]]``.
        depth: ``(2H, 2W)`` float32 metric z-depth along each camera's optical axis; ``inf`` on
            sky; never NaN or negative.
        pose: ``(3,)`` finite ego pose ``(x, y, yaw)``.
        agent: the agent's index (≥ 0).
        time: the frame index (≥ 0).
    """

    rgb: np.ndarray
    depth: np.ndarray
    pose: np.ndarray
    agent: int
    time: int

    def __post_init__(self) -> None:
        rgb, depth = np.asarray(self.rgb), np.asarray(self.depth)
        if rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be uint8; got {rgb.dtype}")
        if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.shape[0] % 2 or rgb.shape[1] % 2:
            raise ValueError(f"rgb must have shape (2H, 2W, 3) with even sides; got {rgb.shape}")
        if depth.dtype != np.float32:
            raise ValueError(f"depth must be float32; got {depth.dtype}")
        if depth.shape != rgb.shape[:2]:
            raise ValueError(f"depth must have shape {rgb.shape[:2]} (as rgb); got {depth.shape}")
        if np.isnan(depth).any():
            raise ValueError("depth holds NaN; use inf for sky")
        if (depth < 0).any():
            raise ValueError("depth must be non-negative (or inf for sky); got negative values")
        pose = np.asarray(self.pose, dtype=np.float64)
        if pose.shape != (3,):
            raise ValueError(f"pose must have shape (3,) of (x, y, yaw); got {pose.shape}")
        if not np.isfinite(pose).all():
            raise ValueError(f"pose must be finite; got {pose}")
        for name in ("agent", "time"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"{name} must be a non-negative int; got {value!r}")
        object.__setattr__(self, "rgb", rgb)
        object.__setattr__(self, "depth", depth)
        object.__setattr__(self, "pose", pose)
        object.__setattr__(self, "agent", int(self.agent))
        object.__setattr__(self, "time", int(self.time))


@dataclass(frozen=True)
class CacheRender:
    """What :meth:`SceneCache.render` returns, leading shape ``(F,)``.

    Attributes:
        rgb: ``(F, 2H, 2W, 3)`` uint8 (0 where nothing was drawn).
        depth: ``(F, 2H, 2W)`` float32 z-depth; ``inf`` on sky and where nothing was drawn.
        valid: ``(F, 2H, 2W)`` bool: some cached point (or sky direction) was drawn there.
    """

    rgb: np.ndarray
    depth: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class _Lifted:
    """A buffer's kept pixels: world points relative to ``origin`` and sky directions."""

    buffer: SceneBuffer
    origin: np.ndarray  # (3,) float64: (x, y, 0) of the buffer's pose
    points: torch.Tensor  # (N, 3) float32, world minus origin
    point_rgb: torch.Tensor  # (N, 3) uint8
    point_dxy: torch.Tensor  # (N, 2, 3) float32 world offsets to the right / lower neighbour
    sky: torch.Tensor  # (M, 3) float32 unit world directions
    sky_rgb: torch.Tensor  # (M, 3) uint8
    sky_yaw: torch.Tensor  # (M,) float64 world yaw of the source camera


class SceneCache:
    """Separate per-frame RGB-D buffers of all agents, rendered by forward splatting.

    Args:
        rig: the camera rig of every buffer and every rendered view.
        view_hw: ``(H, W)`` of each view (buffers are ``(2H, 2W)`` tiled frames).
        capacity: most buffers kept; adding past it evicts the oldest added (FIFO).
        device: torch device for the stored points and the rendering.
    """

    def __init__(
        self,
        rig: CameraRig,
        view_hw: tuple[int, int],
        capacity: int = 64,
        device: str | torch.device = "cpu",
    ) -> None:
        height, width = (int(v) for v in view_hw)
        if height <= 0 or width <= 0:
            raise ValueError(f"view_hw must be positive; got {view_hw}")
        if int(capacity) < 1:
            raise ValueError(f"capacity must be ≥ 1; got {capacity}")
        self.rig = rig
        self.view_hw = (height, width)
        self.capacity = int(capacity)
        self.device = torch.device(device)
        rays = camera_ray_directions(rig, self.view_hw, 1)
        self._rays = rays / rays[..., 2:3]  # (H, W, 3): camera-frame point per unit z-depth
        self._items: deque[_Lifted] = deque()

    # ------------------------------------------------------------------------------- storage

    def __len__(self) -> int:
        return len(self._items)

    @property
    def buffers(self) -> list[SceneBuffer]:
        """The kept buffers, oldest first (index ``i`` is what ``render``/``select`` call ``i``)."""
        return [item.buffer for item in self._items]

    def clear(self) -> None:
        """Drop every buffer."""
        self._items.clear()

    def add(self, buffer: SceneBuffer, car_poses: np.ndarray | None = None) -> None:
        """Lift ``buffer`` to world points and keep it, evicting the oldest past ``capacity``.

        Args:
            buffer: the views to keep; their size must match ``view_hw``.
            car_poses: ``(A, 3)`` poses of every agent's car at the buffer's time (the buffer's
                own car included, if it should be dropped too); points inside a box of
                :data:`CAR_LENGTH` × :data:`CAR_WIDTH` × :data:`CAR_HEIGHT` (plus
                :data:`CAR_MARGIN`) around any of them are dropped. ``None``: drop nothing.

        Everything is validated before the cache changes.
        """
        if not isinstance(buffer, SceneBuffer):
            raise ValueError(f"buffer must be a SceneBuffer; got {type(buffer).__name__}")
        height, width = self.view_hw
        if buffer.rgb.shape[:2] != (2 * height, 2 * width):
            raise ValueError(
                f"buffer.rgb must have shape {(2 * height, 2 * width, 3)} for view_hw "
                f"{self.view_hw}; got {buffer.rgb.shape}"
            )
        cars = None
        if car_poses is not None:
            cars = check_finite_poses(car_poses, "car_poses")
            if cars.ndim != 2:
                raise ValueError(f"car_poses must have shape (A, 3); got {cars.shape}")
        item = self._lift(buffer, cars)
        self._items.append(item)
        while len(self._items) > self.capacity:
            self._items.popleft()

    def _lift(self, buffer: SceneBuffer, cars: np.ndarray | None) -> _Lifted:
        depth = untile_views(buffer.depth[..., None])[..., 0].astype(np.float64)  # (4, H, W)
        rgb = untile_views(buffer.rgb)  # (4, H, W, 3)
        cam = self.rig.camera_to_world(buffer.pose)  # (4, 4, 4)
        rot, trans = cam[:, :3, :3], cam[:, :3, 3]
        origin = np.array([buffer.pose[0], buffer.pose[1], 0.0])
        finite = np.isfinite(depth)
        cam_pts = np.where(finite, depth, 0.0)[..., None] * self._rays  # (4, H, W, 3)
        world = np.einsum("vij,vhwj->vhwi", rot, cam_pts) + (trans - origin)[:, None, None, :]
        keep = finite.copy()
        if cars is not None and len(cars):
            keep &= ~self._on_car(world + origin, cars)
        sky = np.isinf(depth)
        dirs = np.einsum("vij,hwj->vhwi", rot, self._rays)
        dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
        yaws = np.broadcast_to(self.rig.camera_yaws(buffer.pose)[:, None, None], depth.shape)

        def t(x, dtype):
            return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype, device=self.device)

        return _Lifted(
            buffer=buffer,
            origin=origin,
            points=t(world[keep], torch.float32),
            point_rgb=t(rgb[keep], torch.uint8),
            point_dxy=t(self._pixel_offsets(world, depth, rot)[keep], torch.float32),
            sky=t(dirs[sky], torch.float32),
            sky_rgb=t(rgb[sky], torch.uint8),
            sky_yaw=t(yaws[sky], torch.float64),
        )

    def _pixel_offsets(self, world: np.ndarray, depth: np.ndarray, rot: np.ndarray) -> np.ndarray:
        """``(4, H, W, 2, 3)`` world offsets from each pixel's point to its right / lower one.

        Where the neighbour is missing, sky, or on another surface (z-depth differing by more
        than :data:`CONTINUITY` relatively), the offset is one pixel at the same depth along the
        camera's x (right) or y (down) axis. Projected into a target camera these give the
        source pixel's footprint there (its magnification, foreshortening included).
        """
        focal = self.rig.focal(self.view_hw[1])
        z = np.where(np.isfinite(depth), depth, 0.0)
        out = np.empty((*world.shape[:-1], 2, 3))
        for axis, (col, grid_axis) in enumerate(((0, 2), (1, 1))):
            fallback = (z / focal)[..., None] * rot[:, None, None, :, col]
            nxt = np.roll(world, -1, axis=grid_axis)
            z_next = np.roll(depth, -1, axis=grid_axis)
            ok = np.isfinite(depth) & np.isfinite(z_next)
            with np.errstate(invalid="ignore"):
                ok &= np.abs(z_next - depth) <= CONTINUITY * depth
            last = np.zeros(depth.shape, dtype=bool)
            if grid_axis == 2:
                last[:, :, -1] = True
            else:
                last[:, -1, :] = True
            ok &= ~last
            out[..., axis, :] = np.where(ok[..., None], nxt - world, fallback)
        return out

    @staticmethod
    def _on_car(world: np.ndarray, cars: np.ndarray) -> np.ndarray:
        """Bool mask of world points ``(..., 3)`` inside any car box of ``cars (A, 3)``."""
        out = np.zeros(world.shape[:-1], dtype=bool)
        hx, hy = CAR_LENGTH / 2 + CAR_MARGIN, CAR_WIDTH / 2 + CAR_MARGIN
        low = world[..., 2] <= CAR_HEIGHT + CAR_MARGIN
        for x, y, yaw in cars:
            dx, dy = world[..., 0] - x, world[..., 1] - y
            c, s = np.cos(yaw), np.sin(yaw)
            lx, ly = c * dx + s * dy, -s * dx + c * dy
            out |= low & (np.abs(lx) <= hx) & (np.abs(ly) <= hy)
        return out

    # ------------------------------------------------------------------------------- rendering

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(len(self._items)))
        idx = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        for i in idx:
            if not 0 <= i < len(self._items):
                raise ValueError(f"indices must lie in [0, {len(self._items)}); got {i}")
        return idx

    def render(self, poses: np.ndarray, indices=None) -> CacheRender:
        """Splat the kept buffers (or those at ``indices``) into the four views at ``poses (F, 3)``.

        Returns :class:`CacheRender` with tiled ``(F, 2H, 2W, ...)`` arrays.
        """
        poses = check_finite_poses(poses)
        if poses.ndim != 2:
            raise ValueError(f"poses must have shape (F, 3); got {poses.shape}")
        idx = self._indices(indices)
        rgb, depth, valid = self._render(poses, idx, self.view_hw)
        height, width = self.view_hw
        f = len(poses)
        rgb = tile_views(rgb.reshape(f, 4, height, width, 3).numpy())
        depth = tile_views(depth.reshape(f, 4, height, width, 1).numpy())[..., 0]
        valid = tile_views(valid.reshape(f, 4, height, width, 1).numpy())[..., 0]
        return CacheRender(rgb=rgb, depth=depth, valid=valid)

    def coverage(self, poses: np.ndarray, downsample: int = 2, max_poses: int = 4) -> np.ndarray:
        """``(len(self),)`` fraction of the views at ``poses (F, 3)`` each buffer alone covers.

        Cheap: each buffer is rendered alone at ``1/downsample`` resolution into at most
        ``max_poses`` poses spread evenly over ``poses`` (first and last included).
        """
        poses = check_finite_poses(poses)
        if poses.ndim != 2 or not len(poses):
            raise ValueError(f"poses must have shape (F, 3) with F ≥ 1; got {poses.shape}")
        if int(downsample) < 1 or int(max_poses) < 1:
            raise ValueError(f"downsample and max_poses must be ≥ 1; got {downsample}, {max_poses}")
        take = np.unique(np.linspace(0, len(poses) - 1, min(int(max_poses), len(poses))).round())
        sub = poses[take.astype(int)]
        height, width = self.view_hw
        hw = (max(1, height // int(downsample)), max(1, width // int(downsample)))
        out = np.zeros(len(self._items))
        for i in range(len(self._items)):
            out[i] = float(self._render(sub, [i], hw, resolve=False)[2].float().mean())
        return out

    def select(self, poses: np.ndarray, k: int) -> np.ndarray:
        """Indices of the ``k`` buffers with the highest :meth:`coverage` of ``poses``, best first.

        Ties go to the newer buffer.
        """
        if int(k) < 0:
            raise ValueError(f"k must be ≥ 0; got {k}")
        cov = self.coverage(poses)
        order = np.lexsort((-np.arange(len(cov)), -cov))  # coverage desc, then newest first
        return order[: int(k)].astype(np.int64)

    def _render(self, poses: np.ndarray, idx: list[int], hw: tuple[int, int], resolve: bool = True):
        """Flat ``(F·4·h·w, ...)`` rgb uint8, depth float32 and valid bool tensors."""
        height, width = hw
        dev = self.device
        k = self.rig.intrinsics(height, width)
        intr = (float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]))
        # The footprint is measured in the target's pixels; the offsets in the source's.
        scale = float(k[0, 0]) / self.rig.focal(self.view_hw[1])
        cam = self.rig.camera_to_world(poses).reshape(-1, 4, 4)  # (C, 4, 4)
        num_cams = len(cam)
        origin = np.array([poses[0, 0], poses[0, 1], 0.0])
        items = [self._items[i] for i in idx]

        def cat(name, shape, dtype=torch.float32):
            empty = torch.zeros(shape, dtype=dtype, device=dev)
            return torch.cat([empty] + [getattr(it, name) for it in items])

        shifts = [torch.tensor(it.origin - origin, dtype=torch.float32, device=dev) for it in items]
        pts = torch.cat(
            [torch.zeros((0, 3), device=dev)]
            + [it.points + shift for it, shift in zip(items, shifts, strict=True)]
        )
        p_dxy = cat("point_dxy", (0, 2, 3)) * scale
        sky = cat("sky", (0, 3))
        s_yaw = cat("sky_yaw", (0,), torch.float64)
        all_rgb = torch.cat(
            [cat("point_rgb", (0, 3), torch.uint8), cat("sky_rgb", (0, 3), torch.uint8)]
        )
        n_pts, n_sky = len(pts), len(sky)
        total = max(1, n_pts + n_sky)
        rot = torch.tensor(cam[:, :3, :3], dtype=torch.float32, device=dev)
        trans = torch.tensor(cam[:, :3, 3] - origin, dtype=torch.float32, device=dev)
        cam_yaw = torch.tensor(
            self.rig.camera_yaws(poses).reshape(-1), dtype=torch.float64, device=dev
        )
        pixels = height * width
        zbuf = torch.full((num_cams * pixels,), _KEY_EMPTY, dtype=torch.int64, device=dev)
        parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        step = max(1, 4_000_000 // total)
        for c0 in range(0, num_cams, step):
            c1 = min(num_cams, c0 + step)
            if n_pts:
                pc = torch.einsum("cnj,cji->cni", pts[None] - trans[c0:c1, None], rot[c0:c1])
                ci, ni, u, v, z = _project(pc, pc[..., 2], NEAR, hw, intr)
                # Footprint: the extent of the source pixel's right / down neighbour offsets,
                # projected exactly (1×1 for a frame re-rendered from its own pose).
                d = torch.einsum("kaj,kji->kai", p_dxy[ni], rot[c0 + ci])  # (K, 2, 3)
                q = pc[ci, ni][:, None, :] + d
                qz = q[..., 2].clamp(min=NEAR)
                du = intr[0] * q[..., 0] / qz + intr[2] - u[:, None]
                dv = intr[1] * q[..., 1] / qz + intr[3] - v[:, None]
                ku = torch.ceil(du.abs().sum(-1) - 0.05).clamp(1, MAX_FOOTPRINT)
                kv = torch.ceil(dv.abs().sum(-1) - 0.05).clamp(1, MAX_FOOTPRINT)
                parts.append(_splat(zbuf, c0 + ci, ni, u, v, z, ku, kv, total, hw))
            if n_sky:
                sc = torch.einsum("nj,cji->cni", sky, rot[c0:c1])
                ci, ni, u, v, _ = _project(sc, sc[..., 2], 1e-6, hw, intr)
                dyaw = cam_yaw[c0 + ci] - s_yaw[ni]
                turned = torch.remainder(dyaw + np.pi, 2 * np.pi).sub(np.pi).abs() > 1e-6
                # Directions are only rotated: 1×1 when the camera's rotation is the source's.
                foot = turned.float() + 1.0
                inf = torch.full_like(u, float("inf"))
                parts.append(_splat(zbuf, c0 + ci, ni + n_pts, u, v, inf, foot, foot, total, hw))
        valid = zbuf != _KEY_EMPTY
        if resolve and parts and RESOLVE_TOLERANCE is not None:
            zbuf = _resolve(zbuf, valid, parts, total)
        win = torch.where(valid, zbuf % total, torch.zeros_like(zbuf))
        bits = torch.where(valid, zbuf // total, torch.zeros_like(zbuf)).to(torch.int32)
        depth = torch.where(valid, bits.view(torch.float32), torch.tensor(float("inf"), device=dev))
        if not len(all_rgb):
            all_rgb = torch.zeros((1, 3), dtype=torch.uint8, device=dev)
        rgb = torch.where(valid[:, None], all_rgb[win], 0).to(torch.uint8)
        return rgb.cpu(), depth.cpu(), valid.cpu()


def _project(pc, z, near, hw, intr):
    """Points ``pc (c, n, 3)`` in front (``z > near``) and near the view: indices, u, v, z."""
    height, width = hw
    fx, fy, cx, cy = intr
    zc = z.clamp(min=near)
    u = fx * pc[..., 0] / zc + cx
    v = fy * pc[..., 1] / zc + cy
    keep = (z > near) & (u > -MAX_FOOTPRINT) & (u < width + MAX_FOOTPRINT)
    keep &= (v > -MAX_FOOTPRINT) & (v < height + MAX_FOOTPRINT)
    ci, ni = torch.nonzero(keep, as_tuple=True)
    return ci, ni, u[ci, ni], v[ci, ni], z[ci, ni]


def _resolve(zbuf, valid, parts, total):
    """Second pass: among the candidates within :data:`RESOLVE_TOLERANCE` of each pixel's
    nearest depth, the finest footprint wins, then the one projected closest to the pixel
    centre: a coarse, magnified splat of a far buffer does not paint over a closer buffer's
    sharper view of the same surface, and a buffer seen from its own pose wins its own pixels."""
    rel, absolute = RESOLVE_TOLERANCE
    zmin = torch.where(valid, zbuf // total, torch.zeros_like(zbuf)).to(torch.int32)
    limit = zmin.view(torch.float32) * (1 + rel) + absolute
    best = torch.full_like(zbuf, _KEY_EMPTY)
    oks = []
    for idx, key, rank in parts:
        depth = (key // total).to(torch.int32).view(torch.float32)
        ok = depth <= limit[idx]
        oks.append(ok)
        best.scatter_reduce_(0, idx[ok], (rank * total + key % total)[ok], "amin")
    out = zbuf.clone()
    for (idx, key, rank), ok in zip(parts, oks, strict=True):
        won = ok & ((rank * total + key % total) == best[idx])
        out[idx[won]] = key[won]
    return out


def _splat(zbuf, cam, point, u, v, depth, ku, kv, total, hw):
    """Scatter-min packed ``(depth bits, point)`` keys over ``ku × kv`` footprints around (u, v).

    Returns the candidates ``(pixel index, key, rank)`` for :func:`_resolve`.
    """
    height, width = hw
    bits = depth.contiguous().view(torch.int32).to(torch.int64)
    key = bits * total + point.to(torch.int64)
    u0 = torch.floor(u - (ku - 1) / 2).to(torch.int64)
    v0 = torch.floor(v - (kv - 1) / 2).to(torch.int64)
    pix0 = cam.to(torch.int64) * (height * width)
    kul, kvl = ku.to(torch.int64), kv.to(torch.int64)
    area = kul * kvl
    # Most points are 1×1: the other footprint offsets only touch the larger ones.
    big = torch.nonzero(area > 1, as_tuple=True)[0]
    sets = {
        "all": (u, v, u0, v0, pix0, kul, kvl, key, area),
        "big": tuple(x[big] for x in (u, v, u0, v0, pix0, kul, kvl, key, area)),
    }
    idx_parts, key_parts, rank_parts = [], [], []
    for dy in range(MAX_FOOTPRINT):
        for dx in range(MAX_FOOTPRINT):
            su, sv, su0, sv0, spix, sku, skv, skey, sarea = sets["all" if dx == dy == 0 else "big"]
            pu, pv = su0 + dx, sv0 + dy
            ok = (dx < sku) & (dy < skv) & (pu >= 0) & (pu < width) & (pv >= 0) & (pv < height)
            sel = torch.nonzero(ok, as_tuple=True)[0]
            pu, pv = pu[sel], pv[sel]
            idx_parts.append(spix[sel] + pv * width + pu)
            key_parts.append(skey[sel])
            # Rank: footprint area, then the Chebyshev distance to the pixel centre (1/64 px).
            off = torch.maximum((su[sel] - pu - 0.5).abs(), (sv[sel] - pv - 0.5).abs())
            dist = torch.floor(off * 64).clamp(max=255).to(torch.int64)
            rank_parts.append(sarea[sel] * 256 + dist)
    idx, key = torch.cat(idx_parts), torch.cat(key_parts)
    zbuf.scatter_reduce_(0, idx, key, "amin")
    return idx, key, torch.cat(rank_parts)
