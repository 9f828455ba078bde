"""Top-down map of a town: the ground raster, roofs, agents and their routes, north up.

:func:`topdown_image` draws a square ``size × size`` RGB map covering the town's ground raster
(the shorter side is padded with grass, centred). The static part — the ground raster
box-filtered down to the map's pixels, and the footprint of every box filled with the colour it
shows from above (roofs as the renderer shades them, crowns, cars), lowest boxes first — is
rendered at up to 3× supersampling, averaged down, and cached per town and size, so that the
per-frame cost (env minimap) is only the agents and routes on a copy of it.

Pixel coordinates are continuous ``(col, row)`` with row 0 at the top (the town's north edge):
pixel ``[r, c]`` covers ``col ∈ [c, c + 1)``, ``row ∈ [r, r + 1)``; :func:`world_to_pixel`
converts world points.

Example:
    >>> import numpy as np
    >>> from shareverse_env.world.generator import generate_town
    >>> town = generate_town(0)
    >>> img = topdown_image(town, size=128, poses=np.array([[0.0, -1.75, 0.0]]))
    >>> img.shape, img.dtype
    ((128, 128, 3), dtype('uint8'))
    >>> col, row = world_to_pixel(town, np.array([0.0, 0.0]), size=128)
    >>> bool(0 <= col < 128 and 0 <= row < 128)
    True
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from shareverse_env.world.scene import Material
from shareverse_env.world.town import Town
from shareverse_env.world.vehicles import CAR_LENGTH, agent_colour

__all__ = ["map_frame", "topdown_image", "world_to_pixel"]

_ROOF_GREY = np.array(
    [0.34, 0.33, 0.33]
)  # the renderer's roof tone (roof = 0.35·albedo + 0.65·grey)
_GRASS = np.array([95, 128, 56], dtype=np.float64)  # padding beyond the raster
_CACHE_SIZE = 8
_backgrounds: dict[tuple[int, int], tuple[weakref.ref, np.ndarray]] = {}


def map_frame(town: Town, size: int) -> tuple[float, float, float]:
    """``(x_left, y_top, metres_per_pixel)`` of the square map of ``town`` at ``size`` pixels.

    The map is the smallest square holding the ground raster, centred on it.

    Example:
        >>> from shareverse_env.world.generator import generate_town
        >>> x_left, y_top, mpp = map_frame(generate_town(0), 256)
        >>> mpp > 1.0
        True
    """
    if int(size) < 8:
        raise ValueError(f"size must be at least 8 pixels; got {size!r}")
    ground = town.ground
    rows, cols = ground.shape
    width, height = cols * ground.resolution, rows * ground.resolution
    side = max(width, height)
    cx, cy = ground.origin[0] + width / 2, ground.origin[1] + height / 2
    return cx - side / 2, cy + side / 2, side / int(size)


def world_to_pixel(town: Town, xy: np.ndarray, size: int = 256) -> np.ndarray:
    """Continuous ``(col, row)`` map coordinates ``(..., 2)`` of world points ``xy (..., 2)``.

    North (+y) is up and east (+x) to the right; ``floor`` of the result indexes the pixel.

    Example:
        >>> from shareverse_env.world.generator import generate_town
        >>> town = generate_town(0)
        >>> x_left, y_top, mpp = map_frame(town, 100)
        >>> world_to_pixel(town, np.array([x_left + 5 * mpp, y_top - 7 * mpp]), 100).round(6).tolist()
        [5.0, 7.0]
    """
    x_left, y_top, mpp = map_frame(town, size)
    xy = np.asarray(xy, dtype=np.float64)
    return np.stack([(xy[..., 0] - x_left) / mpp, (y_top - xy[..., 1]) / mpp], axis=-1)


def topdown_image(
    town: Town,
    size: int = 256,
    poses: np.ndarray | None = None,
    colours: np.ndarray | Sequence[Sequence[float]] | None = None,
    routes: list[np.ndarray] | None = None,
) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 top-down map of ``town``, optionally with agents and routes.

    Args:
        town: the town.
        size: side of the square image in pixels.
        poses: ``(N, 3)`` (or ``(3,)``) agent poses ``(x, y, yaw)``; each is drawn as a
            triangle pointing along its heading, outlined in black, at least car-sized and
            never smaller than a few pixels so that it stays visible on small maps.
        colours: ``(N, 3)`` RGB per agent, floats in ``[0, 1]`` or integers in ``[0, 255]``;
            agent ``k`` defaults to :func:`~.vehicles.agent_colour` ``(k)``. Route ``k`` takes
            a lighter shade of colour ``k``.
        routes: polylines ``(P_k, 2)`` in world xy, drawn under the agents.

    Example:
        >>> from shareverse_env.world.generator import generate_town
        >>> town = generate_town(0)
        >>> route = np.array([[0.0, -1.75], [60.0, -1.75]])
        >>> plain = topdown_image(town, 96)
        >>> marked = topdown_image(town, 96, poses=np.array([[30.0, -1.75, 0.0]]), routes=[route])
        >>> bool((plain != marked).any()), plain.shape
        (True, (96, 96, 3))
    """
    size = int(size)
    image = _background(town, size).copy()
    n_agents = 0
    pose_arr = None
    if poses is not None:
        pose_arr = np.asarray(poses, dtype=np.float64).reshape(-1, 3)
        if not np.all(np.isfinite(pose_arr)):
            raise ValueError("poses must be finite")
        n_agents = len(pose_arr)
    n_colours = max(n_agents, len(routes) if routes is not None else 0)
    palette = _palette(colours, n_colours)
    _, _, mpp = map_frame(town, size)
    if routes is not None:
        width = max(1, round(size / 256))
        for k, route in enumerate(routes):
            light = 0.55 * palette[k] + 0.45 * 255.0
            _draw_polyline(
                image, world_to_pixel(town, np.asarray(route)[:, :2], size), light, width
            )
    if pose_arr is not None:
        length = max(CAR_LENGTH / mpp, float(np.clip(size * 0.045, 6.0, 14.0)))
        pix = world_to_pixel(town, pose_arr[:, :2], size)
        for k in range(n_agents):
            # Image rows grow southwards, so the heading's y flips.
            d = np.array([np.cos(pose_arr[k, 2]), -np.sin(pose_arr[k, 2])])
            n = np.array([-d[1], d[0]])
            tri = np.array([d * 0.5, -d * 0.5 + n * 0.35, -d * 0.5 - n * 0.35]) * length
            outline = tri * (1 + 2.5 / length) + pix[k]
            _fill_convex(image, outline, np.zeros(3))
            _fill_convex(image, tri + pix[k], palette[k])
    return image


