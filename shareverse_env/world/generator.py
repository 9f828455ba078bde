"""Procedural towns from a seed: a jittered street grid, a painted ground raster and static boxes.

:func:`generate_town` builds a :class:`~.town.Town` in four stages, each drawing from its own
random stream (``numpy.random.Generator(PCG64(...))`` seeded from one ``SeedSequence(seed)``
spawn), so that the same seed always gives identical arrays and a change to one stage never
reshuffles the others (the road network of a seed survives changes to tree placement):

1. **Road network** (:func:`generate_roads`). ``blocks = (bx, by)`` blocks need ``bx + 1``
   north–south and ``by + 1`` east–west roads; the spacing between neighbouring grid lines (the
   block size, centreline to centreline) is drawn per town from ``block_size`` and rounded to
   0.5 m so that kerbs and markings fall on texel edges. Every crossing is a node, numbered
   row-major (``node = j·(bx + 1) + i`` at ``(xs[i], ys[j])``, ``xs[0] = ys[0] = 0``); every
   grid step is an edge stored low → high coordinate. The interior crossings are X-junctions,
   the border ones T-junctions and the four outer corners bends (degree 2). A few interior
   segments between two X-junctions are removed, which turns both ends into T-junctions and
   merges the two blocks beside the segment into one large lot. Removals never touch a block
   twice, never take a node below degree 3 and keep the network connected, so there are no dead
   ends; the default ``(4, 4)`` grid loses one or two segments and so has 5–7 X-junctions,
   14–16 T-junctions and 4 corners.
2. **Lots.** Each block (the area inside its sidewalks) becomes a building block (buildings on
   every edge facing the street, a green courtyard inside) or, for a few, an open lot: a park
   (grass, gravel paths, trees), a plaza (paving, a monument, trees, lamps) or a parking lot
   (stalls and cars).
3. **Ground raster** (a :class:`~.scene.GroundMap` at ``resolution`` m/texel covering the road
   network plus ``margin`` beyond the outermost sidewalks). It is painted as a small integer
   "paint" raster by filling axis-aligned rectangles (grass, lots, sidewalks, kerbs, asphalt,
   then markings: dashed white centre lines, solid white edge lines between the driving and
   the parking lane, zebra crosswalks and stop lines before every junction of degree ≥ 3, no
   lines inside junction squares). Surface codes and albedo then come from look-up tables;
   the albedo mixes two tones per paint by low-frequency value noise and adds a little grain.
4. **Boxes** (a :class:`~.scene.BoxSet`): buildings (:attr:`Material.FACADE`, frontage 8–25 m,
   depth 10–25 m, set back 0–3 m, 5–45 m high with a few towers, a varied palette, a per-box
   ``seed`` for the renderer's window grid); an outer ring of buildings beyond the border roads
   so that views out of town meet facades rather than emptiness; sidewalk trees (a
   :attr:`Material.POLE` trunk and a :attr:`Material.FOLIAGE` crown) and street lamps every
   12–20 m, kept ``JUNCTION_CLEARANCE`` clear of junctions and crosswalks; parked cars
   (:func:`~.vehicles.car_boxes`, :data:`~.vehicles.PARKED_COLOURS`) in the parking lanes,
   aligned with the traffic on their side and at least ``JUNCTION_CLEARANCE`` from any junction
   square. Only parked cars stand on :attr:`Surface.ROAD`, and only in parking lanes.

``Town.bounds`` is the built-up area (the road network's sidewalks and every box). A default
town has 800–1400 boxes (about 1050 on average) and takes about 0.3 s to generate.

Example:
    >>> town = generate_town(0)
    >>> town.ground.resolution, len(town.boxes) < 1500
    (0.25, True)
    >>> kinds = [town.roads.junction_kind(n) for n in range(len(town.roads.nodes))]
    >>> kinds.count("X") >= 2 and kinds.count("T") >= 2 and "end" not in kinds
    True
    >>> bool(np.array_equal(town.ground.rgb, generate_town(0).ground.rgb))
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from shareverse_env.world.scene import BoxSet, GroundMap, Material, Surface
from shareverse_env.world.town import RoadNetwork, Town
from shareverse_env.world.vehicles import CAR_LENGTH, PARKED_COLOURS, car_boxes

__all__ = [
    "BLOCK_SIZE",
    "BUILDING_PALETTE",
    "JUNCTION_CLEARANCE",
    "MARGIN",
    "RESOLUTION",
    "generate_roads",
    "generate_town",
]

RESOLUTION = 0.25
"""Default metres per ground texel."""

MARGIN = 40.0
"""Default ground raster margin beyond the outermost sidewalks, metres."""

BLOCK_SIZE = (52.0, 88.0)
"""Default range of the grid spacing (block size, centreline to centreline), metres."""

JUNCTION_CLEARANCE = 12.0
"""Parked cars keep this far from junction squares; trees and lamps from the crosswalks."""

BUILDING_PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.62, 0.33, 0.26),  # red brick
    (0.52, 0.28, 0.22),  # dark brick
    (0.72, 0.45, 0.33),  # terracotta
    (0.84, 0.77, 0.63),  # beige
    (0.78, 0.70, 0.55),  # sandstone
    (0.91, 0.90, 0.86),  # white render
    (0.70, 0.70, 0.69),  # light grey
    (0.50, 0.51, 0.53),  # concrete grey
    (0.88, 0.82, 0.60),  # pastel yellow
    (0.66, 0.76, 0.82),  # pastel blue
    (0.70, 0.80, 0.68),  # pastel green
    (0.88, 0.72, 0.70),  # pastel pink
)
"""Facade base colours; each building takes one with a small random tint."""

_STREAMS = 5  # roads, lots, ground noise, buildings, street furniture + cars

# Paint codes of the ground raster; _PAINTS maps each to its surface and two albedo tones.
_GRASS, _SIDEWALK, _KERB, _ASPHALT, _MARKING, _PLAZA, _PARKING, _PATH, _STALL = range(9)
_PAINTS: tuple[tuple[Surface, tuple[float, float, float], tuple[float, float, float], float], ...]
_PAINTS = (
    # surface, tone a, tone b (mixed by low-frequency noise), grain amplitude
    (Surface.GRASS, (0.29, 0.47, 0.19), (0.43, 0.53, 0.24), 0.10),
    (Surface.SIDEWALK, (0.69, 0.68, 0.65), (0.75, 0.74, 0.71), 0.035),
    (Surface.SIDEWALK, (0.53, 0.53, 0.51), (0.58, 0.58, 0.56), 0.03),
    (Surface.ROAD, (0.22, 0.22, 0.23), (0.29, 0.29, 0.30), 0.05),
    (Surface.ROAD, (0.90, 0.90, 0.88), (0.78, 0.78, 0.76), 0.03),
    (Surface.LOT, (0.78, 0.72, 0.62), (0.71, 0.66, 0.57), 0.03),
    (Surface.LOT, (0.38, 0.38, 0.39), (0.45, 0.45, 0.46), 0.05),
    (Surface.LOT, (0.75, 0.68, 0.53), (0.69, 0.62, 0.49), 0.06),
    (Surface.LOT, (0.88, 0.88, 0.86), (0.80, 0.80, 0.78), 0.03),
)
_SURFACE_OF_PAINT = np.array([p[0] for p in _PAINTS], dtype=np.uint8)
_TONE_A = np.array([p[1] for p in _PAINTS], dtype=np.float32) * 255
_TONE_B = np.array([p[2] for p in _PAINTS], dtype=np.float32) * 255
_GRAIN = np.array([p[3] for p in _PAINTS], dtype=np.float32)

# Markings, as distances along an arm from the node centre (junction square ends at half width).
_CROSSWALK = (0.5, 3.5)  # zebra band, measured from the junction square's edge
_STOP_LINE = (4.0, 4.5)  # across the incoming driving lane, beyond the crosswalk
_LINE_START = 5.0  # lane lines resume after the stop line
_LINE = 0.25  # marking width: one texel at the default resolution
_KERB_WIDTH = 0.5  # the darker kerb strip at the sidewalk's road edge (two texels)

_TRUNK = (0.33, 0.25, 0.18)
_POLE = (0.24, 0.25, 0.27)
_LAMP = (0.95, 0.93, 0.80)
_STONE = (0.70, 0.69, 0.66)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def generate_roads(
    seed: int, blocks: tuple[int, int] = (4, 4), block_size: tuple[float, float] = BLOCK_SIZE
) -> RoadNetwork:
    """The road network of ``generate_town(seed, blocks, block_size=block_size)``, alone and fast.

    Useful for tests and tools that need only the graph (it skips the raster and the boxes).

    Example:
        >>> roads = generate_roads(3)
        >>> len(roads.nodes), sorted(set(roads.degree().tolist()))
        (25, [2, 3, 4])
        >>> bool(np.array_equal(roads.nodes, generate_town(3).roads.nodes))
        True
    """
    streams = _streams(seed)
    return _layout(streams[0], blocks, block_size).roads


def generate_town(
    seed: int,
    blocks: tuple[int, int] = (4, 4),
    *,
    block_size: tuple[float, float] = BLOCK_SIZE,
    resolution: float = RESOLUTION,
    margin: float = MARGIN,
) -> Town:
    """Generate a town from ``seed`` (see the module docstring for what it contains).

    Args:
        seed: a non-negative integer; the same seed (and arguments) gives identical arrays.
        blocks: ``(bx, by)`` number of blocks along x and y (each ≥ 1).
        block_size: ``(low, high)`` range of the grid spacing in metres (each ≥ 40).
        resolution: metres per ground texel.
        margin: ground raster margin beyond the outermost sidewalks, metres.

    Returns:
        The :class:`~.town.Town`; node 0 of its road network is at the origin and the grid
        extends to +x and +y.

    Example:
        >>> town = generate_town(7, blocks=(2, 3))
        >>> len(town.roads.nodes), town.ground.resolution
        (12, 0.25)
        >>> centre = town.roads.nodes[town.roads.edges[0]].mean(axis=0)
        >>> int(town.ground.surface_at(centre)) == Surface.ROAD
        True
    """
    if resolution <= 0 or not math.isfinite(resolution):
        raise ValueError(f"resolution must be a positive number of metres; got {resolution!r}")
    if margin < 0 or not math.isfinite(margin):
        raise ValueError(f"margin must be ≥ 0 metres; got {margin!r}")
    streams = _streams(seed)
    layout = _layout(streams[0], blocks, block_size)
    lots = _assign_lots(streams[1], layout)
    roads = layout.roads

    rows: list[dict[str, Any]] = []
    stalls: list[tuple[float, float, float, float]] = []
    cars: list[np.ndarray] = []
    paths: list[tuple[tuple[float, float, float, float], int]] = []
    rng = streams[3]
    for lot in lots:
        if lot.kind == "buildings":
            _building_block(rng, lot, rows)
        elif lot.kind == "park":
            paths += _park(rng, lot, rows)
        elif lot.kind == "plaza":
            _plaza(rng, lot, rows)
        else:
            stalls_here, cars_here = _parking_lot(rng, lot)
            stalls += stalls_here
            cars.append(cars_here)
    _outer_ring(rng, layout, rows)
    _street_furniture(streams[4], roads, rows)
    cars.append(_parked_car_poses(streams[4], roads))
    poses = np.concatenate(cars) if cars else np.zeros((0, 3))
    colour_index = streams[4].integers(0, len(PARKED_COLOURS), size=len(poses))
    parked = car_boxes(poses, np.asarray(PARKED_COLOURS, dtype=np.float32)[colour_index])
    boxes = BoxSet.concatenate([BoxSet.from_rows(rows), parked])

    # Built-up area: the sidewalks of the network and every box.
    reach = roads.road_half_width + roads.sidewalk_width
    corners = boxes.footprint_corners().reshape(-1, 2)
    lo = np.minimum(roads.nodes.min(axis=0) - reach, corners.min(axis=0, initial=np.inf))
    hi = np.maximum(roads.nodes.max(axis=0) + reach, corners.max(axis=0, initial=-np.inf))
    bounds = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))

    ground = _paint_ground(
        streams[2], layout, lots, paths, stalls, bounds, resolution, reach + margin
    )
    return Town(seed=int(seed), bounds=bounds, roads=roads, ground=ground, boxes=boxes)


# --------------------------------------------------------------------------------------------
# Stage 1: the road network
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """The grid behind a road network: line positions, removed segments and the lots."""

    roads: RoadNetwork
    xs: np.ndarray  # x of the north–south grid lines
    ys: np.ndarray  # y of the east–west grid lines
    cells: tuple[tuple[int, int, int, int], ...]  # (i0, j0, i1, j1): lot spans cells i0..i1-1


def _streams(seed: int) -> list[np.random.Generator]:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    children = np.random.SeedSequence(int(seed)).spawn(_STREAMS)
    return [np.random.Generator(np.random.PCG64(child)) for child in children]


def _layout(
    rng: np.random.Generator, blocks: tuple[int, int], block_size: tuple[float, float]
) -> _Layout:
    if len(blocks) != 2 or int(blocks[0]) < 1 or int(blocks[1]) < 1:
        raise ValueError(f"blocks must be (bx, by) with both ≥ 1; got {blocks!r}")
    bx, by = int(blocks[0]), int(blocks[1])
    low, high = (float(v) for v in block_size)
    if not 40.0 <= low <= high:
        raise ValueError(f"block_size must be (low, high) with 40 ≤ low ≤ high; got {block_size}")
    # Rounding to 0.5 m keeps every kerb (6 m) and lane line (3.5 m) on a texel edge.
    steps = np.round(rng.uniform(low, high, size=bx + by) * 2) / 2
    xs = np.concatenate([[0.0], np.cumsum(steps[:bx])])
    ys = np.concatenate([[0.0], np.cumsum(steps[bx:])])
    nx, ny = bx + 1, by + 1
    nodes = np.array([(x, y) for y in ys for x in xs])
    edges = [(j * nx + i, j * nx + i + 1) for j in range(ny) for i in range(nx - 1)]
    edges += [(j * nx + i, (j + 1) * nx + i) for j in range(ny - 1) for i in range(nx)]

    def interior(n: int) -> bool:
        i, j = n % nx, n // nx
        return 0 < i < nx - 1 and 0 < j < ny - 1

    def cells_beside(edge: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        a, b = edge
        i, j = a % nx, a // nx
        if b == a + 1:  # east–west segment: the cells south and north of it
            return (i, j - 1), (i, j)
        return (i - 1, j), (i, j)  # north–south segment: the cells west and east of it

    # Removing a segment between two X-junctions makes two T-junctions and one merged lot.
    candidates = [e for e in edges if interior(e[0]) and interior(e[1])]
    order = rng.permutation(len(candidates))
    wanted = int(rng.integers(1, max(1, len(candidates) // 6) + 1)) if candidates else 0
    degree = np.zeros(len(nodes), dtype=np.int64)
    np.add.at(degree, np.asarray(edges).ravel(), 1)
    kept = set(edges)
    merged: dict[tuple[int, int], tuple[int, int]] = {}
    for k in order:
        if len(merged) >= 2 * wanted:
            break
        edge = candidates[k]
        a, b = edge
        pair = cells_beside(edge)
        if degree[a] != 4 or degree[b] != 4 or any(c in merged for c in pair):
            continue
        if not _connected(len(nodes), kept - {edge}):
            continue
        kept.discard(edge)
        degree[a] -= 1
        degree[b] -= 1
        merged[pair[0]], merged[pair[1]] = pair[1], pair[0]

    cells = []
    for j in range(by):
        for i in range(bx):
            other = merged.get((i, j))
            if other is None:
                cells.append((i, j, i + 1, j + 1))
            elif other > (i, j):  # emit each merged pair once, from its lower cell
                cells.append((i, j, other[0] + 1, other[1] + 1))
    edge_array = np.array([e for e in edges if e in kept], dtype=np.int64)
    roads = RoadNetwork(nodes=nodes, edges=edge_array)
    return _Layout(roads=roads, xs=xs, ys=ys, cells=tuple(cells))


def _connected(num_nodes: int, edges: set[tuple[int, int]]) -> bool:
    adjacency: list[list[int]] = [[] for _ in range(num_nodes)]
    for a, b in edges:
        adjacency[a].append(b)
        adjacency[b].append(a)
    seen = {0}
    stack = [0]
    while stack:
        for n in adjacency[stack.pop()]:
            if n not in seen:
                seen.add(n)
                stack.append(n)
    return len(seen) == num_nodes


# --------------------------------------------------------------------------------------------
# Stage 2: lots
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Lot:
    """A block's ground inside its sidewalks, and what stands on it."""

    x0: float
    y0: float
    x1: float
    y1: float
    kind: str  # "buildings", "park", "plaza" or "parking"

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0


