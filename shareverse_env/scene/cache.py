"""A shared, explicit 3D scene cache: per-frame RGB-D buffers, forward-splatted into any rig camera.

A :class:`SceneBuffer` is one agent's four views at one time (tiled ``[[front, rear], [left,
right]]``): RGB, metric z-depth along each camera's optical axis (the renderer's convention,
OpenCV cameras, ``inf`` = sky), the ego pose, the agent and the time. A :class:`SceneCache` keeps
buffers separate (no fused cloud), lifts each one to world points once, and renders any subset
into the cameras of planned ego poses with a pure-torch z-buffer:

* finite pixels become world points (``depth · K⁻¹ [u+½, v+½, 1]``, then camera-to-world),
  kept in blocks of :data:`BLOCK` × :data:`BLOCK` source pixels (split by depth octave) whose
  bounding spheres are tested against each target frustum first, so that a point is projected
  only into the views it can reach;
* every point is splatted with a footprint of 1×1 up to ``max_footprint`` target pixels
  (default :data:`MAX_FOOTPRINT`, 6 wide × 3 high), the projected extent of its source pixel (its
  magnification, foreshortening included), so that a forward move leaves no pinholes on the
  near road while a frame re-rendered from its own pose reproduces itself exactly;
* the nearest depth wins, via an int32 ``scatter_reduce`` ``amin`` on the depth bits; then,
  among the candidates within :data:`RESOLVE_TOLERANCE` of that depth (the same surface), the
  finest footprint wins, then the one projected closest to the pixel centre (a second, int64
  ``amin`` on a ``(rank, entry)`` key), so that a far buffer's coarse splats do not paint over a
  nearer buffer's sharper view of the same surface;
* sky (``inf``) loses to every point, so it is not splatted: each pixel no point reached is
  looked up backwards, its ray direction rotated into each buffer's view (sky is at infinity:
  rotation only), where it picks the source pixel it falls in; an unrotated buffer (its own
  pixel grid) wins, then the sample nearest a source pixel centre.

A buffer may be partial (``SceneBuffer.mask``): its masked-out pixels are neither points nor
sky. :meth:`SceneCache.select` picks the buffers that cover most of a plan's views.

The cache depends on :mod:`shareverse_env.core.geometry`, numpy and torch only.

Example:
    >>> import numpy as np
    >>> from shareverse_env.core.geometry import CameraRig
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
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from shareverse_env.core.geometry import (
    VIEW_YAWS,
    CameraRig,
    camera_ray_directions,
    check_finite_poses,
)
from shareverse_env.core.tiling import tile_views, untile_views
from shareverse_env.core.vehicle import CAR_HEIGHT, CAR_LENGTH, CAR_WIDTH

CAR_MARGIN = 0.15
"""Extra margin around the car box inside which points are dropped, metres."""

NEAR = 0.05
"""Points nearer than this z-depth (metres) to a target camera are not drawn."""

DEFAULT_CACHE_CAPACITY = 32
"""Buffers a scene cache keeps by default: the one default of :class:`SceneCache`,
:class:`~shareverse_env.scene.composite.SceneCompositor` and the generative backend's
``cache_capacity`` (the env's value)."""

MAX_FOOTPRINT: tuple[int, int] = (6, 3)
"""Default largest splat ``(width, height)`` in target pixels (``SceneCache(max_footprint=...)``).
A facade seen at a slant and then faced spans several target pixels across per source pixel;
a narrower cap leaves gaps between its splats through which whatever lies behind shows
(vertical stripes of sky and far facades in the side views of a car driving along a street).
Taller splats, on the other hand, draw the near road, magnified most in height, as blocks.
docs/scene_cache.md#splat-size has the measurements."""


def footprint_caps(max_footprint: int | Sequence[int]) -> tuple[int, int]:
    """``(width, height)`` caps from an integer (both) or a pair, each in [1, 16].

    Example:
        >>> footprint_caps(4), footprint_caps((6, 3))
        ((4, 4), (6, 3))
    """
    caps = (max_footprint,) * 2 if not isinstance(max_footprint, tuple | list) else max_footprint
    if len(caps) != 2 or not all(
        isinstance(c, int | np.integer) and not isinstance(c, bool) and 1 <= c <= 16 for c in caps
    ):
        raise ValueError(
            "max_footprint must be an integer in [1, 16] or a (width, height) pair of them; "
            f"got {max_footprint!r}"
        )
    return int(caps[0]), int(caps[1])


RESOLVE_TOLERANCE: tuple[float, float] | None = (0.1, 0.1)
"""(relative, metres): candidates this close behind a pixel's nearest depth compete on footprint
size (finest wins); ``None`` for a plain nearest-depth z-buffer."""

CONTINUITY = 0.3
"""Neighbouring pixels whose z-depths differ by at most this fraction are one surface."""

EVICTION_POLICIES: tuple[str, ...] = ("coverage", "oldest")
"""Which buffers a full :class:`SceneCache` drops (see its ``eviction`` argument)."""

EVICTION_DOWNSAMPLE = 4
"""Resolution divisor of the coverage renders that rank buffers for eviction."""

BLOCK = 8
"""Side, in source pixels, of the blocks whose bounding spheres cull points before projection."""

CHUNK_CANDIDATES = 4_000_000
"""About the most (point or sky, camera) candidates one rendering pass holds in memory."""

_KEY_EMPTY = torch.iinfo(torch.int64).max
_BITS_INF = int(np.array(np.inf, np.float32).view(np.int32))


@dataclass(frozen=True)
class SceneBuffer:
    """One agent's four tiled views at one time.

    Attributes:
        rgb: ``(2H, 2W, 3)`` uint8, tiled ``[[front, rear], [left, right]]``.
        depth: ``(2H, 2W)`` float32 metric z-depth along each camera's optical axis; ``inf`` on
            sky; never NaN or negative where ``mask`` is True (anything elsewhere).
        pose: ``(3,)`` finite ego pose ``(x, y, yaw)``.
        agent: the agent's index (≥ 0).
        time: the frame index (≥ 0).
        mask: optional ``(2H, 2W)`` bool, True where the pixel is lifted (a point, or sky where
            depth is ``inf``); False pixels are neither points nor sky, and their depth may be
            anything (NaN or negative included). ``None``: every pixel.
    """

    rgb: np.ndarray
    depth: np.ndarray
    pose: np.ndarray
    agent: int
    time: int
    mask: np.ndarray | None = None

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
        mask = None
        if self.mask is not None:
            mask = np.asarray(self.mask)
            if mask.dtype != np.bool_ or mask.shape != depth.shape:
                raise ValueError(
                    f"mask must be a bool array of shape {depth.shape} (as depth) or None; got "
                    f"{mask.dtype} {mask.shape}"
                )
        lifted = depth if mask is None else depth[mask]
        if np.isnan(lifted).any():
            where = "" if mask is None else " where mask is True"
            raise ValueError(f"depth holds NaN{where}; use inf for sky")
        with np.errstate(invalid="ignore"):
            if (lifted < 0).any():
                raise ValueError(
                    "depth must be non-negative (or inf for sky) where lifted; got negative values"
                )
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
        object.__setattr__(self, "mask", mask)


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
    """A buffer's kept pixels: world points relative to ``origin`` and sky directions.

    Points are ordered by block (:data:`BLOCK` × :data:`BLOCK` source pixels of one view), each
    block with a bounding sphere, so that a render projects only the blocks that can reach a
    target view. The sky is not splatted: pixels no point reaches look it up in ``sky_table``.
    """

    buffer: SceneBuffer
    origin: np.ndarray  # (3,) float64: (x, y, 0) of the buffer's pose
    points: torch.Tensor  # (N, 3) float32, world minus origin
    point_rgb: torch.Tensor  # (N, 3) uint8
    point_dxy: torch.Tensor  # (N, 2, 3) float32 world offsets to the right / lower neighbour
    block_centre: np.ndarray  # (L, 3) float64, world minus origin
    block_radius: np.ndarray  # (L,) float64
    block_start: np.ndarray  # (L,) int64 first point of each block
    block_count: np.ndarray  # (L,) int64
    sky: torch.Tensor  # (M, 3) float32 unit world directions
    sky_rgb: torch.Tensor  # (M, 3) uint8
    sky_table: torch.Tensor | None  # (4·H·W,) int32 packed sky colour per pixel (see _sky_table)


class SceneCache:
    """Separate per-frame RGB-D buffers of all agents, rendered by forward splatting.

    Args:
        rig: the camera rig of every buffer and every rendered view.
        view_hw: ``(H, W)`` of each view (buffers are ``(2H, 2W)`` tiled frames).
        capacity: most buffers kept (default :data:`DEFAULT_CACHE_CAPACITY`); adding past it
            evicts buffers by ``eviction``.
        eviction: ``"coverage"`` (default): drop the kept buffers that cover the least of the
            cars' current views (the four views at every pose in the ``car_poses`` given with
            the newest buffer, else at its own pose; ties: the oldest first), new buffers
            included: one that covers nothing there is dropped at once. Later buffers usually
            hold only what earlier ones missed (``SceneBuffer.mask``), so dropping by age
            would lose the bulk of the scene while its residue stays.
            ``"oldest"``: first in, first out.
        max_footprint: largest splat in target pixels, an integer for both sides or a
            ``(width, height)`` pair, each 1–16 (default :data:`MAX_FOOTPRINT`, 6 × 3): wide
            enough to close faced facades, low enough not to draw the near road as blocks
            (docs/scene_cache.md#splat-size).
        device: torch device for the stored points and the rendering.
    """

    def __init__(
        self,
        rig: CameraRig,
        view_hw: tuple[int, int],
        capacity: int = DEFAULT_CACHE_CAPACITY,
        eviction: str = "coverage",
        max_footprint: int | tuple[int, int] = MAX_FOOTPRINT,
        device: str | torch.device = "cpu",
    ) -> None:
        height, width = (int(v) for v in view_hw)
        if height <= 0 or width <= 0:
            raise ValueError(f"view_hw must be positive; got {view_hw}")
        if int(capacity) < 1:
            raise ValueError(f"capacity must be ≥ 1; got {capacity}")
        if eviction not in EVICTION_POLICIES:
            raise ValueError(f"eviction must be one of {EVICTION_POLICIES}; got {eviction!r}")
        caps = footprint_caps(max_footprint)
        self.rig = rig
        self.view_hw = (height, width)
        self.capacity = int(capacity)
        self.eviction = eviction
        self.max_footprint: tuple[int, int] = caps
        """Largest splat ``(width, height)`` in target pixels."""
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
        """Lift ``buffer`` to world points and keep it, evicting past ``capacity``.

        Args:
            buffer: the views to keep; their size must match ``view_hw``.
            car_poses: ``(A, 3)`` poses of every agent's car at the buffer's time (the buffer's
                own car included, if it should be dropped too); points inside a box of
                :data:`CAR_LENGTH` × :data:`CAR_WIDTH` × :data:`CAR_HEIGHT` (plus
                :data:`CAR_MARGIN`) around any of them are dropped. ``None``: drop nothing.
                Also where ``"coverage"`` eviction looks from.

        Everything is validated before the cache changes.
        """
        self.add_many([buffer], [car_poses])

    def add_many(
        self,
        buffers: Sequence[SceneBuffer],
        car_poses: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        """:meth:`add` several buffers (oldest first), then evict once: the buffers of one
        call are ranked for eviction together, from the newest buffer's ``car_poses``.

        Everything is validated before the cache changes.

        Example:
            >>> import numpy as np
            >>> from shareverse_env.core.geometry import CameraRig
            >>> cache = SceneCache(CameraRig(), (16, 24), capacity=2)
            >>> depth = np.full((32, 48), 5.0, np.float32)
            >>> rgb = np.zeros((32, 48, 3), np.uint8)
            >>> cache.add_many([SceneBuffer(rgb, depth, np.array([x, 0.0, 0.0]), 0, t)
            ...                 for t, x in enumerate([0.0, 200.0, 0.5])])
            >>> [b.time for b in cache.buffers]  # the buffer 200 m away covers least here
            [0, 2]
        """
        self._add_many(buffers, car_poses, checked=False)

    def _add_many(
        self,
        buffers: Sequence[SceneBuffer],
        car_poses: Sequence[np.ndarray | None] | None,
        checked: bool,
    ) -> None:
        """:meth:`add_many`; ``checked``: the car poses are float64 arrays already checked
        finite at a public entry (the compositor's), so they are not checked again."""
        buffers = list(buffers)
        poses = [None] * len(buffers) if car_poses is None else list(car_poses)
        if len(poses) != len(buffers):
            raise ValueError(
                f"car_poses must give one entry per buffer ({len(buffers)}); got {len(poses)}"
            )
        height, width = self.view_hw
        cars: list[np.ndarray | None] = []
        for i, (buffer, car) in enumerate(zip(buffers, poses, strict=True)):
            if not isinstance(buffer, SceneBuffer):
                raise ValueError(f"buffer must be a SceneBuffer; got {type(buffer).__name__}")
            if buffer.rgb.shape[:2] != (2 * height, 2 * width):
                raise ValueError(
                    f"buffer.rgb must have shape {(2 * height, 2 * width, 3)} for view_hw "
                    f"{self.view_hw}; got {buffer.rgb.shape} (buffer {i})"
                )
            if car is not None:
                car = car if checked else check_finite_poses(car, "car_poses")
                if car.ndim != 2:
                    raise ValueError(f"car_poses must have shape (A, 3); got {car.shape}")
            cars.append(car)
        if not buffers:
            return
        lifted = [self._lift(buffer, car) for buffer, car in zip(buffers, cars, strict=True)]
        self._items.extend(lifted)
        focus = cars[-1] if cars[-1] is not None else buffers[-1].pose[None]
        self._evict(focus)

    def _evict(self, focus: np.ndarray) -> None:
        """Drop buffers past ``capacity`` by the eviction policy, seen from ``focus (P, 3)``."""
        excess = len(self._items) - self.capacity
        if excess <= 0:
            return
        if self.eviction == "oldest":
            for _ in range(excess):
                self._items.popleft()
            return
        focus = check_finite_poses(focus)
        cover = self._coverage_masks(focus, EVICTION_DOWNSAMPLE, len(focus)).mean(axis=1)
        drop = set(np.lexsort((np.arange(len(cover)), cover))[:excess].tolist())  # least, oldest
        self._items = deque(item for i, item in enumerate(self._items) if i not in drop)

    def _lift(self, buffer: SceneBuffer, cars: np.ndarray | None) -> _Lifted:
        depth = untile_views(buffer.depth[..., None])[..., 0].astype(np.float64)  # (4, H, W)
        if buffer.mask is not None:
            # Masked-out pixels are missing: neither points, sky nor neighbours of a footprint.
            depth = np.where(untile_views(buffer.mask[..., None])[..., 0], depth, np.nan)
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

        # Points, ordered by block; each block's bounding sphere (box centre, farthest point).
        height, width = self.view_hw
        nbh, nbw = -(-height // BLOCK), -(-width // BLOCK)
        rows, cols = np.arange(height) // BLOCK, np.arange(width) // BLOCK
        block = (np.arange(4)[:, None, None] * nbh + rows[:, None]) * nbw + cols[None, :]
        # Split blocks by depth octave too: a block across the horizon spans hundreds of metres,
        # and its bounding sphere would reach into the neighbouring views.
        octave = np.clip(np.floor(np.log2(np.maximum(depth[keep], 1e-3))), -16, 47) + 16
        kept_block = block[keep] * 64 + octave.astype(np.int64)
        order = np.argsort(kept_block, kind="stable")
        pts = world[keep][order]
        _, start, count = np.unique(kept_block[order], return_index=True, return_counts=True)
        if len(pts):
            centre = 0.5 * (np.minimum.reduceat(pts, start) + np.maximum.reduceat(pts, start))
            dist = np.linalg.norm(pts - np.repeat(centre, count, axis=0), axis=-1)
            radius = np.maximum.reduceat(dist, start) * (1 + 1e-6) + 1e-6
        else:
            centre, radius = np.zeros((0, 3)), np.zeros(0)

        def t(x, dtype):
            return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype, device=self.device)

        return _Lifted(
            buffer=buffer,
            origin=origin,
            points=t(pts, torch.float32),
            point_rgb=t(rgb[keep][order], torch.uint8),
            point_dxy=t(self._pixel_offsets(world, depth, rot)[keep][order], torch.float32),
            block_centre=centre,
            block_radius=radius,
            block_start=start.astype(np.int64),
            block_count=count.astype(np.int64),
            sky=t(dirs[sky], torch.float32),
            sky_rgb=t(rgb[sky], torch.uint8),
            sky_table=t(_sky_table(rgb, sky).reshape(-1), torch.int32) if sky.any() else None,
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
        return self._render_checked(check_finite_poses(poses), indices)

    def _render_checked(self, poses: np.ndarray, indices=None) -> CacheRender:
        """:meth:`render` of float64 poses already checked finite."""
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
        return self._coverage_masks(check_finite_poses(poses), downsample, max_poses).mean(axis=1)

    def _coverage_masks(self, poses: np.ndarray, downsample: int, max_poses: int) -> np.ndarray:
        """``(len(self), P)`` bool: the pixels of the downsampled planned views each buffer
        alone covers (see :meth:`coverage`), of float64 ``poses`` already checked finite."""
        if poses.ndim != 2 or not len(poses):
            raise ValueError(f"poses must have shape (F, 3) with F ≥ 1; got {poses.shape}")
        if int(downsample) < 1 or int(max_poses) < 1:
            raise ValueError(f"downsample and max_poses must be ≥ 1; got {downsample}, {max_poses}")
        take = np.unique(np.linspace(0, len(poses) - 1, min(int(max_poses), len(poses))).round())
        sub = poses[take.astype(int)]
        height, width = self.view_hw
        hw = (max(1, height // int(downsample)), max(1, width // int(downsample)))
        out = np.zeros((len(self._items), len(sub) * 4 * hw[0] * hw[1]), dtype=bool)
        for i in range(len(self._items)):
            out[i] = self._render(sub, [i], hw, resolve=False)[2].numpy()
        return out

    def select(self, poses: np.ndarray, k: int) -> np.ndarray:
        """Indices of up to ``k`` buffers to render the planned ``poses (F, 3)`` from, best first:
        the ``k`` highest :meth:`coverage` (each buffer alone); ties go to the newer buffer.

        Example:
            >>> from shareverse_env.core.geometry import CameraRig
            >>> cache = SceneCache(CameraRig(), (16, 24))
            >>> rgb = np.zeros((32, 48, 3), np.uint8)
            >>> for t in range(3):
            ...     cache.add(SceneBuffer(rgb, np.full((32, 48), 5.0, np.float32),
            ...                           np.array([4.0 * t, 0.0, 0.0]), agent=0, time=t))
            >>> cache.select(np.array([[8.0, 0.0, 0.0]]), 2).tolist()  # the one there, then the newest
            [2, 1]
        """
        return self._select(check_finite_poses(poses), k)

    def _select(self, poses: np.ndarray, k: int) -> np.ndarray:
        """:meth:`select` of float64 poses already checked finite."""
        if isinstance(k, bool) or int(k) < 0:
            raise ValueError(f"k must be ≥ 0; got {k}")
        k = min(int(k), len(self._items))
        cov = self._coverage_masks(poses, 2, 4).mean(axis=1)
        order = np.lexsort((-np.arange(len(cov)), -cov))  # coverage desc, then newest first
        return order[:k].astype(np.int64)

    def _render(self, poses: np.ndarray, idx: list[int], hw: tuple[int, int], resolve: bool = True):
        """Flat ``(F·4·h·w, ...)`` rgb uint8, depth float32 and valid bool tensors."""
        height, width = hw
        dev = self.device
        k = self.rig.intrinsics(height, width)
        fx, fy, cx, cy = float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2])
        # The footprint is measured in the target's pixels; the offsets in the source's.
        scale = fx / self.rig.focal(self.view_hw[1])
        cam = self.rig.camera_to_world(poses).reshape(-1, 4, 4)  # (C, 4, 4)
        num_cams, pixels = len(cam), height * width
        origin = np.array([poses[0, 0], poses[0, 1], 0.0])
        items = [self._items[i] for i in idx]
        # The rig's cameras are level (CameraRig builds them so): optical axis (c, s, 0), x axis
        # (s, -c, 0), y axis (0, 0, -1). Projecting needs two products per point, not nine.
        cam_c, cam_s = cam[:, 0, 2], cam[:, 1, 2]
        cam_pos = cam[:, :3, 3] - origin
        # The frustum, widened by the largest footprint on each axis, as slopes x/z and y/z.
        mu, mv = self.max_footprint
        x_lo, x_hi = (-mu - cx) / fx, (width + mu - cx) / fx
        y_lo, y_hi = (-mv - cy) / fy, (height + mv - cy) / fy
        shifts = [it.origin - origin for it in items]

        # Point candidates: the (camera, block) pairs whose bounding sphere meets the frustum.
        n_pts = sum(len(it.points) for it in items)
        first = np.cumsum([0] + [len(it.points) for it in items])[:-1]
        centre = np.concatenate(
            [np.zeros((0, 3))]
            + [it.block_centre + sh for it, sh in zip(items, shifts, strict=True)]
        )
        radius = np.concatenate([np.zeros(0)] + [it.block_radius for it in items])
        b_start = np.concatenate(
            [np.zeros(0, np.int64)]
            + [it.block_start + f for it, f in zip(items, first, strict=True)]
        )
        b_count = np.concatenate([np.zeros(0, np.int64)] + [it.block_count for it in items])
        d = centre[None] - cam_pos[:, None]  # (C, L, 3)
        bz = cam_c[:, None] * d[..., 0] + cam_s[:, None] * d[..., 1]
        bx = cam_s[:, None] * d[..., 0] - cam_c[:, None] * d[..., 1]
        by = -d[..., 2]
        outside = NEAR - bz > radius
        for slope_lo, slope_hi, w in ((x_lo, x_hi, bx), (y_lo, y_hi, by)):
            outside |= (w - slope_hi * bz) / np.hypot(1.0, slope_hi) > radius
            outside |= (slope_lo * bz - w) / np.hypot(1.0, slope_lo) > radius
        p_cam, p_block = np.nonzero(~outside)  # camera-major
        p_start, p_count = b_start[p_block], b_count[p_block]

        def t(x, dtype=torch.float32):
            return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype, device=dev)

        def cat(name, shape, dtype=torch.float32):
            return torch.cat(
                [torch.zeros(shape, dtype=dtype, device=dev)] + [getattr(it, name) for it in items]
            )

        # Columns (structure of arrays): 1-D takes are much faster than row gathers on CPU.
        pts = torch.cat(
            [torch.zeros((0, 3), device=dev)]
            + [it.points + t(sh) for it, sh in zip(items, shifts, strict=True)]
        )
        p_x, p_y, p_z = pts.T.contiguous()
        p_dxy = (cat("point_dxy", (0, 2, 3)) * scale).reshape(-1, 6).T.contiguous()
        all_rgb = cat("point_rgb", (0, 3), torch.uint8)
        sky = _SkyLookup(self, items, poses, hw)
        cam_par = t(np.stack([cam_c, cam_s, *cam_pos.T], axis=0))  # (5, C)

        out_depth = torch.full((num_cams * pixels,), float("inf"), device=dev)
        out_point = torch.zeros(num_cams * pixels, dtype=torch.int64, device=dev)
        out_sky = torch.full((num_cams * pixels,), -1, dtype=torch.int32, device=dev)
        out_valid = torch.zeros(num_cams * pixels, dtype=torch.bool, device=dev)
        tolerance = RESOLVE_TOLERANCE if resolve else None
        # Cameras in chunks of about CHUNK_CANDIDATES candidates; pixels of different cameras
        # never compete, so each chunk is resolved on its own.
        per_cam = np.bincount(p_cam, p_count, num_cams) + pixels
        bounds, acc = [0], 0.0
        for c, n in enumerate(per_cam):
            if acc and acc + n > CHUNK_CANDIDATES:
                bounds.append(c)
                acc = 0.0
            acc += n
        bounds.append(num_cams)
        for c0, c1 in ((bounds[j], bounds[j + 1]) for j in range(len(bounds) - 1)):
            pa, pb = np.searchsorted(p_cam, [c0, c1])
            ci, u, v, depth, ku, kv, point = [], [], [], [], [], [], []
            if n_pts and pb > pa:
                cp, ni = _expand(*(t(a[pa:pb], torch.int64) for a in (p_cam, p_start, p_count)))
                c, s, tx, ty, tz = (torch.take(row, cp) for row in cam_par)
                dx, dy = torch.take(p_x, ni) - tx, torch.take(p_y, ni) - ty
                z = c * dx + s * dy
                x, y = s * dx - c * dy, tz - torch.take(p_z, ni)
                zc = z.clamp(min=NEAR)
                pu, pv = fx * x / zc + cx, fy * y / zc + cy
                keep = (z > NEAR) & (pu > -mu) & (pu < width + mu) & (pv > -mv) & (pv < height + mv)
                sel = torch.nonzero(keep).squeeze(1)
                cp, ni, c, s, x, y, z, pu, pv = (
                    torch.take(a, sel) for a in (cp, ni, c, s, x, y, z, pu, pv)
                )
                # Footprint: the extent of the source pixel's right / down neighbour offsets,
                # projected exactly (1×1 for a frame re-rendered from its own pose).
                ext_u, ext_v = 0.0, 0.0
                for j in (0, 3):
                    ax, ay, az = (torch.take(p_dxy[j + i], ni) for i in (0, 1, 2))
                    qz = (z + c * ax + s * ay).clamp(min=NEAR)
                    ext_u = ext_u + (fx * (x + s * ax - c * ay) / qz + cx - pu).abs()
                    ext_v = ext_v + (fy * (y - az) / qz + cy - pv).abs()
                ci.append(cp)
                u.append(pu)
                v.append(pv)
                depth.append(z)
                ku.append(torch.ceil(ext_u - 0.05).clamp(1, self.max_footprint[0]))
                kv.append(torch.ceil(ext_v - 0.05).clamp(1, self.max_footprint[1]))
                point.append(ni)
            lo, hi = c0 * pixels, c1 * pixels
            if ci:
                ci, u, v, depth, ku, kv, point = (
                    torch.cat(a) for a in (ci, u, v, depth, ku, kv, point)
                )
                size = (c1 - c0) * pixels
                pix, e_depth, rank, extra = _footprints(
                    ci - c0, u, v, depth, ku, kv, hw, size, self.max_footprint
                )
                valid, win = _resolve(pix, e_depth, rank, size, tolerance)
                # The winning entry's candidate: itself, or (other footprint pixels) its source.
                n = len(u)
                if len(extra):
                    win = torch.where(win < n, win, torch.take(extra, (win - n).clamp(min=0)))
                out_valid[lo:hi] = valid
                out_depth[lo:hi] = torch.where(valid, torch.take(depth, win), out_depth[lo:hi])
                out_point[lo:hi] = torch.where(valid, torch.take(point, win), 0)
            # Sky loses to every point: only the pixels no point reached look it up.
            empty = torch.nonzero(~out_valid[lo:hi]).squeeze(1) + lo
            packed = sky.lookup(empty)
            out_sky[empty] = packed
            out_valid[empty] = packed >= 0
        if not len(all_rgb):
            all_rgb = torch.zeros((1, 3), dtype=torch.uint8, device=dev)
        rgb = all_rgb.index_select(0, out_point)
        shifts8 = torch.tensor([16, 8, 0], dtype=torch.int32, device=dev)
        sky_rgb = ((out_sky[:, None] >> shifts8) & 255).to(torch.uint8)
        rgb = torch.where((out_sky >= 0)[:, None], sky_rgb, rgb)
        rgb = torch.where(out_valid[:, None], rgb, 0).to(torch.uint8)
        return rgb.cpu(), out_depth.cpu(), out_valid.cpu()


def _sky_table(rgb: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """``(4, H, W)`` int32: ``r << 16 | g << 8 | b`` on sky pixels; on the other pixels next to
    the sky (8-neighbourhood), a neighbour's colour with bit 24 set ("dilated"); -1 elsewhere.

    The dilated pixels stand in for the 2×2 footprint a rotated sky would be splatted with.
    """
    packed = (
        (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    )
    out = np.where(sky, packed, -1).astype(np.int32)
    height, width = sky.shape[1:]
    pad_sky = np.pad(sky, ((0, 0), (1, 1), (1, 1)))
    pad_val = np.pad(packed, ((0, 0), (1, 1), (1, 1)))
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near = pad_sky[:, 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
            fill = (out < 0) & near
            val = pad_val[:, 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
            out = np.where(fill, val | (1 << 24), out)
    return out


class _SkyLookup:
    """Backward sky sampling: a target pixel's ray direction, rotated into each buffer's view
    that holds it, picks the source pixel it falls in (the sky is at infinity, so only the
    rotation matters). Among buffers the best wins: an unrotated one (its own pixel grid, as a
    1×1 splat would), then real sky over dilated, then the nearest to the source pixel centre;
    dilated pixels count only for a rotated view (the 2×2 footprint of the forward splat)."""

    def __init__(self, cache: SceneCache, items: list[_Lifted], poses: np.ndarray, hw):
        height, width = hw
        dev = cache.device
        k = cache.rig.intrinsics(height, width)
        fx, fy, cx, cy = float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2])
        self.src_hw = cache.view_hw
        ks = cache.rig.intrinsics(*cache.view_hw)
        self.src = (float(ks[0, 0]), float(ks[1, 1]), float(ks[0, 2]), float(ks[1, 2]))
        self.scale = fx / self.src[0]  # source pixels → target pixels
        self.pixels = height * width
        u = np.arange(width) + 0.5
        v = np.arange(height) + 0.5
        az = np.arctan((cx - u) / fx)  # azimuth of each column, left positive
        tan = (v[:, None] - cy) / fy * np.cos(az)[None, :]  # depression below the horizon
        self.az = torch.tensor(np.broadcast_to(az, (height, width)).reshape(-1), device=dev)
        self.tan = torch.tensor(tan.reshape(-1), device=dev, dtype=torch.float32)
        self.az = self.az.to(torch.float32)
        # Which view looks along each quarter turn from the car's heading.
        quarter = np.round(np.asarray(VIEW_YAWS) / (np.pi / 2)).astype(int) % 4
        self.view_of_quarter = torch.tensor(np.argsort(quarter), device=dev)
        cam_yaw = cache.rig.camera_yaws(poses).reshape(-1)
        # Buffers with the same heading share the geometry of the lookup (often all of them).
        self.groups: dict[float, tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]] = {}
        for it in items:
            if it.sky_table is None:
                continue
            yaw = float(it.buffer.pose[2])
            if yaw not in self.groups:
                rel = np.remainder(cam_yaw - yaw + np.pi, 2 * np.pi) - np.pi  # (C,)
                e = rel[:, None] - np.arange(4)[None, :] * (np.pi / 2)
                turned = np.abs(np.remainder(e + np.pi, 2 * np.pi) - np.pi) > 1e-6  # (C, 4)
                self.groups[yaw] = (
                    torch.tensor(rel, dtype=torch.float32, device=dev),
                    torch.tensor(turned.reshape(-1), device=dev),
                    [],
                )
            self.groups[yaw][2].append(it.sky_table)

    def lookup(self, flat: torch.Tensor) -> torch.Tensor:
        """Packed sky colour (int32, -1: none) for flat target pixels ``cam · h · w + pixel``."""
        best = torch.full(flat.shape, -1, dtype=torch.int32, device=flat.device)
        if not self.groups or not len(flat):
            return best
        fs, fsy, cxs, cys = self.src
        height, width = self.src_hw
        cam, loc = flat // self.pixels, flat % self.pixels
        az, tan = torch.take(self.az, loc), torch.take(self.tan, loc)
        score = torch.full(flat.shape, float("inf"), device=flat.device)
        for rel, turned, tables in self.groups.values():
            r = torch.take(rel, cam) + az
            r = torch.remainder(r + np.pi, 2 * np.pi) - np.pi
            q = torch.round(r / (np.pi / 2))
            a = r - q * (np.pi / 2)  # azimuth in the nearest view, within ±45°
            q = q.to(torch.int64) % 4
            us = cxs - fs * torch.tan(a)
            vs = cys + fsy * tan / torch.cos(a)
            iu, iv = torch.floor(us), torch.floor(vs)
            inside = (iu >= 0) & (iu < width) & (iv >= 0) & (iv < height)
            # One pixel beyond the view's border counts as dilated (a splat's footprint).
            near = (iu >= -1) & (iu <= width) & (iv >= -1) & (iv <= height)
            view = torch.take(self.view_of_quarter, q)
            src = (view * height + iv.clamp(0, height - 1).to(torch.int64)) * width
            src = torch.where(near, src + iu.clamp(0, width - 1).to(torch.int64), 0)
            rot = torch.take(turned, cam * 4 + q)
            base = (
                rot.float() * 4
                + torch.maximum((us - iu - 0.5).abs(), (vs - iv - 0.5).abs()) * self.scale
            )
            for table in tables:
                val = torch.take(table, src)
                val = torch.where(inside | (val < 0), val, val | (1 << 24))
                dilated = (val >> 24) > 0
                ok = near & (val >= 0) & (~dilated | rot)
                s = torch.where(ok, base + dilated.float() * 2, float("inf"))
                better = s < score
                score = torch.where(better, s, score)
                best = torch.where(better, val & 0xFFFFFF, best)
        return best


def _expand(group: torch.Tensor, start: torch.Tensor, count: torch.Tensor):
    """``(group, index)`` of every element of the ranges ``[start, start + count)``."""
    total = int(count.sum())
    offset = torch.cumsum(count, 0) - count
    grp = torch.repeat_interleave(group, count, output_size=total)
    index = torch.arange(total, device=count.device)
    index += torch.repeat_interleave(start - offset, count, output_size=total)
    return grp, index


def _footprints(cam, u, v, depth, ku, kv, hw, size, caps):
    """Entries for every target pixel of the ``ku × kv`` footprints around ``(u, v)``
    (``ku``, ``kv`` at most ``caps = (width, height)``).

    Returns ``(pixel, depth, rank, extra)``: candidate ``i`` has entry ``i`` (its footprint's
    top-left pixel) and the candidates ``extra`` have entries ``len(u) + j`` for their other
    pixels. Pixels outside the views ``cam`` are ``size`` (a dump slot). Rank: footprint area,
    then the Chebyshev distance from the projected point to the pixel centre (1/64 px); lower
    is better.
    """
    height, width = hw
    u0 = torch.floor(u - (ku - 1) / 2)
    v0 = torch.floor(v - (kv - 1) / 2)
    area = ku * kv

    def entries(cam, u, v, pu, pv, area):
        inside = (pu >= 0) & (pu < width) & (pv >= 0) & (pv < height)
        pix = torch.where(inside, cam * (height * width) + (pv * width + pu).to(torch.int64), size)
        off = torch.maximum((u - pu - 0.5).abs(), (v - pv - 0.5).abs())
        rank = area * 256 + torch.floor(off * 64).clamp(max=255)
        return pix, rank.to(torch.int64)

    pix, rank = entries(cam, u, v, u0, v0, area)
    # Most points are 1×1: the larger ones get entries for their other pixels, one footprint
    # shape at a time, so that each entry is a broadcast offset (no per-entry gathers).
    big = torch.nonzero(area > 1).squeeze(1)
    widest, tallest = caps
    shape = torch.take(ku * (tallest + 1) + kv, big)
    pixes, ranks, depths, cands = [pix], [rank], [depth], []
    for a in range(1, widest + 1):
        for b in range(1, tallest + 1):
            if a * b == 1:
                continue
            idx = torch.take(big, torch.nonzero(shape == a * (tallest + 1) + b).squeeze(1))
            if not len(idx):
                continue
            grid_u = torch.arange(a, device=u.device, dtype=u.dtype).repeat(b)[1:]
            grid_v = torch.arange(b, device=u.device, dtype=u.dtype).repeat_interleave(a)[1:]
            cu, cv, cu0, cv0, cd = (torch.take(t, idx)[:, None] for t in (u, v, u0, v0, depth))
            ccam = torch.take(cam, idx)[:, None]
            shape2 = (len(idx), a * b - 1)
            epix, erank = entries(
                ccam,
                cu,
                cv,
                cu0 + grid_u,
                cv0 + grid_v,
                torch.tensor(float(a * b), device=u.device),
            )
            pixes.append(epix.reshape(-1))
            ranks.append(erank.reshape(-1))
            depths.append(cd.expand(shape2).reshape(-1))
            cands.append(idx[:, None].expand(shape2).reshape(-1))
    big = torch.cat(cands) if cands else big[:0]
    pix, rank, depth = torch.cat(pixes), torch.cat(ranks), torch.cat(depths)
    return pix, depth, rank, big


def _resolve(pix, depth, rank, size, tolerance):
    """Per pixel, the winning entry: ``(valid (size,), entry index (size,))``.

    Entries at pixel ``size`` are dropped. The nearest depth wins (sky, ``inf``, loses to
    everything). With ``tolerance`` (see :data:`RESOLVE_TOLERANCE`), every entry within it of
    the pixel's nearest depth competes instead, and the lowest rank wins (the finest footprint,
    then the one projected closest to the pixel centre): a coarse, magnified splat of a far
    buffer does not paint over a closer buffer's sharper view of the same surface, and a buffer
    seen from its own pose wins its own pixels. Ties go to the earlier entry.
    """
    n = max(len(pix), 1)
    # The int32 bits of non-negative float32s (inf included) order as the floats do, and an
    # int32 scatter_reduce_ is about 3× faster than a float32 one on CPU.
    bits = torch.full((size + 1,), _BITS_INF, dtype=torch.int32, device=pix.device)
    bits.scatter_reduce_(0, pix, depth.view(torch.int32), "amin")
    zmin = bits.view(torch.float32)
    order = torch.arange(len(pix), device=pix.device)
    if tolerance is None:
        limit, key = zmin, order
    else:
        rel, absolute = tolerance
        limit, key = zmin * (1 + rel) + absolute, rank * n + order
    key = torch.where(depth <= torch.take(limit, pix), key, _KEY_EMPTY)
    best = torch.full((size + 1,), _KEY_EMPTY, dtype=torch.int64, device=pix.device)
    best.scatter_reduce_(0, pix, key, "amin")
    valid = best[:size] != _KEY_EMPTY
    return valid, torch.where(valid, best[:size] % n, 0)