# --------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------


def _palette(colours, n: int) -> np.ndarray:
    """``(max(n, len(colours)), 3)`` float RGB in [0, 255]."""
    if colours is None:
        return np.array([agent_colour(k) for k in range(n)], dtype=np.float64).reshape(-1, 3) * 255
    arr = np.asarray(colours)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"colours must be (N, 3) RGB; got shape {arr.shape}")
    if len(arr) < n:
        raise ValueError(f"need a colour for each of {n} agents/routes; got {len(arr)}")
    scale = 1.0 if np.issubdtype(arr.dtype, np.integer) else 255.0
    return np.clip(arr.astype(np.float64) * scale, 0, 255)


def _background(town: Town, size: int) -> np.ndarray:
    key = (id(town), size)
    hit = _backgrounds.get(key)
    if hit is not None and hit[0]() is town:
        return hit[1]
    image = _render_static(town, size)
    image.setflags(write=False)
    if len(_backgrounds) >= _CACHE_SIZE:
        _backgrounds.pop(next(iter(_backgrounds)))
    _backgrounds[key] = (weakref.ref(town), image)
    return image


def _render_static(town: Town, size: int) -> np.ndarray:
    ss = max(1, min(3, 2048 // size))  # supersampling factor; the result is box-filtered
    big = ss * size
    x_left, y_top, mpp = map_frame(town, size)
    sub = mpp / ss
    ground = town.ground
    # Each supersample takes the mean of the texels under it (up to 4×4), so thin road markings
    # fade into the asphalt instead of aliasing.
    taps = int(np.clip(np.ceil(sub / ground.resolution), 1, 4))
    offsets = (np.arange(taps) + 0.5) / taps - 0.5
    xs = x_left + (np.arange(big)[:, None] + 0.5 + offsets[None]) * sub  # (big, taps)
    ys = y_top - (np.arange(big)[:, None] + 0.5 + offsets[None]) * sub
    cols = np.floor((xs - ground.origin[0]) / ground.resolution).astype(np.int64).ravel()
    rows = np.floor((ys - ground.origin[1]) / ground.resolution).astype(np.int64).ravel()
    col_in = (cols >= 0) & (cols < ground.shape[1])
    row_in = (rows >= 0) & (rows < ground.shape[0])
    texels = ground.rgb[
        np.clip(rows, 0, ground.shape[0] - 1)[:, None],
        np.clip(cols, 0, ground.shape[1] - 1)[None, :],
    ]
    texels = np.where(
        (row_in[:, None] & col_in[None, :])[..., None], texels, _GRASS.astype(np.uint8)
    )
    image = texels.reshape(big, taps, big, taps, 3).mean(axis=(1, 3))

    boxes = town.boxes
    if len(boxes):
        colour = boxes.colour.astype(np.float64)
        facade = boxes.material == Material.FACADE
        roof = 0.35 * colour + 0.65 * _ROOF_GREY
        # Taller roofs a little brighter: a cue to height in a flat map.
        height = boxes.z_range[:, 1].astype(np.float64)
        roof *= (0.85 + 0.35 * np.clip(height / 45.0, 0, 1))[:, None]
        colour = np.where(facade[:, None], roof, colour) * 255
        # Buildings get a darker rim about half a map pixel wide, so that neighbours with
        # similar roofs stay apart.
        inset = np.where(facade, 0.6 * mpp, 0.0)[:, None]
        inner = replace(boxes, half_extent=np.maximum(boxes.half_extent - inset, 0.05))

        def to_px(corners: np.ndarray) -> np.ndarray:
            corners = corners.astype(np.float64)
            return np.stack([(corners[..., 0] - x_left) / sub, (y_top - corners[..., 1]) / sub], -1)

        outer_px, inner_px = to_px(boxes.footprint_corners()), to_px(inner.footprint_corners())
        for k in np.argsort(boxes.z_range[:, 1], kind="stable"):
            if facade[k]:
                _fill_convex(image, outer_px[k], 0.6 * colour[k])
            _fill_convex(image, inner_px[k], colour[k])
    small = image.reshape(size, ss, size, ss, 3).mean(axis=(1, 3))
    return np.clip(np.round(small), 0, 255).astype(np.uint8)


def _fill_convex(image: np.ndarray, poly: np.ndarray, colour: np.ndarray) -> None:
    """Fill the pixels whose centres lie inside the convex polygon ``poly (K, 2)`` (col, row)."""
    h, w = image.shape[:2]
    c0 = max(int(np.floor(poly[:, 0].min())), 0)
    c1 = min(int(np.ceil(poly[:, 0].max())) + 1, w)
    r0 = max(int(np.floor(poly[:, 1].min())), 0)
    r1 = min(int(np.ceil(poly[:, 1].max())) + 1, h)
    if c0 >= c1 or r0 >= r1:
        return
    cx = np.arange(c0, c1) + 0.5
    cy = np.arange(r0, r1)[:, None] + 0.5
    edge = np.roll(poly, -1, axis=0) - poly
    # Signed area fixes the winding, so the inside is on the same side of every edge.
    sign = (
        np.sign(np.sum(poly[:, 0] * np.roll(poly[:, 1], -1) - np.roll(poly[:, 0], -1) * poly[:, 1]))
        or 1.0
    )
    inside = np.ones((r1 - r0, c1 - c0), dtype=bool)
    for (px, py), (ex, ey) in zip(poly, edge, strict=True):
        inside &= sign * (ex * (cy - py) - ey * (cx - px)) >= 0
    image[r0:r1, c0:c1][inside] = colour


def _draw_polyline(image: np.ndarray, pts: np.ndarray, colour: np.ndarray, width: int) -> None:
    """Draw a polyline of continuous pixel coordinates ``(P, 2)`` ``width`` pixels thick."""
    if len(pts) == 0:
        return
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.arange(0.0, s[-1] + 0.5, 0.5)
    x = np.interp(t, s, pts[:, 0])
    y = np.interp(t, s, pts[:, 1])
    h, w = image.shape[:2]
    lo = -(width // 2)
    for dx in range(lo, lo + width):
        for dy in range(lo, lo + width):
            c = np.floor(x).astype(np.int64) + dx
            r = np.floor(y).astype(np.int64) + dy
            ok = (c >= 0) & (c < w) & (r >= 0) & (r < h)
            image[r[ok], c[ok]] = colour