def _assign_lots(rng: np.random.Generator, layout: _Layout) -> list[_Lot]:
    inset = layout.roads.road_half_width + layout.roads.sidewalk_width
    rects = [
        (layout.xs[i0] + inset, layout.ys[j0] + inset, layout.xs[i1] - inset, layout.ys[j1] - inset)
        for i0, j0, i1, j1 in layout.cells
    ]
    # About one block in six is open ground: at least one per town for variety, at most one in
    # five so that streets stay lined with buildings.
    n_open = int(np.clip(rng.binomial(len(rects), 1 / 6), 1, max(1, math.ceil(len(rects) / 5))))
    open_idx = set(rng.choice(len(rects), size=n_open, replace=False).tolist())
    kinds = rng.choice(["park", "plaza", "parking"], size=len(rects), p=[0.5, 0.25, 0.25])
    return [
        _Lot(*rect, kind=str(kinds[k]) if k in open_idx else "buildings")
        for k, rect in enumerate(rects)
    ]


# --------------------------------------------------------------------------------------------
# Stage 4: boxes
# --------------------------------------------------------------------------------------------


def _building_height(rng: np.random.Generator, floors_bonus: int = 0) -> float:
    if rng.random() < 0.05:  # the occasional tower gives the skyline landmarks
        return float(rng.uniform(28.0, 45.0))
    floors = int(rng.integers(2, 7)) + floors_bonus
    return float(np.clip(3.1 * floors + rng.uniform(0.4, 1.8), 5.0, 45.0))


