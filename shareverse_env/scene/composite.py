"""Generated frames composed with the shared scene cache, and the cache kept up to date.

A :class:`SceneCompositor` owns one :class:`~shareverse_env.scene.cache.SceneCache` for an
episode and does, chunk by chunk, what makes the generated town consistent by construction:

1. :meth:`~SceneCompositor.reset`: every agent's first frame enters the cache with its exact
   depth (the env renders it), or with the depth network's estimate when only RGB is known;
2. :meth:`~SceneCompositor.render`: for every generating agent, the buffers covering most of its
   planned views are selected and splatted into every view of every new frame;
3. :meth:`~SceneCompositor.composite`: each new frame shows the cache render where it is valid
   (feathered at the mask's edge) and the generated frame elsewhere — and wherever another
   agent's car stands at that frame (its projected box), so moving cars are always the
   generator's and sit where the poses say;
4. :meth:`~SceneCompositor.archive`: keyframes of the composited chunk enter the cache, but only
   their pixels the cache did not explain (new content, as a world cache that adds only what it
   lacks), lifted with the depth network's estimate aligned to the cache's depth on the overlap.
   Without a depth estimator nothing new is archived: the cache keeps the exact first frames.

The compositor depends on numpy, torch, the core layer, the scene cache and
:func:`~shareverse_env.scene.depth_align.align_depth`; the depth estimator is
any callable ``uint8 (N, 2H, 2W, 3) -> float32 z-depth (N, 2H, 2W)`` (``inf`` = sky).

Example:
    >>> import numpy as np
    >>> from shareverse_env.backends import WorldBackend
    >>> from shareverse_env.core.geometry import CameraRig, plan_chunk
    >>> from shareverse_env.world.generator import generate_town
    >>> start = np.array([[0.0, 0.0, 0.0]])
    >>> first = WorldBackend((32, 48)).first_frames(generate_town(0), "clear_noon", start)
    >>> scene = SceneCompositor(CameraRig(), (32, 48))
    >>> scene.reset(first.rgb, first.depth, start)
    >>> plan = plan_chunk(start, np.array([[4.0, 0.0, 0.0]]))  # (1, 29, 3)
    >>> renders = scene.render(plan[:, 1:], [0])
    >>> generated = np.zeros((1, 28, 64, 96, 3), np.uint8)  # a generator's (black) frames
    >>> out = scene.composite(generated, renders, plan[:, 1:], [0])
    >>> out.shape, bool(out[0, 0].mean() > 20)  # the cache fills most of the first new frame
    ((1, 28, 64, 96, 3), True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from shareverse_env.core.geometry import CameraRig, check_finite_poses
from shareverse_env.core.tiling import tile_views, untile_views
from shareverse_env.scene.cache import (
    CAR_HEIGHT,
    CAR_LENGTH,
    CAR_MARGIN,
    CAR_WIDTH,
    DEFAULT_CACHE_CAPACITY,
    MAX_FOOTPRINT,
    CacheRender,
    SceneBuffer,
    SceneCache,
)
from shareverse_env.scene.depth_align import align_depth

DepthEstimator = Callable[[np.ndarray], np.ndarray]
"""``uint8 (N, 2H, 2W, 3) -> float32 (N, 2H, 2W)`` metric z-depth, ``inf`` on sky."""

_NEAR = 0.05


def _box_points(steps: tuple[int, int, int] = (9, 5, 4)) -> np.ndarray:
    """``(P, 3)`` grid points filling a car's box (with margin) in the car's frame."""
    hx, hy = CAR_LENGTH / 2 + CAR_MARGIN, CAR_WIDTH / 2 + CAR_MARGIN
    xs = np.linspace(-hx, hx, steps[0])
    ys = np.linspace(-hy, hy, steps[1])
    zs = np.linspace(0.0, CAR_HEIGHT + CAR_MARGIN, steps[2])
    return np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), -1).reshape(-1, 3)


_BOX = _box_points()


def car_masks(
    rig: CameraRig, view_hw: tuple[int, int], viewer: np.ndarray, cars: np.ndarray
) -> np.ndarray:
    """``(F, 2H, 2W)`` bool: pixels of the viewer's tiled frames inside any car's projected box.

    Args:
        rig: the camera rig.
        view_hw: ``(H, W)`` of each view.
        viewer: ``(F, 3)`` the viewing agent's poses.
        cars: ``(F, C, 3)`` the poses of the cars seen (the viewer's own excluded), ``C`` may be 0.

    Each box is its bounding rectangle in the image (a conservative outline: the generator's
    frame shows inside it). Example:

        >>> rig, hw = CameraRig(), (32, 48)
        >>> ahead = np.array([[[10.0, 0.0, 0.0]]])  # one car 10 m ahead
        >>> m = car_masks(rig, hw, np.zeros((1, 3)), ahead)
        >>> bool(m[0, :32, :48].any()), bool(m[0, :32, 48:].any())  # front view yes, rear no
        (True, False)
    """
    viewer = np.asarray(viewer, dtype=np.float64)
    cars = np.asarray(cars, dtype=np.float64)
    height, width = view_hw
    num_frames = len(viewer)
    out = np.zeros((num_frames, 4, height, width), dtype=bool)
    if cars.shape[1] == 0:
        return tile_views(out[..., None])[..., 0]
    k = rig.intrinsics(height, width)
    cam = rig.camera_to_world(viewer)  # (F, 4, 4, 4)
    c, s = np.cos(cars[..., 2]), np.sin(cars[..., 2])  # (F, C)
    bx, by, bz = _BOX[:, 0], _BOX[:, 1], _BOX[:, 2]
    wx = cars[..., 0, None] + c[..., None] * bx - s[..., None] * by  # (F, C, P)
    wy = cars[..., 1, None] + s[..., None] * bx + c[..., None] * by
    world = np.stack([wx, wy, np.broadcast_to(bz, wx.shape)], -1)  # (F, C, P, 3)
    rot, trans = cam[..., :3, :3], cam[..., :3, 3]  # (F, 4, 3, 3), (F, 4, 3)
    rel = world[:, None] - trans[:, :, None, None, :]  # (F, 4, C, P, 3)
    pc = np.einsum("fvji,fvcpj->fvcpi", rot, rel)
    z = pc[..., 2]
    front = z > _NEAR
    zc = np.maximum(z, _NEAR)
    u = k[0, 0] * pc[..., 0] / zc + k[0, 2]
    v = k[1, 1] * pc[..., 1] / zc + k[1, 2]
    big = 1e9
    u0 = np.where(front, u, big).min(-1)
    u1 = np.where(front, u, -big).max(-1)
    v0 = np.where(front, v, big).min(-1)
    v1 = np.where(front, v, -big).max(-1)  # (F, 4, C)
    seen = front.any(-1) & (u1 >= 0) & (u0 < width) & (v1 >= 0) & (v0 < height)
    for f, view, car in zip(*np.nonzero(seen), strict=True):
        c0 = int(np.clip(np.floor(u0[f, view, car]), 0, width))
        c1 = int(np.clip(np.ceil(u1[f, view, car]), 0, width))
        r0 = int(np.clip(np.floor(v0[f, view, car]), 0, height))
        r1 = int(np.clip(np.ceil(v1[f, view, car]), 0, height))
        out[f, view, r0:r1, c0:c1] = True
    return tile_views(out[..., None])[..., 0]


def feather(valid: np.ndarray, radius: int = 1) -> np.ndarray:
    """``float32`` weights of tiled ``valid (..., 2H, 2W)`` masks: 1 deep inside, falling to the
    share of valid neighbours at the edge, 0 outside; computed per view (no bleeding across the
    tile borders).

        >>> m = np.zeros((8, 12), bool); m[:, :4] = True  # each view is 4 x 6
        >>> feather(m)[1, :6].astype(float).round(2).tolist()  # the front view's second row
        [1.0, 1.0, 1.0, 0.67, 0.0, 0.0]
    """
    valid = np.asarray(valid, dtype=bool)
    lead = valid.shape[:-2]
    views = untile_views(valid.reshape(-1, *valid.shape[-2:])[..., None])[..., 0]  # (N, 4, H, W)
    x = torch.from_numpy(views.astype(np.float32)).reshape(-1, 1, *views.shape[-2:])
    size = 2 * int(radius) + 1
    share = F.avg_pool2d(x, size, stride=1, padding=int(radius), count_include_pad=False)
    weight = (x * share).reshape(views.shape).numpy()
    return tile_views(weight[..., None])[..., 0].reshape(*lead, *valid.shape[-2:])


class SceneCompositor:
    """One episode's shared scene cache, rendered into and composited with generated chunks.

    Args:
        rig: the camera rig.
        view_hw: ``(H, W)`` of each view.
        capacity: buffers the cache keeps (default :data:`~shareverse_env.scene.cache.
            DEFAULT_CACHE_CAPACITY`).
        eviction: which buffers a full cache drops (:data:`~shareverse_env.scene.cache.
            EVICTION_POLICIES`): ``"coverage"``, those covering least of the cars' current
            views; ``"oldest"``, first in, first out.
        max_footprint: largest splat of the cache's renders, an integer or a ``(width,
            height)`` pair (:class:`~shareverse_env.scene.cache.SceneCache`).
        buffers_per_agent: ``K``, the buffers rendered into each agent's chunk (top ``K`` by
            :meth:`~shareverse_env.scene.cache.SceneCache.select`).
        keyframe_stride: archive the composited frames at times divisible by this.
        depth_estimator: depth for frames whose depth is unknown (user images, generated new
            content); ``None``: such pixels never enter the cache.
        feather_radius: width of the composite's soft edge, pixels.
        device: torch device of the cache.

    See the module docstring for an example.
    """

    def __init__(
        self,
        rig: CameraRig,
        view_hw: tuple[int, int],
        capacity: int = DEFAULT_CACHE_CAPACITY,
        eviction: str = "coverage",
        max_footprint: int | tuple[int, int] = MAX_FOOTPRINT,
        buffers_per_agent: int = 4,
        keyframe_stride: int = 7,
        depth_estimator: DepthEstimator | None = None,
        feather_radius: int = 1,
        device: str | torch.device = "cpu",
    ) -> None:
        if int(buffers_per_agent) < 1:
            raise ValueError(f"buffers_per_agent must be ≥ 1; got {buffers_per_agent}")
        if int(keyframe_stride) < 1:
            raise ValueError(f"keyframe_stride must be ≥ 1; got {keyframe_stride}")
        if int(feather_radius) < 0:
            raise ValueError(f"feather_radius must be ≥ 0; got {feather_radius}")
        self.rig = rig
        self.view_hw = tuple(int(v) for v in view_hw)
        self.cache = SceneCache(
            rig,
            self.view_hw,
            capacity=capacity,
            eviction=eviction,
            max_footprint=max_footprint,
            device=device,
        )
        self.buffers_per_agent = int(buffers_per_agent)
        self.keyframe_stride = int(keyframe_stride)
        self.depth_estimator = depth_estimator
        self.feather_radius = int(feather_radius)

    def reset(self, frames: np.ndarray, depth: np.ndarray | None, poses: np.ndarray) -> None:
        """Empty the cache and add every agent's first frame at time 0.

        Args:
            frames: ``(A, 2H, 2W, 3)`` uint8.
            depth: ``(A, 2H, 2W)`` exact z-depth (``inf`` sky), or ``None`` (estimated with the
                depth estimator; without one the cache stays empty).
            poses: ``(A, 3)`` the agents' poses; their cars' points are dropped.
        """
        poses = check_finite_poses(poses, "poses")
        frames = np.asarray(frames)
        if depth is None:
            if self.depth_estimator is None:
                self.cache.clear()
                return
            depth = self.depth_estimator(frames)
        depth = np.asarray(depth, dtype=np.float32)
        buffers = [SceneBuffer(frames[a], depth[a], poses[a], a, 0) for a in range(len(poses))]
        self.cache.clear()
        self.cache._add_many(buffers, [poses] * len(buffers), checked=True)  # checked above

    def render(self, poses: np.ndarray, agents: Sequence[int]) -> list[CacheRender]:
        """The cache rendered into ``poses (n, F, 3)``, the new frames of the ``n`` ``agents``."""
        poses = check_finite_poses(poses, "poses")
        out = []
        for row in range(len(agents)):
            if len(self.cache) == 0:
                out.append(self._empty(len(poses[row])))
                continue
            # Checked once above: the cache's checked paths do not check each row again.
            idx = self.cache._select(poses[row], self.buffers_per_agent)
            out.append(self.cache._render_checked(poses[row], idx))
        return out

    def _empty(self, frames: int) -> CacheRender:
        height, width = self.view_hw
        shape = (frames, 2 * height, 2 * width)
        return CacheRender(
            rgb=np.zeros((*shape, 3), np.uint8),
            depth=np.full(shape, np.inf, np.float32),
            valid=np.zeros(shape, bool),
        )

    def car_masks(self, poses: np.ndarray, agent: int) -> np.ndarray:
        """``(F, 2H, 2W)`` projected boxes of every other car, given every agent's ``poses
        (A, F, 3)``, in ``agent``'s frames."""
        others = [b for b in range(len(poses)) if b != agent]
        return car_masks(self.rig, self.view_hw, poses[agent], poses[others].transpose(1, 0, 2))

    def car_nearness(self, poses: np.ndarray, agent: int) -> np.ndarray:
        """``(F, 2H, 2W)`` float32: inside every other car's projected box (given every agent's
        ``poses (A, F, 3)``), that car's nearness ``1 / max(d, 1 m)`` to ``agent`` (``d`` the
        distance between the two cars), the nearest car winning; 0 elsewhere. The layout input
        of a cache-conditioned model (:mod:`~shareverse_env.models.cache_input`)."""
        poses = np.asarray(poses, dtype=np.float64)
        out = np.zeros((poses.shape[1], 2 * self.view_hw[0], 2 * self.view_hw[1]), np.float32)
        for other in range(len(poses)):
            if other == agent:
                continue
            box = car_masks(self.rig, self.view_hw, poses[agent], poses[other][:, None])
            gap = np.linalg.norm(poses[other, :, :2] - poses[agent, :, :2], axis=-1)
            near = (1.0 / np.maximum(gap, 1.0)).astype(np.float32)[:, None, None]
            out = np.maximum(out, np.where(box, near, np.float32(0)))
        return out

    def composite(
        self,
        generated: np.ndarray,
        renders: Sequence[CacheRender],
        poses: np.ndarray,
        agents: Sequence[int],
    ) -> np.ndarray:
        """The ``(n, F, 2H, 2W, 3)`` composited frames of the ``n`` ``agents``.

        Args:
            generated: ``(n, F, 2H, 2W, 3)`` uint8, the generator's frames.
            renders: the :meth:`render` of the same agents and frames.
            poses: ``(A, F, 3)`` every agent's poses at those frames (for the car boxes).
            agents: the agents of the rows.
        """
        out = np.empty_like(generated)
        for row, agent in enumerate(agents):
            weight = self.weights(renders[row], poses, agent)[..., None]
            mixed = weight * renders[row].rgb + (1.0 - weight) * generated[row]
            out[row] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        return out

    def weights(self, render: CacheRender, poses: np.ndarray, agent: int) -> np.ndarray:
        """``(F, 2H, 2W)`` float32 weight of the cache render in ``agent``'s composite."""
        valid = render.valid & ~self.car_masks(poses, agent)
        if self.feather_radius == 0:
            return valid.astype(np.float32)
        return feather(valid, self.feather_radius)

    def archive(
        self,
        frames: np.ndarray,
        renders: Sequence[CacheRender],
        poses: np.ndarray,
        times: np.ndarray,
        agents: Sequence[int],
    ) -> int:
        """Add the keyframes of composited ``frames (n, F, 2H, 2W, 3)`` to the cache.

        Only pixels the cache did not cover (``~render.valid``) are lifted, with the depth
        estimator's depth scale/shift-aligned to the render's depth on the covered pixels; other
        cars' points are dropped by their poses. ``poses (A, F, 3)`` are every agent's,
        ``times (F,)`` the frames' times. Returns the number of buffers added (0 without a
        depth estimator).
        """
        poses = check_finite_poses(poses, "poses")
        if self.depth_estimator is None:
            return 0
        times = np.asarray(times, dtype=np.int64)
        keep = np.flatnonzero(times % self.keyframe_stride == 0)
        if not len(keep):
            return 0
        picked = np.stack([frames[row, keep] for row in range(len(agents))])
        estimate = self.depth_estimator(picked.reshape(-1, *picked.shape[2:]))
        estimate = estimate.reshape(*picked.shape[:2], *picked.shape[2:4])
        buffers, cars = [], []
        for row, agent in enumerate(agents):
            for j, f in enumerate(keep):
                render = renders[row]
                new = ~render.valid[f]
                if not new.any():
                    continue
                depth = align_depth(estimate[row, j], render.depth[f], render.valid[f])
                depth = np.where(new, depth, np.nan).astype(np.float32)
                buffer = SceneBuffer(
                    picked[row, j], depth, poses[agent, f], int(agent), int(times[f]), mask=new
                )
                buffers.append(buffer)
                cars.append(poses[:, f])
        # One add for the chunk: eviction ranks the kept buffers once, from the cars' poses at
        # the chunk's last keyframe (the last buffer's), instead of once per buffer.
        self.cache._add_many(buffers, cars, checked=True)  # slices of poses, checked above
        return len(buffers)
