"""The exact renderer of the procedural town: RGB, metric depth and a sky mask for every camera.

Everything in the world is either the ground plane (a :class:`~.scene.GroundMap` raster) or a
vertical prism (a :class:`~.scene.BoxSet` box), and every camera is level. So every image column
is a vertical plane through the camera centre, and the renderer works column by column:

1. **Cull** (per view): keep boxes within ``max_distance`` that overlap the view's columns and
   rows; sort them by their nearest depth.
2. **Columns**: intersect each column's 2D ray ``forward + a·right`` (its parameter is the
   camera z-depth) with the boxes' footprints (slab test in each box's frame), nearest boxes
   first, in rounds. After each round, the boxes found standing on the ground give every column
   an occlusion slope, and later boxes that hide behind them in all their columns are dropped
   untested. Each column keeps its nearest entries, drops those whose rows the walls in front
   of them cover entirely (row bit masks), and keeps up to ``layers`` of the rest.
3. **Pixels**: a row's ray meets a kept box on its wall at ``t_in`` or on its top (bottom) face
   where it crosses ``z_max`` (``z_min``); the ground at ``t = f·h / (v − c_y)``; else the sky.
   The nearest of these is the pixel's surface and exact depth.
4. **Shade**: Lambert sun plus ambient from the :class:`~.weather.Weather`, procedural window
   grids box-filtered over the pixel footprint, glossy car paint with tyres and lamps, varied
   foliage, a mip-mapped ground raster with baked sun shadows (and the dynamic cars' shadows),
   a sky gradient with a sun halo and clouds, and distance fog.

All work is batched torch (fp32) over views; nothing loops over pixels, columns or boxes.
Rendering is deterministic (no random noise; procedural detail is hashed from world positions
and box seeds) and independent of the batch size, ``chunk_views`` and torch's thread count.
On a 2-core CPU it renders about 250–290 tiled 128×192 frames per second in batches of 8 or
more (``benchmarks/render_speed.py``). The ground pyramid holds about 11 bytes per ground
texel (~45 MB for a 1900² raster).

Example:
    >>> import numpy as np
    >>> from shareverse_env.world.scene import BoxSet, GroundMap, Material
    >>> from shareverse_env.world.town import RoadNetwork, Town
    >>> ground = GroundMap(origin=(-50.0, -50.0), resolution=0.5,
    ...                    rgb=np.full((200, 200, 3), 90, np.uint8),
    ...                    surface=np.full((200, 200), 2, np.uint8))
    >>> boxes = BoxSet.from_rows([dict(center=(20.0, 0.0), half_extent=(2.0, 6.0),
    ...                                z_range=(0.0, 10.0), colour=(0.7, 0.6, 0.5),
    ...                                material=Material.FACADE, seed=0.3)])
    >>> roads = RoadNetwork(nodes=np.zeros((1, 2)), edges=np.zeros((0, 2)))
    >>> town = Town(seed=0, bounds=(-50.0, -50.0, 50.0, 50.0), roads=roads,
    ...             ground=ground, boxes=boxes)
    >>> out = Renderer(town).render(np.zeros((1, 3)))
    >>> out.rgb.shape, out.depth.shape, out.sky.shape
    ((1, 128, 192, 3), (1, 128, 192), (1, 128, 192))
    >>> round(float(out.depth[0, 32, 48]), 3)  # the front camera (0.6 m ahead) sees the wall at x=18
    17.4
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from shareverse_env.core.geometry import VIEW_NAMES, CameraRig, check_finite_poses
from shareverse_env.core.tiling import tile_views
from shareverse_env.world.scene import BoxSet, Material, Surface
from shareverse_env.world.town import Town
from shareverse_env.world.vehicles import BODY_HEIGHT, agent_colour, car_boxes
from shareverse_env.world.weather import Weather, get_weather

_INF = float("inf")
# Columns of the per-(column, layer) attribute table built by Renderer._column_attrs.
_A_TIN, _A_MAT, _A_U, _A_LEN, _A_ZMIN, _A_ZMAX, _A_END, _A_NX, _A_NY = range(9)
_A_LIGHT, _A_ALBEDO, _A_FACADE, _A_COUNT = 9, 12, 15, 25
_KEEP_EXTRA = 4  # candidates kept per column beyond `layers` before the visibility test


@dataclass(frozen=True)
class RenderResult:
    """Tiled renders of a batch of viewers.

    Attributes:
        rgb: ``(..., 2H, 2W, 3)`` uint8, views tiled ``[[front, rear], [left, right]]``.
        depth: ``(..., 2H, 2W)`` float32 metric z-depth along each camera's optical axis;
            ``inf`` where the sky is seen.
        sky: ``(..., 2H, 2W)`` bool, true where the sky is seen.
    """

    rgb: np.ndarray
    depth: np.ndarray
    sky: np.ndarray


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _hash01(*coords: torch.Tensor) -> torch.Tensor:
    """Deterministic integer hash of integer lattice coordinates → float in ``[0, 1)``."""
    primes = (73856093, 19349663, 83492791, 2654435761)
    h = torch.zeros_like(coords[0])
    for c, p in zip(coords, primes, strict=False):
        h = h ^ (c * p)
    h = h & 0xFFFFFFFF
    h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & 0xFFFFFFFF
    h = ((h ^ (h >> 12)) * 0x297A2D39) & 0xFFFFFFFF
    h = h ^ (h >> 15)
    return (h & 0xFFFFFF).to(torch.float32) / float(0x1000000)


def _pulse_integral(x: torch.Tensor, lo: torch.Tensor | float, width: torch.Tensor | float):
    """Integral from 0 to ``x`` of a unit-period pulse train that is 1 on ``[lo, lo + width)``."""
    fl = torch.floor(x)
    return fl * width + torch.clamp(x - fl - lo, min=0.0).minimum(torch.as_tensor(width))


def _filtered_pulse(x, half_w, lo, width, x_min=None, x_max=None):
    """Box-filtered pulse train: the fraction of ``[x − half_w, x + half_w]`` covered by pulses.

    ``x_min``/``x_max`` limit the train to ``[x_min, x_max]`` (no pulses outside).
    """
    a, b = x - half_w, x + half_w
    if x_min is not None:
        a, b = torch.maximum(a, x_min), torch.maximum(b, x_min)
    if x_max is not None:
        a, b = torch.minimum(a, x_max), torch.minimum(b, x_max)
    return (_pulse_integral(b, lo, width) - _pulse_integral(a, lo, width)) / (2 * half_w)


def _filtered_interval(x, half_w, lo, hi):
    """Fraction of ``[x − half_w, x + half_w]`` inside ``[lo, hi]``."""
    a = torch.clamp(x - half_w, min=lo).minimum(hi)
    b = torch.clamp(x + half_w, min=lo).minimum(hi)
    return (b - a) / (2 * half_w)


# --------------------------------------------------------------------------------------------
# Ground: lit, shadowed albedo in a mip-map pyramid
# --------------------------------------------------------------------------------------------


def _sun_shadow(town: Town, weather: Weather, origin: np.ndarray) -> torch.Tensor:
    """Fraction of direct sun reaching each ground texel, ``(rows, cols)`` float32 in [0, 1].

    Works in a grid aligned with the sun's azimuth: along each scanline a box shades the interval
    ``[x_in − z_max / tan(el), x_out − z_min / tan(el)]`` (``x_in, x_out``: where the scanline
    crosses its footprint), painted for every (scanline, box) pair with a difference array.
    """
    ground = town.ground
    rows, cols = ground.shape
    boxes = town.boxes
    sun = weather.sun_vector
    tan_el = max(math.tan(math.radians(weather.sun_elevation_deg)), 0.05)
    ux = sun[:2] / max(np.linalg.norm(sun[:2]), 1e-9)  # scanline direction: towards the sun
    uy = np.array([-ux[1], ux[0]])
    if len(boxes) == 0 or np.linalg.norm(sun[:2]) < 1e-6:
        return torch.ones((rows, cols))
    step = max(ground.resolution, 0.25)  # shadow-grid spacing
    factor = max(1, round(0.4 / ground.resolution))  # texels per side of a sampled cell
    # Corners of the raster in the sun frame give the shadow grid's extent.
    gx0, gy0 = ground.origin
    x1, y1 = gx0 + cols * ground.resolution, gy0 + rows * ground.resolution
    ext = np.array([[gx0, gy0], [x1, gy0], [gx0, y1], [x1, y1]]) - origin
    sx, sy = ext @ ux, ext @ uy
    x_lo, y_lo = sx.min() - step, sy.min() - step
    nx = int(np.ceil((sx.max() - x_lo) / step)) + 2
    ny = int(np.ceil((sy.max() - y_lo) / step)) + 2

    centre = boxes.center.astype(np.float64) - origin
    half = boxes.half_extent.astype(np.float64)
    c, s = np.cos(boxes.yaw.astype(np.float64)), np.sin(boxes.yaw.astype(np.float64))
    zmin = np.maximum(boxes.z_range[:, 0].astype(np.float64), 0.0)
    zmax = boxes.z_range[:, 1].astype(np.float64)
    bx, by = centre @ ux, centre @ uy
    radius = np.hypot(half[:, 0], half[:, 1])
    r0 = np.floor((by - radius - y_lo) / step).astype(np.int64)
    r1 = np.ceil((by + radius - y_lo) / step).astype(np.int64)
    count = np.clip(r1 - r0 + 1, 0, None)
    box_of = np.repeat(np.arange(len(boxes)), count)
    row = np.repeat(r0, count) + (
        np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    )
    keep = (row >= 0) & (row < ny) & (zmax[box_of] > 0)
    box_of, row = box_of[keep], row[keep]
    y = y_lo + (row + 0.5) * step
    # Scanline (x, y) + τ·(1, 0) in the sun frame → box-local slab test.
    # Box axes in the sun frame:
    ax_x = np.stack([c * ux[0] + s * ux[1], c * uy[0] + s * uy[1]], axis=-1)  # local x axis
    ay_x = np.stack([-s * ux[0] + c * ux[1], -s * uy[0] + c * uy[1]], axis=-1)  # local y axis
    k = box_of
    rel_y = y - by[k]
    # point on the line at τ = bx (the box centre's x): offset (0, rel_y) from the centre
    o_lx = rel_y * ax_x[k, 1]
    o_ly = rel_y * ay_x[k, 1]
    d_lx, d_ly = ax_x[k, 0], ay_x[k, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        t0x, t1x = (-half[k, 0] - o_lx) / d_lx, (half[k, 0] - o_lx) / d_lx
        t0y, t1y = (-half[k, 1] - o_ly) / d_ly, (half[k, 1] - o_ly) / d_ly
    tin = np.maximum(np.minimum(t0x, t1x), np.minimum(t0y, t1y))
    tout = np.minimum(np.maximum(t0x, t1x), np.maximum(t0y, t1y))
    hit = tin <= tout
    start = bx[k] + tin - zmax[k] / tan_el
    stop = bx[k] + tout - zmin[k] / tan_el
    i0 = np.clip(np.ceil((start - x_lo) / step - 0.5), 0, nx).astype(np.int64)
    i1 = np.clip(np.floor((stop - x_lo) / step - 0.5) + 1, 0, nx).astype(np.int64)
    hit &= i1 > i0
    diff = np.zeros((ny, nx + 1), np.int32)
    np.add.at(diff, (row[hit], i0[hit]), 1)
    np.add.at(diff, (row[hit], i1[hit]), -1)
    shadowed = np.cumsum(diff, axis=1)[:, :nx] > 0
    lit = torch.from_numpy(1.0 - shadowed.astype(np.float32))
    # Sample bilinearly at the centres of a raster-aligned grid of `factor`² texels per cell.
    cell = ground.resolution * factor
    rows_c, cols_c = -(-rows // factor), -(-cols // factor)
    gx = torch.tensor(gx0 - origin[0] + (np.arange(cols_c) + 0.5) * cell, dtype=torch.float32)
    gy = torch.tensor(gy0 - origin[1] + (np.arange(rows_c) + 0.5) * cell, dtype=torch.float32)
    px = (gx[None, :] * float(ux[0]) + gy[:, None] * float(ux[1]) - x_lo) / step - 0.5
    py = (gx[None, :] * float(uy[0]) + gy[:, None] * float(uy[1]) - y_lo) / step - 0.5
    x0 = px.floor().clamp(0, nx - 2)
    y0 = py.floor().clamp(0, ny - 2)
    fx = (px - x0).clamp(0, 1)
    fy = (py - y0).clamp(0, 1)
    i = (y0.long() * nx + x0.long()).reshape(-1)
    flat = lit.reshape(-1)
    top = torch.lerp(flat[i], flat[i + 1], fx.reshape(-1))
    bot = torch.lerp(flat[i + nx], flat[i + nx + 1], fx.reshape(-1))
    out = torch.lerp(top, bot, fy.reshape(-1)).reshape(1, 1, rows_c, cols_c)
    if factor > 1:
        out = torch.nn.functional.interpolate(out, scale_factor=factor, mode="bilinear")
    return out[0, 0, :rows, :cols]


def _cloud_texture(cover: float, size: int = 128, seed: int = 7) -> torch.Tensor:
    """A tiling ``(size, size)`` cloud density in ``[0, 1]`` for a cover fraction in ``(0, 1]``.

    Three octaves of tiling value noise from a fixed seed, thresholded so that about ``cover``
    of the sky is cloudy, with soft edges.
    """
    rng = np.random.default_rng(seed)
    field = np.zeros((size, size))
    for cells, amp in ((4, 1.0), (8, 0.5), (16, 0.3), (32, 0.15)):
        lattice = rng.random((cells, cells))
        coords = np.arange(size) * cells / size
        i0 = np.floor(coords).astype(int)
        f = coords - i0
        f = f * f * (3 - 2 * f)
        i1 = (i0 + 1) % cells
        rows = lattice[i0] * (1 - f[:, None]) + lattice[i1] * f[:, None]
        field += amp * (rows[:, i0] * (1 - f[None, :]) + rows[:, i1] * f[None, :])
    level = np.quantile(field, 1.0 - cover)
    spread = field.std() * 0.35
    density = np.clip((field - level) / spread, 0.0, 1.0)
    return torch.tensor(density * 0.9, dtype=torch.float32)


def _pack_rgb(colour: torch.Tensor) -> torch.Tensor:
    """``(3, ...)`` float colours in [0, 1] → int64 ``R | G << 16 | B << 32`` (8-bit values)."""
    q = torch.clamp(colour * 255.0 + 0.5, 0, 255).to(torch.int64)
    return q[0] | (q[1] << 16) | (q[2] << 32)


class _GroundPyramid:
    """Lit ground colour as a mip-map pyramid, every level in one flat int64 table.

    A texel packs its 8-bit R, G and B into 16-bit lanes (``R | G << 16 | B << 32``), so a
    weighted sum of texels with integer weights summing to at most 256 filters all three channels
    in one integer multiply-add per tap.
    """

    def __init__(
        self,
        town: Town,
        weather: Weather,
        origin: np.ndarray,
        shadows: bool,
        max_texel: float = 8.0,
    ) -> None:
        ground = town.ground
        res = float(ground.resolution)
        levels = 1
        while res * 2 ** (levels - 1) < max_texel and min(ground.shape) >> (levels - 1) > 4:
            levels += 1
        levels = max(levels, 2)
        pad = 2 ** (levels - 1)
        sun = weather.sun_vector
        light_up = torch.tensor(weather.ambient, dtype=torch.float32)[:, None, None]
        sun_term = torch.tensor(weather.sun_colour, dtype=torch.float32)[:, None, None]
        sun_term = sun_term * max(float(sun[2]), 0.0)
        shade = None
        if shadows:
            shade = 1.0 - weather.shadow * (1.0 - _sun_shadow(town, weather, origin))
        # Outside the raster is grass: the median colour of the raster's grass, or a default.
        grass = ground.surface[::4, ::4] == Surface.GRASS
        grass_albedo = (
            np.median(ground.rgb[::4, ::4][grass], axis=0) / 255.0
            if grass.any()
            else np.array([0.30, 0.42, 0.20])
        )
        outside = torch.tensor(grass_albedo, dtype=torch.float32)[:, None, None]
        outside = outside * (light_up + sun_term) * weather.exposure
        rows, cols = ground.shape
        rows_p = -(-(rows + 2 * pad) // pad) * pad
        cols_p = -(-(cols + 2 * pad) // pad) * pad
        rgb = torch.from_numpy(np.ascontiguousarray(ground.rgb))
        # Level 0 is built band by band (lit, quantised, packed) together with its 2×2 average,
        # level 1, so that no full-resolution float image is ever held.
        table0 = torch.empty(rows_p * cols_p, dtype=torch.int64)
        level = torch.empty((1, 3, rows_p // 2, cols_p // 2))
        band = max(2, (1 << 19) // cols_p // 2 * 2)
        for r0 in range(0, rows_p, band):
            r1 = min(r0 + band, rows_p)
            buf = outside.expand(3, r1 - r0, cols_p).clone()
            g0, g1 = max(r0 - pad, 0), min(r1 - pad, rows)
            if g1 > g0:
                albedo = rgb[g0:g1].permute(2, 0, 1).float() * (weather.exposure / 255.0)
                sun_g = sun_term if shade is None else sun_term * shade[None, g0:g1]
                buf[:, g0 + pad - r0 : g1 + pad - r0, pad : pad + cols] = albedo * (
                    light_up + sun_g
                )
            table0[r0 * cols_p : r1 * cols_p] = _pack_rgb(buf).reshape(-1)
            level[0, :, r0 // 2 : r1 // 2] = torch.nn.functional.avg_pool2d(buf[None], 2)[0]
        del shade
        flat, meta = [table0], [(0, rows_p, cols_p)]
        offset = rows_p * cols_p
        for lvl in range(1, levels):
            if lvl > 1:
                level = torch.nn.functional.avg_pool2d(level, 2)
            flat.append(_pack_rgb(level[0]).reshape(-1))
            h, w = level.shape[2:]
            meta.append((offset, h, w))
            offset += h * w
        del level
        self.table = torch.cat(flat)
        self.meta = meta
        self.origin = (
            ground.origin[0] - pad * res - origin[0],
            ground.origin[1] - pad * res - origin[1],
        )
        self.levels = levels
        self.base_res = res


# --------------------------------------------------------------------------------------------
# The renderer
# --------------------------------------------------------------------------------------------


_FIELDS = (
    "cx",
    "cy",
    "cos",
    "sin",
    "hx",
    "hy",
    "zmin",
    "zmax",
    "seed",
    "material",
    "standing",
    "colour",
)


class _Boxes:
    """Struct-of-tensors box table used inside one render call."""

    __slots__ = (
        "colour",
        "cos",
        "cx",
        "cy",
        "hx",
        "hy",
        "material",
        "seed",
        "sin",
        "standing",
        "zmax",
        "zmin",
    )

    def __init__(self, **kw: torch.Tensor) -> None:
        for k, v in kw.items():
            setattr(self, k, v)

    def take(self, ids: torch.Tensor, *names: str) -> _Boxes:
        """The fields ``names`` of the boxes ``ids`` (any shape), each gathered contiguously."""
        flat = ids.reshape(-1)
        out = {}
        for k in names:
            col = getattr(self, k)
            out[k] = col.index_select(0, flat).view(*ids.shape, *col.shape[1:])
        return _Boxes(**out)

    @staticmethod
    def from_boxset(boxes: BoxSet, origin: np.ndarray) -> _Boxes:
        yaw = boxes.yaw.astype(np.float64)
        t = lambda a, dt=torch.float32: torch.from_numpy(np.ascontiguousarray(a)).to(dt)  # noqa: E731
        return _Boxes(
            cx=t(boxes.center[:, 0].astype(np.float64) - origin[0]),
            cy=t(boxes.center[:, 1].astype(np.float64) - origin[1]),
            cos=t(np.cos(yaw)),
            sin=t(np.sin(yaw)),
            hx=t(boxes.half_extent[:, 0]),
            hy=t(boxes.half_extent[:, 1]),
            zmin=t(boxes.z_range[:, 0]),
            zmax=t(boxes.z_range[:, 1]),
            colour=t(boxes.colour),
            material=t(boxes.material, torch.int64),
            seed=t(boxes.seed),
            standing=t(boxes.z_range[:, 0] <= 0.05, torch.bool),
        )

    @staticmethod
    def cat(parts: list[_Boxes]) -> _Boxes:
        return _Boxes(**{k: torch.cat([getattr(p, k) for p in parts]) for k in _FIELDS})

    def __len__(self) -> int:
        return len(self.cx)


def _nan_box() -> _Boxes:
    nan = torch.full((1,), float("nan"))
    return _Boxes(
        cx=nan,
        cy=nan,
        cos=torch.ones(1),
        sin=torch.zeros(1),
        hx=torch.zeros(1),
        hy=torch.zeros(1),
        zmin=torch.zeros(1),
        zmax=torch.zeros(1),
        colour=torch.zeros(1, 3),
        material=torch.zeros(1, dtype=torch.int64),
        seed=torch.zeros(1),
        standing=torch.zeros(1, dtype=torch.bool),
    )


class Renderer:
    """Renders RGB, metric z-depth and a sky mask of a :class:`~.town.Town` for camera rigs.

    Args:
        town: the town (ground raster and static boxes).
        weather: a preset name of :data:`~.weather.WEATHERS` or a :class:`~.weather.Weather`.
        rig: the four-camera rig (default :class:`~shareverse_env.core.geometry.CameraRig`).
        view_hw: ``(H, W)`` of each view; H must be even.
        max_distance: boxes farther than this (metres) are not drawn (the ground always is).
        layers: most boxes one image column can show (nearest first, after dropping those hidden
            behind nearer walls); only what a column needs costs time. Past it, farther boxes
            are left out of that column.
        chunk_views: views processed together (bounds memory; results do not depend on it).
        shadows: bake the static boxes' sun shadows into the ground (dynamic cars always cast
            theirs).

    Rendering is deterministic: the same inputs give the same pixels.

    Example:
        >>> import numpy as np
        >>> from shareverse_env.world.scene import BoxSet, GroundMap
        >>> from shareverse_env.world.town import RoadNetwork, Town
        >>> ground = GroundMap((-20.0, -20.0), 0.5, np.full((80, 80, 3), 90, np.uint8),
        ...                    np.full((80, 80), 2, np.uint8))
        >>> town = Town(0, (-20.0, -20.0, 20.0, 20.0),
        ...             RoadNetwork(np.zeros((1, 2)), np.zeros((0, 2))), ground, BoxSet.empty())
        >>> r = Renderer(town, "overcast")
        >>> two_cars = np.array([[[0.0, 0.0, 0.0], [15.0, 0.0, np.pi]]])
        >>> out = r.render_agents(two_cars.transpose(1, 0, 2))  # 2 agents × 1 frame
        >>> out.rgb.shape
        (2, 1, 128, 192, 3)
        >>> bool(out.sky[0, 0, 0, 0]), bool(out.sky[0, 0, -1, 0])  # top: sky, bottom: ground
        (True, False)
    """

    def __init__(
        self,
        town: Town,
        weather: str | Weather = "clear_noon",
        rig: CameraRig | None = None,
        view_hw: tuple[int, int] = (64, 96),
        max_distance: float = 250.0,
        layers: int = 12,
        chunk_views: int = 64,
        shadows: bool = True,
    ) -> None:
        height, width = (int(v) for v in view_hw)
        if height <= 0 or width <= 0 or height % 2:
            raise ValueError(f"view_hw must be positive with an even height; got {view_hw}")
        if not max_distance > 0:
            raise ValueError(f"max_distance must be positive; got {max_distance}")
        if layers < 1:
            raise ValueError(f"layers must be ≥ 1; got {layers}")
        self.town = town
        self.weather = get_weather(weather)
        self.rig = rig or CameraRig()
        self.view_hw = (height, width)
        self.max_distance = float(max_distance)
        self.layers = int(layers)
        self.chunk_views = max(4, int(chunk_views) // 4 * 4)
        x0, y0, x1, y1 = town.bounds
        # Work relative to the town centre so that fp32 keeps millimetres.
        self._origin = np.array([(x0 + x1) / 2, (y0 + y1) / 2], dtype=np.float64)
        self._static = _Boxes.from_boxset(town.boxes, self._origin)
        self._radius = torch.sqrt(self._static.hx**2 + self._static.hy**2)
        half_fov = math.radians(self.rig.hfov_deg) / 2
        self._tan_half, self._sec_half = math.tan(half_fov), 1.0 / math.cos(half_fov)
        self._ground = _GroundPyramid(town, self.weather, self._origin, shadows)
        self._setup_pixels()
        self._setup_weather()

    # ---------------------------------------------------------------- per-pixel constants

    def _setup_pixels(self) -> None:
        height, width = self.view_hw
        k = self.rig.intrinsics(height, width)
        f = float(k[0, 0])
        self._f = f
        self._h = float(self.rig.mount_height)
        a = (np.arange(width) + 0.5 - k[0, 2]) / k[0, 0]
        b = (np.arange(height) + 0.5 - k[1, 2]) / k[1, 1]
        self._a = torch.tensor(a, dtype=torch.float32)
        self._b = torch.tensor(b, dtype=torch.float32)
        self._ib = torch.tensor(1.0 / b, dtype=torch.float32)
        self._rows = torch.arange(height, dtype=torch.float32)
        self._half = height // 2
        self._m_top = float(-b[0])  # steepest upward slope of a ray (z rise per metre of depth)
        self._m_bot = float(-b[-1])
        norm = np.sqrt(1.0 + a[None, :] ** 2 + b[:, None] ** 2)  # |ray| per unit z-depth
        self._norm = torch.tensor(norm, dtype=torch.float32)  # (H, W)
        # Ground, lower half: depth, lateral offset, mip level and fog per pixel.
        hh = self._half
        bl = b[hh:]
        t_g = self._h / bl  # (Hh,)
        foot_u = (t_g / f)[:, None] * np.ones((1, width))
        foot_v = (t_g**2 / (f * self._h))[:, None] * np.sqrt(1 + a[None, :] ** 2)
        foot = np.maximum(foot_u, foot_v / 2.0)  # allow 2:1 anisotropy along the depth axis
        top = max(self._ground.levels - 1 - 1e-4, 0.0)
        lod = np.clip(np.log2(np.maximum(foot / self._ground.base_res, 1e-6)), 0.0, top)
        self._g_t = torch.tensor(t_g, dtype=torch.float32).view(1, -1, 1)
        self._g_lat = torch.tensor(t_g[:, None] * a[None, :], dtype=torch.float32)[None]
        dist = t_g[:, None] * norm[hh:]
        self._g_dist = torch.tensor(dist, dtype=torch.float32)
        # Per pixel and for the two mip levels it blends: texel scale, offsets and weights.
        g = self._ground
        lvl0 = np.floor(lod).astype(np.int64)
        blend = lod - lvl0
        total = 248  # the 8 taps' integer weights sum to this: 16-bit lanes cannot overflow
        w_first = np.round((1.0 - blend) * total).astype(np.int64)
        self._g_levels = []
        for lvl, weight in ((lvl0, w_first), (np.minimum(lvl0 + 1, g.levels - 1), total - w_first)):
            scale = 1.0 / (g.base_res * 2.0**lvl)
            off = np.array([g.meta[i][0] for i in range(g.levels)])[lvl]
            nrow = np.array([g.meta[i][1] for i in range(g.levels)])[lvl]
            ncol = np.array([g.meta[i][2] for i in range(g.levels)])[lvl]
            self._g_levels.append(
                {
                    "scale": torch.tensor(scale, dtype=torch.float32)[None],
                    "bx": torch.tensor(g.origin[0] * scale + 0.5, dtype=torch.float32)[None],
                    "by": torch.tensor(g.origin[1] * scale + 0.5, dtype=torch.float32)[None],
                    "off": torch.tensor(off)[None],
                    "ncol": torch.tensor(ncol)[None],
                    "xmax": torch.tensor(ncol - 2)[None],
                    "ymax": torch.tensor(nrow - 2)[None],
                    "w": torch.tensor(weight, dtype=torch.float32)[None],
                }
            )
        self._g_norm = 1.0 / (255.0 * total)
        # Lookup tables from a pixel index (row-major within a view) to its row and column.
        self._row_of = torch.arange(height * width) // width
        self._col_of = torch.arange(height * width) % width
        self._b_of = self._b[self._row_of]
        self._norm_of = self._norm.reshape(-1)

    def _setup_weather(self) -> None:
        w = self.weather
        sun = w.sun_vector.astype(np.float64)
        self._sun = torch.tensor(sun, dtype=torch.float32)
        self._sun_rgb = torch.tensor(w.sun_colour, dtype=torch.float32) * w.exposure
        self._amb = torch.tensor(w.ambient, dtype=torch.float32) * w.exposure
        self._fog_rgb = torch.tensor(w.fog_colour, dtype=torch.float32)
        a = self._a.double().numpy()
        b = self._b.double().numpy()[: self._half]
        norm = np.sqrt(1.0 + a[None, :] ** 2 + b[:, None] ** 2)
        sin_el = -b[:, None] / norm  # (Hh, W) elevation of each upper-half ray
        g = np.clip(sin_el / 0.55, 0.0, 1.0) ** 0.65
        zen = np.asarray(w.sky_zenith)
        hor = np.asarray(w.sky_horizon)
        base = hor * (1 - g[..., None]) + zen * g[..., None]
        self._sky_base = torch.tensor(base * w.exposure, dtype=torch.float32)  # (Hh, W, 3)
        self._sky_dir = torch.tensor(
            np.stack(np.broadcast_arrays(a[None, :] / norm, 1.0 / norm, sin_el), 0),
            dtype=torch.float32,
        )  # (3, Hh, W): (right, forward, up) components of the unit ray
        self._glow_rgb = torch.tensor(w.sun_colour, dtype=torch.float32) * w.sun_glow * w.exposure
        self._clouds = _cloud_texture(w.clouds) if w.clouds > 0 else None
        self._cloud_fade = torch.tensor(np.clip(sin_el / 0.08, 0.0, 1.0), dtype=torch.float32)
        sun_up = max(float(sun[2]), 0.0)
        cloud = np.asarray(w.ambient) + np.asarray(w.sun_colour) * (0.25 + 0.35 * sun_up)
        self._cloud_rgb = torch.tensor(np.minimum(cloud, 1.0) * w.exposure, dtype=torch.float32)
        self._sky_reflect = torch.tensor(hor, dtype=torch.float32) * w.exposure
        self._glass_rgb = torch.tensor([0.10, 0.13, 0.17], dtype=torch.float32)
        self._roof_grey = torch.tensor([0.34, 0.33, 0.33], dtype=torch.float32)
        self._tyre_rgb = torch.tensor([0.04, 0.04, 0.045], dtype=torch.float32)
        self._head_rgb = torch.tensor([0.95, 0.93, 0.80], dtype=torch.float32)
        self._tail_rgb = torch.tensor([0.80, 0.08, 0.06], dtype=torch.float32)
        self._light_top = self._amb + self._sun_rgb * max(float(sun[2]), 0.0)
        self._light_bottom = 0.5 * self._amb
        sun_up = torch.tensor(w.sun_colour, dtype=torch.float32) * max(float(sun[2]), 0.0)
        amb = torch.tensor(w.ambient, dtype=torch.float32)
        self._car_shadow_rgb = (amb + sun_up * (1.0 - w.shadow)) / (amb + sun_up)

    # ---------------------------------------------------------------- public API

    def render(
        self,
        poses: np.ndarray,
        cars: np.ndarray | None = None,
        car_colours: np.ndarray | None = None,
        hide: np.ndarray | None = None,
    ) -> RenderResult:
        """Render the four views of ``B`` viewers.

        Args:
            poses: ``(B, 3)`` ego poses ``(x, y, yaw)`` of the viewers.
            cars: ``(B, C, 3)`` poses of the dynamic cars each viewer sees (rows of NaN: absent).
            car_colours: ``(C, 3)`` body colours in ``[0, 1]`` (default: the agent colours).
            hide: ``(B,)`` index of the car not drawn for each viewer (its own car), −1 for none.

        Returns:
            :class:`RenderResult` with leading shape ``(B,)``.
        """
        poses = check_finite_poses(poses).reshape(-1, 3)
        num = len(poses)
        dyn = self._dynamic_boxes(num, cars, car_colours, hide)
        height, width = self.view_hw
        views_per = len(VIEW_NAMES)
        cam = self.rig.camera_positions(poses)  # (B, 4, 3)
        yaw = self.rig.camera_yaws(poses)  # (B, 4)
        cam_xy = torch.tensor((cam[..., :2] - self._origin).reshape(-1, 2), dtype=torch.float32)
        cyaw = torch.tensor(yaw.reshape(-1), dtype=torch.float64)
        fwd = torch.stack([torch.cos(cyaw), torch.sin(cyaw)], -1).float()
        right = torch.stack([torch.sin(cyaw), -torch.cos(cyaw)], -1).float()
        rgb = torch.empty((num * views_per, height, width, 3), dtype=torch.uint8)
        depth = torch.empty((num * views_per, height, width), dtype=torch.float32)
        step = self.chunk_views
        for v0 in range(0, num * views_per, step):
            v1 = min(v0 + step, num * views_per)
            viewer = torch.arange(v0, v1) // views_per
            c_rgb, c_depth = self._render_views(
                cam_xy[v0:v1], fwd[v0:v1], right[v0:v1], viewer, dyn
            )
            rgb[v0:v1] = c_rgb
            depth[v0:v1] = c_depth
        rgb = tile_views(rgb.reshape(num, views_per, height, width, 3))
        depth = tile_views(depth.reshape(num, views_per, height, width, 1))[..., 0]
        return RenderResult(rgb=rgb.numpy(), depth=depth.numpy(), sky=torch.isinf(depth).numpy())

    def render_agents(
        self,
        poses: np.ndarray,
        colours: np.ndarray | None = None,
        active: np.ndarray | None = None,
    ) -> RenderResult:
        """Render every agent's four views at every frame, with every agent's car in the world.

        Args:
            poses: ``(A, F, 3)``: agent ``k``'s pose at frame ``f``.
            colours: ``(A, 3)`` body colours (default :func:`~.vehicles.agent_colour` ``(k)``).
            active: ``(A,)`` bool: agents whose views are rendered (default all). Inactive
                agents' cars still stand in the world; their rows are black, ``depth`` inf and
                ``sky`` False.

        Returns:
            :class:`RenderResult` with leading shape ``(A, F)``; agent ``k``'s own car is hidden
            from its own views.
        """
        poses = check_finite_poses(poses)
        if poses.ndim != 3:
            raise ValueError(f"poses must have shape (agents, frames, 3); got {poses.shape}")
        num_agents, frames = poses.shape[:2]
        if colours is None:
            colours = np.array([agent_colour(k) for k in range(num_agents)], dtype=np.float32)
        active = np.ones(num_agents, bool) if active is None else np.asarray(active, bool)
        if active.shape != (num_agents,):
            raise ValueError(f"active must have shape ({num_agents},); got {active.shape}")
        height, width = self.view_hw
        rgb = np.zeros((num_agents, frames, 2 * height, 2 * width, 3), np.uint8)
        depth = np.full((num_agents, frames, 2 * height, 2 * width), np.inf, np.float32)
        sky = np.zeros((num_agents, frames, 2 * height, 2 * width), bool)
        viewers = np.flatnonzero(active)
        if len(viewers):
            cars = np.broadcast_to(
                poses.transpose(1, 0, 2)[None], (len(viewers), frames, num_agents, 3)
            )
            out = self.render(
                poses[viewers].reshape(-1, 3),
                cars=cars.reshape(-1, num_agents, 3),
                car_colours=colours,
                hide=np.repeat(viewers, frames),
            )
            shape = (len(viewers), frames)
            rgb[viewers] = out.rgb.reshape(*shape, *out.rgb.shape[1:])
            depth[viewers] = out.depth.reshape(*shape, *out.depth.shape[1:])
            sky[viewers] = out.sky.reshape(*shape, *out.sky.shape[1:])
        return RenderResult(rgb=rgb, depth=depth, sky=sky)

    # ---------------------------------------------------------------- internals

    def _dynamic_boxes(self, num, cars, car_colours, hide):
        """Box table = static boxes + per-viewer car boxes + one NaN dummy.

        Returns ``(table, boxes per viewer (2C))``.
        """
        if cars is None:
            return _Boxes.cat([self._static, _nan_box()]), 0
        cars = np.asarray(cars, dtype=np.float64)
        if cars.ndim != 3 or cars.shape[0] != num or cars.shape[2] != 3:
            raise ValueError(f"cars must have shape ({num}, C, 3); got {cars.shape}")
        ncar = cars.shape[1]
        if car_colours is None:
            car_colours = np.array([agent_colour(k) for k in range(ncar)], dtype=np.float32)
        car_colours = np.asarray(car_colours, dtype=np.float32)
        if car_colours.shape != (ncar, 3):
            raise ValueError(f"car_colours must have shape ({ncar}, 3); got {car_colours.shape}")
        cars = cars.copy()
        if hide is not None:
            hide = np.asarray(hide, dtype=np.int64).reshape(-1)
            if hide.shape != (num,):
                raise ValueError(f"hide must have shape ({num},); got {hide.shape}")
            if np.any(hide >= ncar):
                raise ValueError(f"hide indexes a car that does not exist (C={ncar})")
            rows = np.flatnonzero(hide >= 0)
            cars[rows, hide[rows]] = np.nan
        flat = cars.reshape(-1, 3)
        absent = ~np.all(np.isfinite(flat), axis=1)
        flat[absent] = 0.0
        boxes = car_boxes(flat, np.tile(car_colours, (num, 1)))
        dyn = _Boxes.from_boxset(boxes, self._origin)
        gone = torch.from_numpy(np.repeat(absent, 2))
        dyn.cx[gone] = float("nan")
        dyn.cy[gone] = float("nan")
        return _Boxes.cat([self._static, dyn, _nan_box()]), 2 * ncar

    # The per-chunk pipeline -------------------------------------------------------------

    def _render_views(self, cam_xy, fwd, right, viewer, dyn):
        table, per_viewer = dyn
        num_static = len(self._static)
        cand_ids, cand_info = self._cull(table, num_static, per_viewer, cam_xy, fwd, right, viewer)
        cols = self._columns(table, cand_ids, cand_info, cam_xy, fwd, right)
        best_t, best_l = self._pixels(cols)
        cars = None
        if per_viewer:
            body = num_static + viewer[:, None] * per_viewer + torch.arange(0, per_viewer, 2)
            names = ("cx", "cy", "cos", "sin", "hx", "hy")
            body = table.take(body, *names)
            cars = {k: getattr(body, k) for k in names}
        rgb = self._shade(table, cols, best_t, best_l, cam_xy, fwd, right, cars)
        return rgb, best_t

    def _cull(self, table, num_static, per_viewer, cam_xy, fwd, right, viewer):
        """Per view: candidate box ids sorted by nearest depth, with (dmin, slope, u_lo, u_hi)."""
        nv = len(cam_xy)
        dummy = len(table) - 1
        # Coarse pass over the static boxes (no gathers): bounding circles against the view's
        # wedge and the distance limit.
        st = self._static
        px, py = cam_xy[:, :1], cam_xy[:, 1:]
        bx, by = st.cx[None] - px, st.cy[None] - py
        zc = bx * fwd[:, :1] + by * fwd[:, 1:]
        xc = bx * right[:, :1] + by * right[:, 1:]
        radius = self._radius[None]
        reach = radius + self.max_distance
        coarse = (
            (zc >= -radius)
            & (xc.abs() - zc * self._tan_half <= radius * self._sec_half)
            & (zc * zc + xc * xc <= reach * reach)
        )
        ids = torch.arange(num_static).expand(nv, -1)
        ids = _compact_ids(coarse, ids, dummy)
        if per_viewer:
            dyn_ids = num_static + viewer[:, None] * per_viewer + torch.arange(per_viewer)
            ids = torch.cat([ids, dyn_ids], dim=1)
        if ids.shape[1] == 0:
            return ids, torch.zeros((nv, 0, 4))
        px, py = cam_xy[:, :1], cam_xy[:, 1:]
        fx, fy = fwd[:, :1], fwd[:, 1:]
        rx, ry = right[:, :1], right[:, 1:]
        g = table.take(ids, "cx", "cy", "cos", "sin", "hx", "hy", "zmin", "zmax")
        cx, cy = g.cx - px, g.cy - py
        c, s = g.cos, g.sin
        hx, hy = g.hx, g.hy
        zc = cx * fx + cy * fy
        xc = cx * rx + cy * ry
        # Box axes projected on the camera axes, scaled by the half extents.
        p_f, p_r = hx * (c * fx + s * fy), hx * (c * rx + s * ry)
        q_f, q_r = hy * (c * fy - s * fx), hy * (c * ry - s * rx)
        ez = p_f.abs() + q_f.abs()
        dmin, dmax = zc - ez, zc + ez
        near = 0.05
        corners = torch.stack(
            [
                (xc + sp * p_r + sq * q_r) / (zc + sp * p_f + sq * q_f)
                for sp in (1.0, -1.0)
                for sq in (1.0, -1.0)
            ],
            dim=-1,
        )
        ok = dmin > near  # wholly in front: the corners bound its columns
        a_lo = torch.where(ok, corners.amin(-1), -_INF)
        a_hi = torch.where(ok, corners.amax(-1), _INF)
        h = self._h
        f = self._f
        width = self.view_hw[1]
        cxp = width / 2.0
        u_lo = torch.ceil(a_lo * f + cxp - 0.5) - 1
        u_hi = torch.floor(a_hi * f + cxp - 0.5) + 1
        zmin, zmax = g.zmin, g.zmax
        dn, df = dmin.clamp(min=near), dmax.clamp(min=near)
        s_max = torch.where(zmax >= h, (zmax - h) / dn, (zmax - h) / df)
        s_min = torch.where(zmin <= h, (zmin - h) / dn, (zmin - h) / df)
        dist = torch.sqrt(zc * zc + xc * xc) - torch.sqrt(hx * hx + hy * hy)
        keep = (
            (dmax > near)
            & (u_hi >= 0)
            & (u_lo <= width - 1)
            & (u_lo <= u_hi)
            & (dist <= self.max_distance)
            & (s_max >= self._m_bot)
            & (s_min <= self._m_top)
        )
        info = torch.stack(
            [
                dmin,
                s_max.clamp(max=self._m_top),
                u_lo.clamp(0, width - 1),
                u_hi.clamp(0, width - 1),
            ],
            dim=-1,
        )
        ids, info = _compact(keep, ids, info, dummy)
        order = torch.argsort(info[..., 0], dim=1, stable=True)
        ids = torch.gather(ids, 1, order)
        info = torch.gather(info, 1, order[..., None].expand(-1, -1, info.shape[-1]))
        return ids, info

    def _slab(self, table, ids, cam_xy, fwd, right):
        """Per column and box: entry/exit z-depth of the column ray through the footprint."""
        px, py = cam_xy[:, :1], cam_xy[:, 1:]
        g = table.take(ids, "cx", "cy", "cos", "sin", "hx", "hy", "zmax", "standing")
        bx, by = g.cx - px, g.cy - py
        c, s = g.cos, g.sin
        ox = -(c * bx + s * by)
        oy = s * bx - c * by
        fx, fy = fwd[:, :1], fwd[:, 1:]
        rx, ry = right[:, :1], right[:, 1:]
        dfx, dfy = c * fx + s * fy, c * fy - s * fx
        drx, dry = c * rx + s * ry, c * ry - s * rx
        hx, hy = g.hx, g.hy
        a = self._a.view(1, -1, 1)
        inv = torch.addcmul(dfx[:, None], a, drx[:, None]).reciprocal_()
        t0 = (-hx - ox)[:, None] * inv
        t1 = inv.mul_((hx - ox)[:, None])
        tin = torch.minimum(t0, t1)
        tout = torch.maximum(t0, t1)
        inv = torch.addcmul(dfy[:, None], a, dry[:, None]).reciprocal_()
        t0 = (-hy - oy)[:, None] * inv
        t1 = inv.mul_((hy - oy)[:, None])
        tin = torch.maximum(tin, torch.minimum(t0, t1))
        tout = torch.minimum(tout, torch.maximum(t0, t1))
        return tin, tout, g

    def _columns(self, table, cand_ids, cand_info, cam_xy, fwd, right):
        """Front-to-back rounds of column tests with occlusion culling; returns column layers."""
        nv, width = len(cam_xy), self.view_hw[1]
        h, near = self._h, 0.05
        keep_l = self.layers + _KEEP_EXTRA
        dummy = len(table) - 1
        # Per column, the nearest `keep_l` boxes met so far: entry depth, exit depth, id.
        lay_key = torch.full((nv, width, keep_l), _INF)
        lay_out = torch.full((nv, width, keep_l), _INF)
        lay_id = torch.full((nv, width, keep_l), dummy, dtype=torch.int64)
        occ_rounds: list[tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]] = []
        size = 32
        ids, info = cand_ids, cand_info
        while ids.shape[1]:
            take = ids.shape[1] if ids.shape[1] <= size * 3 // 2 else size
            r_ids, r_info = ids[:, :take], info[:, :take]
            ids, info = ids[:, take:], info[:, take:]
            # Views whose candidates ran out sit the round out.
            act = torch.nonzero((r_ids != dummy).any(1)).squeeze(1)
            if not len(act):
                break
            act = None if len(act) == nv else act

            def sub(x, act=act):
                return x if act is None else x.index_select(0, act)

            r_ids_a = sub(r_ids)
            tin, tout, g = self._slab(table, r_ids_a, sub(cam_xy), sub(fwd), sub(right))
            hit = (tin <= tout) & (tout > near)
            key = torch.where(hit, tin.clamp(min=near), _INF)
            if ids.shape[1]:
                # Occluders: boxes on the ground block every ray below their top edge.
                zmax = g.zmax[:, None]
                occ = torch.where(hit & g.standing[:, None] & (tin > near), (zmax - h) / tin, -_INF)
                occ_rounds.append((act, key, occ))
            k = min(keep_l, take)
            key_k, pos = torch.topk(key, k, dim=-1, largest=False, sorted=True)
            out_k = torch.gather(tout, -1, pos)
            id_k = torch.gather(r_ids_a[:, None].expand(-1, width, -1), -1, pos)
            m_key, pos = torch.topk(
                torch.cat([sub(lay_key), key_k], -1), keep_l, dim=-1, largest=False, sorted=True
            )
            m_out = torch.gather(torch.cat([sub(lay_out), out_k], -1), -1, pos)
            m_id = torch.gather(torch.cat([sub(lay_id), id_k], -1), -1, pos)
            if act is None:
                lay_key, lay_out, lay_id = m_key, m_out, m_id
            else:
                lay_key.index_copy_(0, act, m_key)
                lay_out.index_copy_(0, act, m_out)
                lay_id.index_copy_(0, act, m_id)
            if not ids.shape[1]:
                break
            # Occlusion cull of the rest: only occluders nearer than every remaining box count.
            depth_bound = r_info[:, -1:, 0].clamp(max=1e30)  # (V, 1): sorted, so ≤ every rest dmin
            occ_max = torch.full((nv, width), -_INF)
            for act_r, key_r, occ_r in occ_rounds:
                bound = depth_bound if act_r is None else depth_bound.index_select(0, act_r)
                m = torch.where(key_r <= bound[:, :, None], occ_r, -_INF).amax(-1)
                if act_r is None:
                    occ_max = torch.maximum(occ_max, m)
                else:
                    occ_max.index_copy_(0, act_r, torch.maximum(occ_max.index_select(0, act_r), m))
            lo, hi = info[..., 2].long(), info[..., 3].long()
            blocked = _range_min(occ_max, lo, hi)
            visible = (info[..., 1] > blocked) & torch.isfinite(info[..., 0])
            ids, info = _compact(visible, ids, info, dummy)
            size *= 2
        return self._select_layers(table, lay_key, lay_out, lay_id, cam_xy, fwd, right)

    def _select_layers(self, table, key, tout, ids, cam_xy, fwd, right):
        """Per column: drop the candidates whose rows nearer walls cover, keep the nearest
        ``layers`` of the rest, and describe them for the pixel and shading stages."""
        nv, width = len(cam_xy), self.view_hw[1]
        h, L = self._h, self.layers
        if key.shape[-1] < L:
            pad = L - key.shape[-1]
            key = torch.cat([key, torch.full((nv, width, pad), _INF)], -1)
            tout = torch.cat([tout, torch.full((nv, width, pad), _INF)], -1)
            ids = torch.cat([ids, torch.full((nv, width, pad), len(table) - 1)], -1)
        valid = torch.isfinite(key)
        g = table.take(ids, "zmin", "zmax")
        zmax, zmin = g.zmax, g.zmin
        tin = torch.where(valid, key, 1.0)
        tfar = torch.where(valid, tout, 1.0)
        # Rows each candidate shows in (its rays' b interval), and the rows of its wall, which
        # hide whatever lies behind its entry depth. Candidates are sorted by entry depth, so a
        # candidate is hidden where the walls of those before it cover all its rows.
        first, end = self._row_range(h, tin, tfar, zmin, zmax)
        shows = _row_mask(first, end, valid, self.view_hw[0])
        eps = 1e-5
        w_first = self._row_of_b((h - zmax) / tin + eps).ceil()
        w_end = self._row_of_b((h - zmin) / tin - eps).floor() + 1
        walls = _row_mask(w_first, w_end, valid, self.view_hw[0])
        n = key.shape[-1]
        covered = torch.zeros_like(shows)
        for j in range(1, n):
            covered[..., j, :] = covered[..., j - 1, :] | walls[..., j - 1, :]
        visible = ((shows & ~covered) != 0).any(-1)
        # Keep the nearest L visible candidates, but no more slots than some column needs.
        L = max(1, min(L, int(visible.sum(-1).max())))
        order = torch.argsort((~visible).to(torch.int8), dim=-1, stable=True)[..., :L]
        visible = torch.gather(visible, -1, order)
        tin = torch.gather(tin, -1, order)
        tfar = torch.gather(tfar, -1, order)
        ids = torch.gather(ids, -1, order)
        first = torch.gather(first, -1, order)
        end = torch.gather(end, -1, order)
        g = table.take(
            ids, "cx", "cy", "cos", "sin", "hx", "hy", "zmin", "zmax", "seed", "material", "colour"
        )
        zmax, zmin = g.zmax, g.zmin
        first = torch.where(visible, first, float(self.view_hw[0]))
        end = torch.where(visible, end, 0.0)
        return {
            "tin": tin,
            "first": first,  # rows first … end-1 may see the box
            "end": end,
            "hz_up": h - zmin,  # rays going up meet the bottom face at (h - zmin) / b
            "hz_dn": h - zmax,  # rays going down meet the top face at (h - zmax) / b
            "visible": visible,
            "attrs": self._column_attrs(g, tin, cam_xy, fwd, right),
        }

    def _column_attrs(self, g, tin, cam_xy, fwd, right):
        """What shading needs of each kept (column, layer): an ``(attributes, V·W·L)`` table.

        A column's ray enters a box through one wall at ``t_in``: the wall's normal, its lighting,
        the hit's position along the wall and the wall's length are the same for every pixel of
        the column that sees that wall.
        """
        c, s = g.cos, g.sin
        hx, hy = g.hx, g.hy
        a = self._a.view(1, -1, 1)
        fx, fy = fwd[:, 0, None, None], fwd[:, 1, None, None]
        rx, ry = right[:, 0, None, None], right[:, 1, None, None]
        dx, dy = fx + a * rx, fy + a * ry  # column ray direction (V, W, 1)
        ddx, ddy = c * dx + s * dy, c * dy - s * dx  # in the box frame
        px = cam_xy[:, 0, None, None] - g.cx
        py = cam_xy[:, 1, None, None] - g.cy
        lx = c * px + s * py + tin * ddx
        ly = c * py - s * px + tin * ddy
        on_x = (lx.abs() - hx).abs() <= (ly.abs() - hy).abs()  # entered through an x face
        sign_x = torch.where(ddx > 0, -1.0, 1.0)
        sign_y = torch.where(ddy > 0, -1.0, 1.0)
        nlx = torch.where(on_x, sign_x, 0.0)
        nly = torch.where(on_x, 0.0, sign_y)
        nx, ny = c * nlx - s * nly, s * nlx + c * nly
        cos_inc = (nx * dx + ny * dy).abs() * torch.rsqrt(dx * dx + dy * dy)
        ndotl = (nx * self._sun[0] + ny * self._sun[1]).clamp(min=0.0)
        light = 0.8 * self._amb + ndotl[..., None] * self._sun_rgb
        colour = g.colour
        seed = g.seed
        zmax = g.zmax
        u = torch.where(on_x, ly + hy, lx + hx)  # along the wall, from one corner
        face_len = torch.where(on_x, 2 * hy, 2 * hx)
        sec = 1.0 / cos_inc.clamp(min=0.12)
        # Facades: the window layout (from the box's seed) and the horizontal window coverage,
        # box-filtered over the pixel's footprint along the wall, are constant down a column.
        floor_h = 3.0 + 0.5 * torch.frac(seed * 7.13)
        spacing = 2.5 + 1.5 * torch.frac(seed * 13.7 + 0.37)
        win_w = 0.38 + 0.25 * torch.frac(seed * 3.31 + 0.11)
        win_h = 0.45 + 0.17 * torch.frac(seed * 5.77 + 0.53)
        shop = torch.frac(seed * 11.3 + 0.29) < 0.45
        ground_h = floor_h * torch.where(shop, 1.25, 1.0)
        n_cols = torch.clamp(torch.round(face_len / spacing), min=1.0)
        period = face_len / n_cols
        hu = (0.5 * tin * sec / (self._f * period)).clamp(min=1e-4)
        xu = u / period
        zero = torch.zeros_like(xu)
        cov_u = _filtered_pulse(xu, hu, 0.5 - win_w / 2, win_w, zero, n_cols)
        shop_w = 0.78
        cov_shop = _filtered_pulse(xu, hu, 0.5 - shop_w / 2, shop_w, zero, n_cols)
        columns = [
            tin,  # _A_TIN
            g.material,  # _A_MAT
            u,  # _A_U: along the wall
            face_len,  # _A_LEN
            g.zmin,
            zmax,
            nlx,  # _A_END: +1 front face (local +x), -1 rear face, 0 a side
            nx,
            ny,
            light[..., 0],  # _A_LIGHT: the wall's light
            light[..., 1],
            light[..., 2],
            colour[..., 0],  # _A_ALBEDO
            colour[..., 1],
            colour[..., 2],
            cov_u,  # _A_FACADE: window coverage across the wall, upper floors
            torch.where(shop, cov_shop, cov_u),  # ground floor: shop fronts or windows
            floor_h,
            ground_h,
            torch.floor((zmax - ground_h - 0.6) / floor_h).clamp(min=0.0),  # upper floors
            win_h,
            torch.where(shop, 0.25, 0.28 * floor_h),  # ground-floor glass: bottom
            torch.where(shop, ground_h - 0.55, (0.28 + win_h) * floor_h),  # and top
            torch.floor(xu) * 64.0 + torch.floor(seed * 1024.0) * 8192.0,  # window id (exact)
            hu,
        ]
        attrs = torch.empty((_A_COUNT, tin.numel()))
        for k, value in enumerate(columns):
            attrs[k] = value.reshape(-1)
        return attrs  # (attributes, V·W·L)

    def _row_of_b(self, b: torch.Tensor) -> torch.Tensor:
        """Fractional row whose centre has ray slope ``b`` (finite; clamped to ±1e6)."""
        r = b * self._f + (self.view_hw[0] / 2.0 - 0.5)
        return torch.nan_to_num(r, nan=0.0).clamp(-1e6, 1e6)

    def _row_range(self, h, tin, tfar, zmin, zmax):
        """Rows ``[first, end)`` (as floats) whose rays meet a box seen in ``[tin, tfar]``.

        A ray of slope ``b = (v + ½ − c_y)/f`` is at height ``h − b·t`` at depth ``t``; over the
        box's rectangle ``[tin, tfar] × [zmin, zmax]`` in the column's plane, ``b = (h − z)/t``
        spans an interval whose ends are taken at the rectangle's corners.
        """
        b_lo = torch.where(h > zmax, (h - zmax) / tfar, (h - zmax) / tin)
        b_hi = torch.where(h > zmin, (h - zmin) / tin, (h - zmin) / tfar)
        rows = float(self.view_hw[0])
        first = self._row_of_b(b_lo).ceil().clamp(0.0, rows)
        end = (self._row_of_b(b_hi).floor() + 1).clamp(0.0, rows)
        return first, end

    def _pixels(self, cols):
        """Nearest surface per pixel: depth (inf = sky) and layer (−1 = ground or sky)."""
        nv = cols["tin"].shape[0]
        height, width = self.view_hw
        hh = self._half
        best_t = torch.empty((nv, height, width))
        best_t[:, :hh] = _INF
        best_t[:, hh:] = self._h * self._ib[hh:].view(1, -1, 1)  # the ground
        best_l = torch.full((nv, height, width), -1, dtype=torch.int8)
        # Rows each layer can reach anywhere in this chunk: work on that band only.
        first = cols["first"].amin((0, 1)).long().tolist()
        end = cols["end"].amax((0, 1)).long().tolist()
        for i in range(cols["tin"].shape[-1]):
            for r0, r1, hz_key in (
                (first[i], min(end[i], hh), "hz_up"),
                (max(first[i], hh), end[i], "hz_dn"),
            ):
                if r1 <= r0:
                    continue
                v = self._rows[r0:r1].view(1, -1, 1)
                ib = self._ib[r0:r1].view(1, -1, 1)
                tin = cols["tin"][:, None, :, i]
                cand = torch.maximum(cols[hz_key][:, None, :, i] * ib, tin)
                band_t = best_t[:, r0:r1]
                closer = (v >= cols["first"][:, None, :, i]) & (v < cols["end"][:, None, :, i])
                closer &= cand < band_t
                band_t.copy_(torch.where(closer, cand, band_t))
                best_l[:, r0:r1].masked_fill_(closer, i)
        return best_t, best_l

    # Shading -----------------------------------------------------------------------------

    def _shade(self, table, cols, best_t, best_l, cam_xy, fwd, right, cars=None):
        """uint8 colours ``(V, H, W, 3)``: sky above the horizon, ground below, boxes on top."""
        nv = len(cam_xy)
        height, width = self.view_hw
        hh = self._half
        rgb = torch.empty((nv, height, width, 3), dtype=torch.float32)
        # Sky: the whole upper half (boxes overwrite it below).
        s_r = (right @ self._sun[:2])[:, None, None]
        s_f = (fwd @ self._sun[:2])[:, None, None]
        d = self._sky_dir
        cosang = (d[0] * s_r + d[1] * s_f + d[2] * self._sun[2]).clamp(min=0.0)
        c2 = cosang * cosang
        c8 = c2 * c2
        c8 = c8 * c8
        glow = 0.55 * c8 + 0.45 * c8 * c8 * c8 * c8
        disc = (cosang > 0.9995).float() * 2.0
        sky = self._sky_base + (glow + disc)[..., None] * self._glow_rgb
        if self._clouds is not None:
            sky = self._cloud_layer(sky, cam_xy, fwd, right)
        rgb[:, :hh] = sky
        # Ground: the whole lower half.
        rgb[:, hh:] = self._shade_ground(cam_xy, fwd, right, cars)
        flat = rgb.view(-1, 3)
        idx = torch.nonzero((best_l >= 0).view(-1)).squeeze(1)
        if len(idx):
            flat.index_copy_(
                0, idx, self._shade_boxes(cols, best_t, best_l, idx, cam_xy, fwd, right)
            )
        out = torch.clamp(flat * 255.0 + 0.5, 0, 255).to(torch.uint8)
        return out.view(nv, height, width, 3)

    def _cloud_layer(self, sky, cam_xy, fwd, right):
        """Blend a tiling cloud texture, seen on a plane 800 m up, into the sky ``(V, Hh, W, 3)``."""
        d = self._sky_dir
        reach = 800.0 / d[2].clamp(min=0.03)  # horizontal distance to the cloud plane
        v = lambda t: t[:, None, None]  # noqa: E731
        hx = d[0] * v(right[:, 0]) + d[1] * v(fwd[:, 0])
        hy = d[0] * v(right[:, 1]) + d[1] * v(fwd[:, 1])
        n = self._clouds.shape[0]
        scale = n / 6000.0  # the texture repeats every 6 km
        gx = (v(cam_xy[:, 0]) + reach * hx) * scale
        gy = (v(cam_xy[:, 1]) + reach * hy) * scale
        x0, y0 = torch.floor(gx), torch.floor(gy)
        fx, fy = gx - x0, gy - y0
        m = n - 1  # n is a power of two: wrap with a mask
        xi = x0.long() & m
        yi = y0.long() & m
        xj, yj = (xi + 1) & m, (yi + 1) & m
        tex = self._clouds.reshape(-1)
        top = torch.lerp(tex[yi * n + xi], tex[yi * n + xj], fx)
        bot = torch.lerp(tex[yj * n + xi], tex[yj * n + xj], fx)
        density = torch.lerp(top, bot, fy) * self._cloud_fade
        return sky + (self._cloud_rgb - sky) * density[..., None]

    def _shade_ground(self, cam_xy, fwd, right, cars=None):
        """Trilinear (two mip levels × bilinear) lookup of the lit ground, the dynamic cars'
        shadows, and fog."""
        v = lambda t: t[:, None, None]  # noqa: E731
        t, lat = self._g_t, self._g_lat
        x = v(cam_xy[:, 0]) + t * v(fwd[:, 0]) + lat * v(right[:, 0])
        y = v(cam_xy[:, 1]) + t * v(fwd[:, 1]) + lat * v(right[:, 1])
        table = self._ground.table
        acc = None
        for lv in self._g_levels:
            gx = x * lv["scale"] - lv["bx"]
            gy = y * lv["scale"] - lv["by"]
            x0 = torch.floor(gx)
            y0 = torch.floor(gy)
            fx = gx - x0
            fy = gy - y0
            xi = torch.minimum(x0.long().clamp_(min=0), lv["xmax"])
            yi = torch.minimum(y0.long().clamp_(min=0), lv["ymax"])
            ncol = lv["ncol"]
            base = yi * ncol + xi + lv["off"]
            w_lo = (1.0 - fy) * lv["w"]
            w_hi = fy * lv["w"]
            w00 = (w_lo * (1.0 - fx)).long()  # floor: the last weight takes the remainder
            w01 = (w_lo * fx).long()
            w10 = (w_hi * (1.0 - fx)).long()
            w11 = lv["w"].long() - w00 - w01 - w10
            part = (
                torch.take(table, base) * w00
                + torch.take(table, base + 1) * w01
                + torch.take(table, base + ncol) * w10
                + torch.take(table, base + ncol + 1) * w11
            )
            acc = part if acc is None else acc + part
        mask = 0xFFFF
        colour = torch.stack([acc & mask, (acc >> 16) & mask, acc >> 32], dim=-1).float()
        colour = colour * self._g_norm
        if cars is not None:
            self._car_shadows(colour, x, y, cam_xy, cars)
        fog = (1.0 - torch.exp(-self._g_dist / self.weather.fog_distance))[None, ..., None]
        return colour + (self._fog_rgb - colour) * fog

    def _car_shadows(self, colour, x, y, cam_xy, cars):
        """Darken the ground ``colour (V, Hh, W, 3)`` in place under the dynamic cars: each car's
        sun shadow (as a box 1.5 m high) and a little contact darkening around its footprint."""
        sun = self._sun
        horiz = max(float(torch.linalg.vector_norm(sun[:2])), 1e-6)
        tan_el = float(sun[2]) / horiz
        ux, uy = float(sun[0]) / horiz, float(sun[1]) / horiz
        length = min(1.5 / max(tan_el, 1e-3), 30.0)  # shadow length behind the car
        near = (cars["cx"] - cam_xy[:, :1]) ** 2 + (cars["cy"] - cam_xy[:, 1:]) ** 2 < 80.0**2
        flat = colour.view(-1, 3)
        per_view = x[0].numel()
        for k in torch.nonzero(near.any(0)).squeeze(1).tolist():
            car = {key: val[:, k] for key, val in cars.items()}
            # Only ground points within a circle around the car and its shadow need the test.
            mx = (car["cx"] - 0.5 * length * ux)[:, None, None]
            my = (car["cy"] - 0.5 * length * uy)[:, None, None]
            reach = (torch.sqrt(car["hx"] ** 2 + car["hy"] ** 2) + 0.5 * length + 0.6)[
                :, None, None
            ]
            inside = (x - mx) ** 2 + (y - my) ** 2 < reach * reach
            idx = torch.nonzero(inside.view(-1)).squeeze(1)
            if not len(idx):
                continue
            view = idx // per_view
            c, s = car["cos"][view], car["sin"][view]
            hx, hy = car["hx"][view], car["hy"][view]
            rx = x.view(-1)[idx] - car["cx"][view]
            ry = y.view(-1)[idx] - car["cy"][view]
            lx = c * rx + s * ry
            ly = c * ry - s * rx
            # The ray from the ground point towards the sun, in the car's frame.
            inv_x = 1.0 / (c * ux + s * uy)
            inv_y = 1.0 / (c * uy - s * ux)
            t0, t1 = (-hx - lx) * inv_x, (hx - lx) * inv_x
            u0, u1 = (-hy - ly) * inv_y, (hy - ly) * inv_y
            t_in = torch.maximum(torch.minimum(t0, t1), torch.minimum(u0, u1))
            t_out = torch.minimum(torch.maximum(t0, t1), torch.maximum(u0, u1))
            shadow = (t_in <= t_out) & (t_out >= 0) & (t_in * tan_el <= 1.5)
            ex = (lx.abs() - hx).clamp(min=0.0)
            ey = (ly.abs() - hy).clamp(min=0.0)
            contact = 1.0 - 0.4 * (1.0 - (ex * ex + ey * ey) * 4.0).clamp(min=0.0)
            f = torch.where(shadow[:, None], self._car_shadow_rgb, 1.0) * contact[:, None]
            flat[idx] = flat[idx] * f

    def _shade_boxes(self, cols, best_t, best_l, idx, cam_xy, fwd, right):
        """Colours ``(P, 3)`` of the pixels ``idx`` (flat, in ``(V, H, W)``) that see a box."""
        height, width = self.view_hw
        hw = height * width
        view = ((idx.float() + 0.5) * (1.0 / hw)).long()  # idx // hw, exact below 2**24
        pix = idx - view * hw
        col = self._col_of.index_select(0, pix)
        layer = best_l.view(-1).index_select(0, idx).long()
        cl = (view * width + col) * cols["tin"].shape[-1] + layer
        table = cols["attrs"]  # (attributes, V·W·L): one contiguous row per attribute

        def attr(k, at, n=1):  # attributes k … k+n-1 of the (column, layer) entries `at`
            if n == 1:
                return table[k].index_select(0, at)
            return torch.stack([table[k + j].index_select(0, at) for j in range(n)], -1)

        t = best_t.view(-1).index_select(0, idx)
        b = self._b_of.index_select(0, pix)
        wall = t <= attr(_A_TIN, cl)
        mat = attr(_A_MAT, cl)
        up = torch.where((b > 0)[:, None], self._light_top, self._light_bottom)
        light = torch.where(wall[:, None], attr(_A_LIGHT, cl, 3), up)
        colour = attr(_A_ALBEDO, cl, 3) * light

        def pick(mask):
            i = torch.nonzero(mask).squeeze(1)
            return i, cl.index_select(0, i)

        def part(i):  # the subset's depth, ray slope, height and footprint
            t_i, b_i = t.index_select(0, i), b.index_select(0, i)
            return t_i, b_i, self._h - b_i * t_i, t_i * (1.0 / self._f)

        def ray(i):  # the subset's world ray directions (horizontal, per unit depth)
            a = self._a.index_select(0, col.index_select(0, i))
            vi = view.index_select(0, i)
            f, r = fwd.index_select(0, vi), right.index_select(0, vi)
            return vi, f[:, 0] + a * r[:, 0], f[:, 1] + a * r[:, 1]

        facade = mat == Material.FACADE
        i, ci = pick(facade & wall)
        if len(i):
            _, _, z, foot = part(i)
            fac = [attr(_A_FACADE + k, ci) for k in range(_A_COUNT - _A_FACADE)]
            shaded = self._facade(
                attr(_A_ALBEDO, ci, 3), attr(_A_LIGHT, ci, 3), fac, z, attr(_A_ZMAX, ci), foot
            )
            colour.index_copy_(0, i, shaded)
        i, ci = pick(facade & ~wall)
        if len(i):
            roof = (0.35 * attr(_A_ALBEDO, ci, 3) + 0.65 * self._roof_grey) * light.index_select(
                0, i
            )
            colour.index_copy_(0, i, roof)
        i, ci = pick(mat == Material.CAR_BODY)
        if len(i):
            _, b_i, z, foot = part(i)
            _, dx, dy = ray(i)
            shaded = self._car_body(
                attr(_A_ALBEDO, ci, 3),
                light.index_select(0, i),
                attr(_A_NX, ci),
                attr(_A_NY, ci),
                wall.index_select(0, i),
                dx,
                dy,
                b_i,
                z - attr(_A_ZMIN, ci),
                foot,
                attr(_A_END, ci),
                attr(_A_U, ci),
                attr(_A_LEN, ci),
            )
            colour.index_copy_(0, i, shaded)
        i, _ = pick(mat == Material.GLASS)
        if len(i):
            refl = torch.where(wall.index_select(0, i), 0.22, 0.3)[:, None] * self._sky_reflect
            colour.index_copy_(0, i, colour.index_select(0, i) * 0.7 + refl)
        i, _ = pick(mat == Material.FOLIAGE)
        if len(i):
            t_i, _, z, foot = part(i)
            vi, dx, dy = ray(i)
            cam = cam_xy.index_select(0, vi)
            x, y = cam[:, 0] + t_i * dx, cam[:, 1] + t_i * dy
            shade = self._foliage(x, y, z, foot)
            colour.index_copy_(0, i, colour.index_select(0, i) * shade[:, None])
        dist = t * self._norm_of.index_select(0, pix)
        fog = 1.0 - torch.exp(dist * (-1.0 / self.weather.fog_distance))
        return colour + (self._fog_rgb - colour) * fog[:, None]

    def _facade(self, albedo, light, fac, z, zmax, foot):
        """Walls of buildings: a floor-by-floor window grid, shop fronts on the ground floor.

        ``fac`` holds the column's window layout (see :meth:`_column_attrs`); here only the
        vertical pattern is filtered per pixel.
        """
        cov_u, cov_g, floor_h, ground_h, n_floors, win_h, g_lo, g_hi, cell, hu = fac
        half = 0.5 * foot
        xv = (z - ground_h) / floor_h
        hv = (half / floor_h).clamp(min=1e-4)
        cov_v = _filtered_pulse(xv, hv, 0.28, win_h, torch.zeros_like(xv), n_floors)
        window = cov_u * cov_v + cov_g * _filtered_interval(z, half, g_lo, g_hi)
        # A darker plinth at the base and a cornice under the roof line.
        band = _filtered_interval(z, half, zmax - 0.45, zmax) + _filtered_interval(
            z, half, torch.zeros_like(z), torch.full_like(z, 0.35)
        )
        wall = albedo * light * (1.0 - 0.3 * band)[:, None]
        # Glass: dark blue-grey plus a reflection of the sky; ground floor a little darker, and
        # each window a touch different (faded out once windows blur together).
        jitter = _hash01((cell + torch.floor(xv)).long()) - 0.5
        fade = (1.0 - 4.0 * torch.maximum(hu, hv)).clamp(0.0, 1.0)
        bright = (1.0 + 0.5 * jitter * fade) * torch.where(z < ground_h, 0.75, 1.0)
        glass = (self._glass_rgb * light * 0.9 + 0.18 * self._sky_reflect) * bright[:, None]
        return wall + (glass - wall) * window[:, None]

    def _car_body(self, albedo, light, nx, ny, wall, dx, dy, b, zr, foot, end, u, face_len):
        """Glossy paint with a sun highlight and sky reflection; dark tyres and light clusters."""
        nz = torch.where(wall, 0.0, torch.where(b > 0, 1.0, -1.0))
        nx, ny = torch.where(wall, nx, 0.0), torch.where(wall, ny, 0.0)
        # View vector (towards the camera) and the Blinn-Phong half vector.
        vx, vy, vz = -dx, -dy, b
        vn = torch.rsqrt(vx * vx + vy * vy + vz * vz)
        sun = self._sun
        hxv, hyv, hzv = vx * vn + sun[0], vy * vn + sun[1], vz * vn + sun[2]
        hn = torch.rsqrt(hxv * hxv + hyv * hyv + hzv * hzv)
        ndoth = ((nx * hxv + ny * hyv + nz * hzv) * hn).clamp(min=0.0)
        s2 = ndoth * ndoth
        s4 = s2 * s2
        s16 = s4 * s4
        s16 = s16 * s16
        spec = s16 * s16 * 0.6
        refl = torch.where(nz > 0, 0.14, 0.07)[:, None] * self._sky_reflect
        extra = spec[:, None] * self._sun_rgb + refl
        colour = albedo * light
        # Tyres and the shadow under the body along its bottom.
        tyre = _filtered_interval(zr, 0.5 * foot, torch.zeros_like(zr), torch.full_like(zr, 0.32))
        tyre = torch.where(wall, tyre, 0.0)
        colour = colour + (self._tyre_rgb * light - colour) * tyre[:, None]
        extra = extra * (1.0 - tyre)[:, None]
        # Head lights (front face, local +x) and tail lights (rear face) near the corners.
        corner = torch.minimum(u, face_len - u)
        lamp = _filtered_interval(
            corner, 0.5 * foot, torch.full_like(u, 0.12), torch.full_like(u, 0.45)
        ) * _filtered_interval(
            zr, 0.5 * foot, torch.full_like(zr, 0.55), torch.full_like(zr, 0.75 * BODY_HEIGHT)
        )
        lamp = torch.where(wall & (end != 0), lamp, 0.0)
        lamp_rgb = torch.where((end > 0)[:, None], self._head_rgb, self._tail_rgb)
        colour = colour + (lamp_rgb * (0.5 + 0.5 * light) - colour) * lamp[:, None]
        return colour + extra

    def _foliage(self, x, y, z, foot):
        """Brightness variation of tree crowns from two octaves of world-position value noise."""
        out = torch.ones_like(x)
        for cell, amp in ((0.9, 0.28), (0.35, 0.18)):
            n = _hash01(
                (x / cell).floor().long(), (y / cell).floor().long(), (z / cell).floor().long()
            )
            fade = (1.0 - foot / cell).clamp(0.0, 1.0)
            out = out + amp * (n - 0.5) * 2 * fade
        return out * torch.clamp(0.75 + 0.08 * z, max=1.05)


def _compact_ids(keep: torch.Tensor, ids: torch.Tensor, dummy: int) -> torch.Tensor:
    """Move the kept ids of each row to its front (order preserved); pad with ``dummy``."""
    nv, m = keep.shape
    count = int(keep.sum(1).max()) if m else 0
    pos = torch.where(keep, keep.cumsum(1) - 1, count)
    out = torch.full((nv, count + 1), dummy, dtype=ids.dtype)
    out.scatter_(1, pos, ids)
    return out[:, :count]


def _compact(keep: torch.Tensor, ids: torch.Tensor, info: torch.Tensor, dummy: int):
    """Move the kept entries of each row to its front (order preserved); pad with ``dummy``."""
    nv, m = keep.shape
    count = int(keep.sum(1).max()) if m else 0
    pos = torch.where(keep, keep.cumsum(1) - 1, count)
    out_ids = torch.full((nv, count + 1), dummy, dtype=ids.dtype)
    out_ids.scatter_(1, pos, ids)
    # Padding: infinite depth, a slope that never shows, column 0.
    fill = torch.tensor([_INF, -_INF, 0.0, 0.0], dtype=info.dtype)
    out_info = fill.repeat(nv, count + 1, 1)
    out_info.scatter_(1, pos[..., None].expand(-1, -1, info.shape[-1]), info)
    return out_ids[:, :count], out_info[:, :count]


def _row_mask(first: torch.Tensor, end: torch.Tensor, valid: torch.Tensor, rows: int):
    """Bit masks ``(..., words)`` (int64, 64 rows a word) of the rows ``first … end − 1``."""
    first = first.clamp(0, rows).long()
    end = end.clamp(0, rows).long()
    one = torch.ones_like(first)
    words = []
    for w0 in range(0, rows, 64):
        lo = (first - w0).clamp(0, 64)
        hi = (end - w0).clamp(0, 64)
        # Bits lo … hi-1; for hi = 64 the wrap-around of 0 - (1 << lo) sets every bit ≥ lo.
        high = torch.where(hi < 64, torch.bitwise_left_shift(one, hi.clamp(max=63)), 0)
        bits = high - torch.bitwise_left_shift(one, lo.clamp(max=63))
        words.append(torch.where((hi > lo) & valid, bits, 0))
    return torch.stack(words, -1)


def _range_min(values: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``min(values[v, lo:hi+1])`` for every ``(v, k)`` via a sparse table. ``values (V, W)``."""
    nv, width = values.shape
    tables = [values]
    span = 1
    while span * 2 <= width:
        prev = tables[-1]
        nxt = torch.full_like(prev, _INF)
        nxt[:, : width - span] = torch.minimum(prev[:, : width - span], prev[:, span:])
        tables.append(nxt)
        span *= 2
    table = torch.stack(tables, 1).reshape(nv, -1)
    length = (hi - lo + 1).clamp(min=1)
    level = torch.floor(torch.log2(length.float())).long().clamp(max=len(tables) - 1)
    first = torch.gather(table, 1, level * width + lo)
    second = torch.gather(table, 1, level * width + (hi - (1 << level) + 1).clamp(min=0))
    return torch.minimum(first, second)