def _add_building(
    rng: np.random.Generator,
    rows: list[dict[str, Any]],
    rect: tuple[float, float, float, float],
    height: float,
) -> None:
    x0, y0, x1, y1 = rect
    base = np.asarray(BUILDING_PALETTE[int(rng.integers(len(BUILDING_PALETTE)))])
    colour = np.clip(base * rng.uniform(0.92, 1.06) + rng.uniform(-0.025, 0.025, 3), 0.0, 1.0)
    rows.append(
        dict(
            center=((x0 + x1) / 2, (y0 + y1) / 2),
            half_extent=((x1 - x0) / 2, (y1 - y0) / 2),
            z_range=(0.0, height),
            colour=tuple(colour),
            material=Material.FACADE,
            seed=float(rng.random()),
        )
    )


def _building_row(
    rng: np.random.Generator,
    rows: list[dict[str, Any]],
    *,
    axis: int,
    start: float,
    end: float,
    front: float,
    inward: float,
    max_depth: float,
    gap_prob: float = 0.06,
    alley_prob: float = 0.25,
) -> None:
    """Buildings along a street front from ``start`` to ``end`` (on ``axis``: 0 for x, 1 for y).

    ``front`` is the coordinate of the front line (the sidewalk's outer edge) on the other axis
    and ``inward`` (±1) the direction away from the street; every building fits within
    ``max_depth`` of the front line.
    """
    if max_depth < 6.0:
        return
    t = start
    while end - t >= 8.0:
        frontage = rng.uniform(8.0, 25.0)
        rest = end - t - frontage
        if rest < 8.0:  # never leave a sliver: the last parcel takes the rest (or half of it)
            frontage = end - t if end - t <= 25.0 else (end - t) / 2
        lo, hi = t, t + frontage
        t = hi
        if rng.random() < gap_prob:
            continue
        if rng.random() < alley_prob and frontage - 2.5 >= 8.0:
            hi -= rng.uniform(1.0, 2.5)
        depth = rng.uniform(min(10.0, max_depth), max_depth)
        setback = 0.0 if rng.random() < 0.4 else rng.uniform(0.0, min(3.0, max_depth - depth))
        near, far = front + inward * setback, front + inward * (setback + depth)
        across = (min(near, far), max(near, far))
        rect = (lo, across[0], hi, across[1]) if axis == 0 else (across[0], lo, across[1], hi)
        _add_building(rng, rows, rect, _building_height(rng))


