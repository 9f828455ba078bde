"""Hand-made towns for tests that must not depend on the town generator.

``grid_town`` paints a road raster exactly as the town module describes the cross-section:
``road_half_width`` of asphalt each side of every centreline, the junction squares included,
and sidewalk beyond it.
"""

from __future__ import annotations

import numpy as np

from shareverse_env.world.scene import BoxSet, GroundMap, Surface
from shareverse_env.world.town import RoadNetwork, Town


def paint_ground(roads: RoadNetwork, bounds, resolution: float = 0.25) -> GroundMap:
    """A ground raster with ROAD within ``road_half_width`` of every edge, SIDEWALK next to it."""
    x0, y0, x1, y1 = bounds
    cols = int(np.ceil((x1 - x0) / resolution))
    rows = int(np.ceil((y1 - y0) / resolution))
    xc = x0 + (np.arange(cols) + 0.5) * resolution
    yc = y0 + (np.arange(rows) + 0.5) * resolution
    surface = np.full((rows, cols), Surface.GRASS, np.uint8)
    half = roads.road_half_width
    for widen, code in ((half + roads.sidewalk_width, Surface.SIDEWALK), (half, Surface.ROAD)):
        for a, b in roads.edges:
            (ax, ay), (bx, by) = roads.nodes[a], roads.nodes[b]
            lo_x, hi_x = min(ax, bx) - widen, max(ax, bx) + widen
            lo_y, hi_y = min(ay, by) - widen, max(ay, by) + widen
            mask = ((yc >= lo_y) & (yc <= hi_y))[:, None] & ((xc >= lo_x) & (xc <= hi_x))[None, :]
            surface[mask] = code
    rgb = np.zeros((rows, cols, 3), np.uint8)
    rgb[surface == Surface.ROAD] = 60
    return GroundMap((float(x0), float(y0)), resolution, rgb, surface)


def grid_roads(nx: int = 5, ny: int = 5, spacing: float = 70.0, drop=()) -> RoadNetwork:
    """``nx × ny`` nodes ``spacing`` apart, node ``r * nx + c`` at ``(c, r) * spacing``; edges in
    ``drop`` (pairs of node indices) are left out, which makes T-junctions."""
    nodes = np.array([(c * spacing, r * spacing) for r in range(ny) for c in range(nx)], float)
    edges = [(r * nx + c, r * nx + c + 1) for r in range(ny) for c in range(nx - 1)]
    edges += [(r * nx + c, (r + 1) * nx + c) for r in range(ny - 1) for c in range(nx)]
    dropped = {tuple(sorted(e)) for e in drop}
    edges = [e for e in edges if tuple(sorted(e)) not in dropped]
    return RoadNetwork(nodes=nodes, edges=np.array(edges))


def grid_town(
    nx: int = 5, ny: int = 5, spacing: float = 70.0, drop=(), boxes: BoxSet | None = None
) -> Town:
    """A grid town with an exact road raster, sidewalk blocks, and ``boxes`` (default none)."""
    roads = grid_roads(nx, ny, spacing, drop)
    pad = 20.0
    bounds = (-pad, -pad, (nx - 1) * spacing + pad, (ny - 1) * spacing + pad)
    ground = paint_ground(roads, bounds)
    return Town(
        seed=0,
        bounds=bounds,
        roads=roads,
        ground=ground,
        boxes=BoxSet.empty() if boxes is None else boxes,
    )


def block_buildings(roads: RoadNetwork, spacing: float, nx: int, ny: int) -> BoxSet:
    """One building filling the inside of each block, set back behind the sidewalk."""
    inset = roads.road_half_width + roads.sidewalk_width + 0.5
    rows = []
    for r in range(ny - 1):
        for c in range(nx - 1):
            cx, cy = (c + 0.5) * spacing, (r + 0.5) * spacing
            half = spacing / 2 - inset
            rows.append(
                dict(
                    center=(cx, cy),
                    half_extent=(half, half),
                    z_range=(0.0, 15.0),
                    colour=(0.6, 0.5, 0.4),
                )
            )
    return BoxSet.from_rows(rows)