def _building_block(rng: np.random.Generator, lot: _Lot, rows: list[dict[str, Any]]) -> None:
    """Buildings on all four street fronts of a lot, which never overlap one another.

    Each corner gets a building spanning ``cx × cy`` from the corner; the rows between corners
    stay out of the corner columns, and the west/east rows are no deeper than the corners beside
    them, so they cannot reach the south/north rows.
    """
    half_w, half_h = lot.width / 2 - 0.5, lot.height / 2 - 0.5
    cx = {c: rng.uniform(min(12.0, half_w), min(25.0, half_w)) for c in ("sw", "se", "nw", "ne")}
    cy = {c: rng.uniform(min(12.0, half_h), min(25.0, half_h)) for c in ("sw", "se", "nw", "ne")}
    for corner in ("sw", "se", "nw", "ne"):
        sx, sy = (0.0, 0.0) if rng.random() < 0.5 else tuple(rng.uniform(0.0, 2.0, 2))
        x_near = lot.x0 if corner[1] == "w" else lot.x1
        y_near = lot.y0 if corner[0] == "s" else lot.y1
        ix = 1.0 if corner[1] == "w" else -1.0
        iy = 1.0 if corner[0] == "s" else -1.0
        xa, xb = x_near + ix * sx, x_near + ix * cx[corner]
        ya, yb = y_near + iy * sy, y_near + iy * cy[corner]
        rect = (min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))
        _add_building(rng, rows, rect, _building_height(rng, floors_bonus=1))
    depth_ns = min(25.0, half_h)
    _building_row(
        rng,
        rows,
        axis=0,
        start=lot.x0 + cx["sw"],
        end=lot.x1 - cx["se"],
        front=lot.y0,
        inward=1.0,
        max_depth=depth_ns,
    )
    _building_row(
        rng,
        rows,
        axis=0,
        start=lot.x0 + cx["nw"],
        end=lot.x1 - cx["ne"],
        front=lot.y1,
        inward=-1.0,
        max_depth=depth_ns,
    )
    _building_row(
        rng,
        rows,
        axis=1,
        start=lot.y0 + cy["sw"],
        end=lot.y1 - cy["nw"],
        front=lot.x0,
        inward=1.0,
        max_depth=min(25.0, cx["sw"], cx["nw"]),
    )
    _building_row(
        rng,
        rows,
        axis=1,
        start=lot.y0 + cy["se"],
        end=lot.y1 - cy["ne"],
        front=lot.x1,
        inward=-1.0,
        max_depth=min(25.0, cx["se"], cx["ne"]),
    )


def _tree(
    rng: np.random.Generator,
    rows: list[dict[str, Any]],
    xy: tuple[float, float],
    crown: float,
    crown_z: tuple[float, float],
) -> None:
    green = np.array([0.24, 0.47, 0.18]) * rng.uniform(0.8, 1.15) + rng.uniform(-0.03, 0.03, 3)
    rows.append(
        dict(
            center=xy,
            half_extent=(0.15, 0.15),
            z_range=(0.0, crown_z[0] + 0.5),
            colour=_TRUNK,
            material=Material.POLE,
        )
    )
    rows.append(
        dict(
            center=xy,
            half_extent=(crown / 2, crown / 2),
            z_range=crown_z,
            colour=tuple(np.clip(green, 0.0, 1.0)),
            material=Material.FOLIAGE,
            seed=float(rng.random()),
        )
    )


def _lamp(rows: list[dict[str, Any]], xy: tuple[float, float]) -> None:
    rows.append(
        dict(
            center=xy,
            half_extent=(0.1, 0.1),
            z_range=(0.0, 5.0),
            colour=_POLE,
            material=Material.POLE,
        )
    )
    rows.append(dict(center=xy, half_extent=(0.3, 0.3), z_range=(5.0, 5.25), colour=_LAMP))


def _park(
    rng: np.random.Generator, lot: _Lot, rows: list[dict[str, Any]]
) -> list[tuple[tuple[float, float, float, float], int]]:
    """Trees on grass around two crossing gravel paths; returns the paths to paint."""
    cx = rng.uniform(lot.x0 + 0.35 * lot.width, lot.x1 - 0.35 * lot.width)
    cy = rng.uniform(lot.y0 + 0.35 * lot.height, lot.y1 - 0.35 * lot.height)
    half_path = 1.5
    paths = [
        ((lot.x0, cy - half_path, lot.x1, cy + half_path), _PATH),
        ((cx - half_path, lot.y0, cx + half_path, lot.y1), _PATH),
    ]
    spacing = rng.uniform(8.0, 11.0)
    xs = np.arange(lot.x0 + 4.0, lot.x1 - 3.9, spacing)
    ys = np.arange(lot.y0 + 4.0, lot.y1 - 3.9, spacing)
    for x in xs:
        for y in ys:
            if rng.random() < 0.3:
                continue
            crown = rng.uniform(3.5, 6.0)
            px = float(np.clip(x + rng.uniform(-2, 2), lot.x0 + crown / 2, lot.x1 - crown / 2))
            py = float(np.clip(y + rng.uniform(-2, 2), lot.y0 + crown / 2, lot.y1 - crown / 2))
            if abs(px - cx) < half_path + 1.0 or abs(py - cy) < half_path + 1.0:
                continue  # keep the paths clear
            bottom = rng.uniform(2.0, 3.0)
            _tree(rng, rows, (px, py), crown, (bottom, bottom + rng.uniform(4.0, 7.0)))
    return paths


def _plaza(rng: np.random.Generator, lot: _Lot, rows: list[dict[str, Any]]) -> None:
    """A paved square: a monument on a plinth in the middle, trees and lamps around the edge."""
    cx, cy = (lot.x0 + lot.x1) / 2, (lot.y0 + lot.y1) / 2
    rows.append(dict(center=(cx, cy), half_extent=(3.0, 3.0), z_range=(0.0, 0.8), colour=_STONE))
    rows.append(
        dict(
            center=(cx, cy),
            half_extent=(0.8, 0.8),
            z_range=(0.8, rng.uniform(4.0, 7.0)),
            colour=(0.45, 0.50, 0.46),  # weathered bronze
        )
    )
    inset = 4.0
    spacing = rng.uniform(8.0, 11.0)
    ring = []
    for x in np.arange(lot.x0 + inset, lot.x1 - inset + 1e-6, spacing):
        ring += [(x, lot.y0 + inset), (x, lot.y1 - inset)]
    for y in np.arange(lot.y0 + inset + spacing, lot.y1 - inset - spacing / 2, spacing):
        ring += [(lot.x0 + inset, y), (lot.x1 - inset, y)]
    for k, (x, y) in enumerate(ring):
        if k % 4 == 3:
            _lamp(rows, (float(x), float(y)))
        else:
            _tree(rng, rows, (float(x), float(y)), rng.uniform(3.0, 4.0), (2.5, 6.5))


def _parking_lot(
    rng: np.random.Generator, lot: _Lot
) -> tuple[list[tuple[float, float, float, float]], np.ndarray]:
    """Rows of perpendicular stalls along x, some taken; returns stall lines and car poses."""
    stall_w, stall_d, aisle = 2.6, 5.0, 6.5
    x_start, x_end = lot.x0 + 2.0, lot.x1 - 2.0
    n_stalls = int((x_end - x_start) // stall_w)
    lines: list[tuple[float, float, float, float]] = []
    poses = []
    # Double rows (back to back) between aisles: aisle, row, row, aisle, ..., centred in y.
    pitch = 2 * stall_d + aisle
    n_double = max(0, int((lot.height - aisle) // pitch))
    y = lot.y0 + aisle + (lot.height - aisle - n_double * pitch) / 2
    row_starts = []
    for _ in range(n_double):
        row_starts += [(y, math.pi / 2), (y + stall_d, -math.pi / 2)]
        y += pitch
    occupancy = rng.uniform(0.3, 0.6)
    for y0, yaw in row_starts:
        for k in range(n_stalls + 1):
            x = x_start + k * stall_w
            lines.append((x - _LINE / 2, y0, x + _LINE / 2, y0 + stall_d))
        for k in range(n_stalls):
            if rng.random() < occupancy:
                x = x_start + (k + 0.5) * stall_w
                poses.append((x, y0 + stall_d / 2, yaw))
    return lines, np.asarray(poses, dtype=np.float64).reshape(-1, 3)


def _outer_ring(rng: np.random.Generator, layout: _Layout, rows: list[dict[str, Any]]) -> None:
    """Buildings facing the border roads from outside, so views out of town meet facades."""
    reach = layout.roads.road_half_width + layout.roads.sidewalk_width
    x0, x1 = layout.xs[0] - reach, layout.xs[-1] + reach
    y0, y1 = layout.ys[0] - reach, layout.ys[-1] + reach
    depth = 25.0
    common = dict(max_depth=depth, gap_prob=0.02, alley_prob=0.1)
    # South and north rows run past the corners; west and east rows fill the sides between.
    _building_row(
        rng, rows, axis=0, start=x0 - depth, end=x1 + depth, front=y0, inward=-1.0, **common
    )
    _building_row(
        rng, rows, axis=0, start=x0 - depth, end=x1 + depth, front=y1, inward=1.0, **common
    )
    _building_row(rng, rows, axis=1, start=y0, end=y1, front=x0, inward=-1.0, **common)
    _building_row(rng, rows, axis=1, start=y0, end=y1, front=x1, inward=1.0, **common)


def _segments(roads: RoadNetwork):
    """For each edge: start node, end node, start xy, unit direction (+x or +y), length."""
    for a, b in roads.edges:
        pa, pb = roads.nodes[a], roads.nodes[b]
        delta = pb - pa
        length = float(np.abs(delta).sum())
        yield int(a), int(b), pa, delta / length, length


def _street_furniture(
    rng: np.random.Generator, roads: RoadNetwork, rows: list[dict[str, Any]]
) -> None:
    """Trees and lamps along both sidewalks of every road, clear of junctions and crosswalks."""
    half = roads.road_half_width
    clear = half + _CROSSWALK[1] + 2.5  # past the crosswalk and its kerb ramps
    for _, _, pa, u, length in _segments(roads):
        left = np.array([-u[1], u[0]])
        for side in (-1.0, 1.0):
            spacing = rng.uniform(12.0, 20.0)
            usable = length - 2 * clear
            if usable < 0:
                continue
            count = int(usable // spacing) + 1
            start = clear + (usable - (count - 1) * spacing) / 2
            trees = rng.random() < 0.85  # some streets have lamps only
            phase = int(rng.integers(3))
            for k in range(count):
                t = start + k * spacing
                if rng.random() < 0.12:
                    continue
                if trees and (k + phase) % 3:
                    xy = pa + u * t + left * side * (half + roads.sidewalk_width / 2)
                    crown = rng.uniform(2.4, 2.8)
                    _tree(
                        rng, rows, (float(xy[0]), float(xy[1])), crown, (2.5, rng.uniform(5.5, 6.5))
                    )
                else:
                    xy = pa + u * t + left * side * (half + 0.5)
                    _lamp(rows, (float(xy[0]), float(xy[1])))


def _parked_car_poses(rng: np.random.Generator, roads: RoadNetwork) -> np.ndarray:
    """Cars in the parking lanes, facing the traffic of their side, away from junctions."""
    clear = roads.road_half_width + JUNCTION_CLEARANCE + CAR_LENGTH / 2
    offset = roads.lane_width + roads.parking_width / 2
    pitch = CAR_LENGTH + 1.5
    poses = []
    for _, _, pa, u, length in _segments(roads):
        left = np.array([-u[1], u[0]])
        heading = math.atan2(u[1], u[0])
        for side in (-1.0, 1.0):
            usable = length - 2 * clear
            if usable < 0 or rng.random() < 0.25:  # some kerbs stay empty
                continue
            density = rng.uniform(0.25, 0.65)
            count = int(usable // pitch) + 1
            start = clear + (usable - (count - 1) * pitch) / 2
            # Traffic keeps right, so cars on the left of u face against it (heading + pi).
            yaw = heading if side < 0 else heading + math.pi
            for k in range(count):
                if rng.random() < density:
                    t = start + k * pitch + rng.uniform(-0.4, 0.4)
                    t = min(max(t, clear), length - clear)
                    xy = pa + u * t + left * side * offset
                    poses.append((xy[0], xy[1], math.remainder(yaw, 2 * math.pi)))
    return np.asarray(poses, dtype=np.float64).reshape(-1, 3)


# --------------------------------------------------------------------------------------------
# Stage 3: the ground raster
# --------------------------------------------------------------------------------------------


class _Canvas:
    """The paint raster, filled by axis-aligned world rectangles (texel centres in [lo, hi))."""

    def __init__(self, origin: tuple[float, float], resolution: float, shape: tuple[int, int]):
        self.origin = origin
        self.resolution = resolution
        self.paint = np.full(shape, _GRASS, dtype=np.uint8)

    def _span(self, lo: float, hi: float, origin: float, size: int) -> tuple[int, int]:
        a = math.ceil((lo - origin) / self.resolution - 0.5)
        b = math.ceil((hi - origin) / self.resolution - 0.5)
        return max(a, 0), min(b, size)

    def fill(self, rect: tuple[float, float, float, float], paint: int) -> None:
        x0, y0, x1, y1 = rect
        c0, c1 = self._span(min(x0, x1), max(x0, x1), self.origin[0], self.paint.shape[1])
        r0, r1 = self._span(min(y0, y1), max(y0, y1), self.origin[1], self.paint.shape[0])
        if c0 < c1 and r0 < r1:
            self.paint[r0:r1, c0:c1] = paint


def _arm_rect(
    point: np.ndarray, v: np.ndarray, d0: float, d1: float, l0: float, l1: float
) -> tuple[float, float, float, float]:
    """World rectangle ``d ∈ [d0, d1]`` along ``v`` from ``point`` and ``l ∈ [l0, l1]`` to its left."""
    left = np.array([-v[1], v[0]])
    corners = np.array([point + v * d + left * lat for d in (d0, d1) for lat in (l0, l1)])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def _paint_ground(
    rng: np.random.Generator,
    layout: _Layout,
    lots: list[_Lot],
    paths: list[tuple[tuple[float, float, float, float], int]],
    stalls: list[tuple[float, float, float, float]],
    bounds: tuple[float, float, float, float],
    resolution: float,
    pad: float,
) -> GroundMap:
    roads = layout.roads
    lo = np.minimum(roads.nodes.min(axis=0) - pad, np.array(bounds[:2]) - 5.0)
    hi = np.maximum(roads.nodes.max(axis=0) + pad, np.array(bounds[2:]) + 5.0)
    origin_arr = np.floor(lo / resolution) * resolution
    cols, rows = (int(v) for v in np.ceil((hi - origin_arr) / resolution))
    origin = (float(origin_arr[0]), float(origin_arr[1]))
    canvas = _Canvas(origin, resolution, (rows, cols))

    for lot in lots:
        if lot.kind in ("plaza", "parking"):
            canvas.fill(
                (lot.x0, lot.y0, lot.x1, lot.y1), _PLAZA if lot.kind == "plaza" else _PARKING
            )
    for rect, paint in paths:
        canvas.fill(rect, paint)
    for rect in stalls:
        canvas.fill(rect, _STALL)

    # Sidewalk, then the kerb strip, then asphalt, each as widened edges plus node squares; the
    # squares give junctions their asphalt and wrap the sidewalk round corners and T-junctions.
    half = roads.road_half_width
    for widen, paint in (
        (half + roads.sidewalk_width, _SIDEWALK),
        (half + _KERB_WIDTH, _KERB),
        (half, _ASPHALT),
    ):
        for a, b in roads.edges:
            (ax, ay), (bx, by) = roads.nodes[a], roads.nodes[b]
            canvas.fill(
                (
                    min(ax, bx) - widen,
                    min(ay, by) - widen,
                    max(ax, bx) + widen,
                    max(ay, by) + widen,
                ),
                paint,
            )
        for x, y in roads.nodes:
            canvas.fill((x - widen, y - widen, x + widen, y + widen), paint)

    degree = roads.degree()
    junction = degree >= 3
    lane = roads.lane_width
    for a, b, pa, u, length in _segments(roads):
        # Lane lines stop where the junction square (or its crosswalk and stop line) begins.
        start = half + (_LINE_START if junction[a] else 0.0)
        end = length - half - (_LINE_START if junction[b] else 0.0)
        if end - start <= 0:
            continue
        for lateral in (-lane, lane):
            canvas.fill(
                _arm_rect(pa, u, start, end, lateral - _LINE / 2, lateral + _LINE / 2), _MARKING
            )
        dash, gap = 3.0, 3.0
        n_dash = int((end - start + gap) // (dash + gap))
        first = start + (end - start - (n_dash * (dash + gap) - gap)) / 2
        for k in range(n_dash):
            t = first + k * (dash + gap)
            canvas.fill(_arm_rect(pa, u, t, t + dash, -_LINE / 2, _LINE / 2), _MARKING)

    # Zebra crossings and stop lines on every arm of every junction of degree ≥ 3.
    bars = np.arange(-half + 0.5, half - 0.49, 1.1)
    for node in np.flatnonzero(junction):
        p = roads.nodes[node]
        for other in roads.neighbours(int(node)):
            v = roads.nodes[other] - p
            v = v / np.linalg.norm(v)
            for lateral in bars:
                canvas.fill(
                    _arm_rect(
                        p,
                        v,
                        half + _CROSSWALK[0],
                        half + _CROSSWALK[1],
                        lateral - 0.25,
                        lateral + 0.25,
                    ),
                    _MARKING,
                )
            # Traffic coming in drives along -v and keeps right, i.e. to the left of v.
            canvas.fill(
                _arm_rect(p, v, half + _STOP_LINE[0], half + _STOP_LINE[1], 0.0, lane), _MARKING
            )

    paint = canvas.paint
    surface = _SURFACE_OF_PAINT[paint]
    rgb = _albedo(rng, paint, origin, resolution)
    return GroundMap(origin=origin, resolution=resolution, rgb=rgb, surface=surface)


def _value_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth noise (about unit variance at lattice points) with features ``cell`` texels wide.

    Separable smoothstep interpolation of a random lattice: two passes over the raster.
    """
    rows, cols = shape
    lattice = rng.standard_normal((int(rows / cell) + 2, int(cols / cell) + 2), dtype=np.float32)

    def weights(n: int) -> tuple[np.ndarray, np.ndarray]:
        p = (np.arange(n, dtype=np.float32) + 0.5) / np.float32(cell)
        i = p.astype(np.intp)
        t = p - i
        return i, t * t * (3 - 2 * t)

    ri, rt = weights(rows)
    ci, ct = weights(cols)
    along_rows = lattice[ri] * (1 - rt)[:, None] + lattice[ri + 1] * rt[:, None]
    return along_rows[:, ci] * (1 - ct) + along_rows[:, ci + 1] * ct


def _albedo(
    rng: np.random.Generator, paint: np.ndarray, origin: tuple[float, float], resolution: float
) -> np.ndarray:
    shape = paint.shape
    # Two octaves of low-frequency noise blend each paint's two tones (patches of wear, lawns).
    low = 0.7 * _value_noise(rng, shape, 12.0 / resolution) + 0.3 * _value_noise(
        rng, shape, 3.0 / resolution
    )
    mix = np.clip(0.5 + 0.45 * low, 0.0, 1.0)[..., None]
    grain = rng.standard_normal(shape, dtype=np.float32) * _GRAIN[paint]
    colour = _TONE_A[paint] * (1 - mix) + _TONE_B[paint] * mix
    colour *= (1 + grain)[..., None]
    # Paving joints every 1.5 m on sidewalks and plazas (world-aligned, so seams line up).
    x = origin[0] + (np.arange(shape[1]) + 0.5) * resolution
    y = origin[1] + (np.arange(shape[0]) + 0.5) * resolution
    joint = ((x % 1.5) < resolution)[None, :] | ((y % 1.5) < resolution)[:, None]
    paved = (paint == _SIDEWALK) | (paint == _PLAZA)
    colour[joint & paved] *= 0.9
    return np.clip(colour, 0, 255).astype(np.uint8)
