"""Tests of the procedural town generator: the road graph, the ground raster and the boxes."""

from __future__ import annotations

import doctest
from dataclasses import fields

import numpy as np
import pytest

from shareverse_env.world import generator as generator_module
from shareverse_env.world.generator import (
    BLOCK_SIZE,
    JUNCTION_CLEARANCE,
    MARGIN,
    generate_roads,
    generate_town,
)
from shareverse_env.world.scene import BoxSet, Material, Surface
from shareverse_env.world.town import RoadNetwork, Town
from shareverse_env.world.vehicles import PARKED_COLOURS

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def towns() -> list[Town]:
    return [generate_town(seed) for seed in SEEDS]


def _is_car(boxes: BoxSet) -> np.ndarray:
    return (boxes.material == Material.CAR_BODY) | (boxes.material == Material.GLASS)


def _footprint_samples(boxes: BoxSet, n: int = 7) -> np.ndarray:
    """``(M, n², 2)`` world points spread over each footprint, corners included (just inside)."""
    u = np.linspace(-0.99, 0.99, n)
    local = np.stack(np.meshgrid(u, u), axis=-1).reshape(-1, 2)[None] * boxes.half_extent[:, None]
    c, s = np.cos(boxes.yaw)[:, None], np.sin(boxes.yaw)[:, None]
    x = c * local[..., 0] - s * local[..., 1]
    y = s * local[..., 0] + c * local[..., 1]
    return np.stack([x, y], axis=-1) + boxes.center[:, None, :]


def _edge_frames(roads: RoadNetwork):
    """For each edge: start xy, unit direction, left normal, length."""
    for a, b in roads.edges:
        pa, pb = roads.nodes[a], roads.nodes[b]
        length = float(np.linalg.norm(pb - pa))
        u = (pb - pa) / length
        yield pa, u, np.array([-u[1], u[0]]), length


def _connected(roads: RoadNetwork) -> bool:
    seen, stack = {0}, [0]
    while stack:
        for n in roads.neighbours(stack.pop()):
            if n not in seen:
                seen.add(n)
                stack.append(n)
    return len(seen) == len(roads.nodes)


def test_doctests():
    result = doctest.testmod(generator_module)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_arrays(towns):
    again = generate_town(SEEDS[0])
    town = towns[0]
    assert again.bounds == town.bounds
    np.testing.assert_array_equal(again.roads.nodes, town.roads.nodes)
    np.testing.assert_array_equal(again.roads.edges, town.roads.edges)
    np.testing.assert_array_equal(again.ground.rgb, town.ground.rgb)
    np.testing.assert_array_equal(again.ground.surface, town.ground.surface)
    assert again.ground.origin == town.ground.origin
    for f in fields(BoxSet):
        np.testing.assert_array_equal(getattr(again.boxes, f.name), getattr(town.boxes, f.name))


def test_different_seeds_give_different_towns(towns):
    a, b = towns
    assert a.seed != b.seed
    assert a.roads.nodes.shape != b.roads.nodes.shape or not np.allclose(
        a.roads.nodes, b.roads.nodes
    )
    assert len(a.boxes) != len(b.boxes) or not np.allclose(a.boxes.center, b.boxes.center)


def test_generate_roads_matches_town(towns):
    for seed, town in zip(SEEDS, towns, strict=True):
        roads = generate_roads(seed)
        np.testing.assert_array_equal(roads.nodes, town.roads.nodes)
        np.testing.assert_array_equal(roads.edges, town.roads.edges)


# ------------------------------------------------------------------ the road network


def test_junctions_connectivity_and_no_dead_ends_across_seeds():
    for seed in range(200):
        roads = generate_roads(seed)
        degree = roads.degree()
        kinds = [roads.junction_kind(n) for n in range(len(roads.nodes))]
        assert kinds.count("X") >= 2, f"seed {seed}: {kinds.count('X')} X-junctions"
        assert kinds.count("T") >= 2, f"seed {seed}: {kinds.count('T')} T-junctions"
        assert degree.min() >= 2, f"seed {seed}: a dead end"
        assert _connected(roads), f"seed {seed}: disconnected"
        # At least one segment was removed inside the grid: an interior T-junction.
        lo, hi = roads.nodes.min(axis=0), roads.nodes.max(axis=0)
        interior = np.all((roads.nodes > lo + 1e-6) & (roads.nodes < hi - 1e-6), axis=1)
        assert np.any(interior & (degree == 3)), f"seed {seed}: no interior T-junction"


def test_grid_geometry_and_cross_section():
    for seed in range(20):
        roads = generate_roads(seed)
        assert (roads.lane_width, roads.parking_width, roads.sidewalk_width) == (3.5, 2.5, 3.0)
        assert len(roads.nodes) == 25
        np.testing.assert_array_equal(roads.nodes[0], [0.0, 0.0])
        for axis in (0, 1):
            lines = np.unique(roads.nodes[:, axis])
            assert len(lines) == 5
            steps = np.diff(lines)
            assert np.all(steps >= BLOCK_SIZE[0] - 0.5) and np.all(steps <= BLOCK_SIZE[1] + 0.5)
        delta = roads.nodes[roads.edges[:, 1]] - roads.nodes[roads.edges[:, 0]]
        assert np.all(np.sum(np.abs(delta) > 1e-9, axis=1) == 1)  # axis-aligned


def test_other_grid_sizes():
    tiny = generate_town(3, blocks=(1, 1))
    assert tiny.roads.degree().tolist() == [2, 2, 2, 2]
    wide = generate_roads(3, blocks=(6, 2), block_size=(60.0, 60.0))
    assert len(wide.nodes) == 21 and wide.degree().min() >= 2 and _connected(wide)
    assert np.allclose(np.unique(wide.nodes[:, 0]), np.arange(7) * 60.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(seed=-1),
        dict(seed=1.5),
        dict(seed=0, blocks=(0, 3)),
        dict(seed=0, blocks=(3,)),
        dict(seed=0, block_size=(20.0, 30.0)),
        dict(seed=0, block_size=(80.0, 60.0)),
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        generate_roads(**kwargs)


def test_invalid_raster_arguments():
    with pytest.raises(ValueError):
        generate_town(0, resolution=0.0)
    with pytest.raises(ValueError):
        generate_town(0, margin=-1.0)


# ------------------------------------------------------------------ the ground raster


def test_raster_size_resolution_and_extent(towns):
    for town in towns:
        ground, roads = town.ground, town.roads
        assert ground.resolution == 0.25
        assert ground.rgb.dtype == np.uint8 and ground.surface.dtype == np.uint8
        assert ground.rgb.shape == (*ground.shape, 3)
        x0, y0 = ground.origin
        x1 = x0 + ground.shape[1] * ground.resolution
        y1 = y0 + ground.shape[0] * ground.resolution
        reach = roads.road_half_width + roads.sidewalk_width + MARGIN
        lo, hi = roads.nodes.min(axis=0) - reach, roads.nodes.max(axis=0) + reach
        assert x0 <= lo[0] and y0 <= lo[1] and x1 >= hi[0] and y1 >= hi[1]
        assert x1 - x0 < hi[0] - lo[0] + 2.0 and y1 - y0 < hi[1] - lo[1] + 2.0
        bx0, by0, bx1, by1 = town.bounds
        assert x0 <= bx0 and y0 <= by0 and x1 >= bx1 and y1 >= by1
        assert set(np.unique(ground.surface).tolist()) <= {int(s) for s in Surface}


def test_surfaces_across_every_road(towns):
    for town in towns:
        roads, ground = town.roads, town.ground
        half, side = roads.road_half_width, roads.sidewalk_width
        for pa, u, left, length in _edge_frames(roads):
            mid = pa + u * length / 2
            lateral = np.array([0.0, 1.0, 3.0, 4.5, half - 0.1])
            for sign in (-1.0, 1.0):
                on_road = ground.surface_at(mid + sign * lateral[:, None] * left)
                assert np.all(on_road == Surface.ROAD)
                walk = ground.surface_at(
                    mid + sign * np.array([[half + 0.2], [half + side - 0.2]]) * left
                )
                assert np.all(walk == Surface.SIDEWALK)
                beyond = ground.surface_at(mid + sign * (half + side + 0.3) * left)
                assert beyond != Surface.ROAD and beyond != Surface.SIDEWALK
        # Junction squares are asphalt throughout.
        for node in roads.nodes:
            offsets = np.stack(np.meshgrid(*[np.linspace(-half + 0.1, half - 0.1, 9)] * 2), -1)
            assert np.all(ground.surface_at(node + offsets.reshape(-1, 2)) == Surface.ROAD)


def _brightness(town: Town, xy: np.ndarray) -> np.ndarray:
    row, col, _ = town.ground.texel_index(xy)
    return town.ground.rgb[row, col].astype(np.float64).mean(axis=-1)


def _line_brightness(town: Town, along: np.ndarray, left: np.ndarray, lateral: float) -> np.ndarray:
    """Brightest texel within 0.2 m of ``lateral``: a line is one texel wide, wherever it falls."""
    window = np.linspace(-0.2, 0.2, 5)
    pts = along[:, None] + (lateral + window)[None, :, None] * left
    return _brightness(town, pts).max(axis=1)


def test_markings(towns):
    for town in towns:
        roads = town.roads
        half = roads.road_half_width
        degree = roads.degree()
        # No markings inside junction squares: only dark asphalt there.
        for node in roads.nodes:
            offsets = np.stack(np.meshgrid(*[np.arange(-half + 0.1, half - 0.1, 0.25)] * 2), -1)
            assert _brightness(town, node + offsets.reshape(-1, 2)).max() < 110
        for pa, u, left, length in _edge_frames(roads):
            t = np.arange(half + 6.0, length - half - 6.0, 0.25)
            along = pa + t[:, None] * u
            # Dashed centre line: white in places, asphalt in between.
            centre = _line_brightness(town, along, left, 0.0)
            assert 0.3 < np.mean(centre > 150) < 0.7
            # Solid edge lines between the driving and the parking lane on both sides.
            for sign in (-1.0, 1.0):
                assert np.all(_line_brightness(town, along, left, sign * roads.lane_width) > 150)
                assert np.all(_brightness(town, along + sign * 1.75 * left) < 110)
        # Zebra crossings on every arm of every junction: alternating stripes across the road.
        for node in np.flatnonzero(degree >= 3):
            p = roads.nodes[node]
            for other in roads.neighbours(int(node)):
                v = (roads.nodes[other] - p) / np.linalg.norm(roads.nodes[other] - p)
                across = np.arange(-half + 0.2, half - 0.2, 0.1)[:, None] * np.array([-v[1], v[0]])
                stripes = _brightness(town, p + (half + 2.0) * v + across) > 150
                assert 0.3 < stripes.mean() < 0.7 and np.count_nonzero(np.diff(stripes)) >= 16


def test_lots_include_open_ground(towns):
    for town in towns:
        assert np.any(town.ground.surface == Surface.LOT)
        assert np.any(town.ground.surface == Surface.GRASS)


# ------------------------------------------------------------------ boxes


def test_box_count_and_bounds(towns):
    for town in towns:
        assert 300 < len(town.boxes) < 1500
        corners = town.boxes.footprint_corners().reshape(-1, 2)
        x0, y0, x1, y1 = town.bounds
        assert np.all(corners >= np.array([x0, y0]) - 1e-3)
        assert np.all(corners <= np.array([x1, y1]) + 1e-3)
        assert np.all(town.roads.nodes >= np.array([x0, y0]))
        assert np.all(town.roads.nodes <= np.array([x1, y1]))
        assert np.all(np.isfinite(town.boxes.center)) and np.all(town.boxes.z_range[:, 1] > 0)


def test_only_parked_cars_stand_on_the_road(towns):
    for town in towns:
        boxes, roads = town.boxes, town.roads
        samples = _footprint_samples(boxes)
        on_road = (town.ground.surface_at(samples) == Surface.ROAD).any(axis=1)
        cars = _is_car(boxes)
        assert not np.any(on_road & ~cars), "a non-car box overlaps the road"
        # Every car sample on the road lies in a parking lane, away from junction squares.
        pts = samples[on_road & cars].reshape(-1, 2)
        assert len(pts) > 0
        ok = np.zeros(len(pts), dtype=bool)
        for pa, u, left, length in _edge_frames(roads):
            t = (pts - pa) @ u
            lat = np.abs((pts - pa) @ left)
            clear = roads.road_half_width + JUNCTION_CLEARANCE - 0.01
            ok |= (
                (t >= clear)
                & (t <= length - clear)
                & (lat >= roads.lane_width)
                & (lat <= roads.road_half_width)
            )
        assert ok.all(), f"{np.mean(~ok):.1%} of parked-car samples outside parking lanes"


def test_parked_cars(towns):
    for town in towns:
        boxes = town.boxes
        bodies = boxes.select(boxes.material == Material.CAR_BODY)
        assert len(bodies) > 20
        # Aligned with the roads, muted colours only.
        assert np.allclose(np.sin(2 * bodies.yaw.astype(np.float64)), 0.0, atol=1e-6)
        palette = np.asarray(PARKED_COLOURS, dtype=np.float32)
        assert np.all(np.any(np.all(np.isclose(bodies.colour[:, None], palette[None]), -1), -1))


def test_buildings(towns):
    all_heights = []
    for town in towns:
        b = town.boxes.select(town.boxes.material == Material.FACADE)
        assert len(b) > 150
        assert np.all(b.yaw == 0.0)
        size = 2 * b.half_extent
        assert np.all(size.min(axis=1) >= 7.99) and np.all(size.max(axis=1) <= 25.01)
        heights = b.z_range[:, 1]
        assert np.all(b.z_range[:, 0] == 0.0) and np.all((heights >= 5) & (heights <= 45))
        assert np.all((b.seed >= 0) & (b.seed < 1)) and len(np.unique(b.seed)) > len(b) // 2
        assert len(np.unique(np.round(b.colour, 2), axis=0)) > 20
        all_heights.append(heights)
        # Buildings never overlap one another.
        lo, hi = b.center - b.half_extent, b.center + b.half_extent
        overlap = np.all((lo[:, None] < hi[None] - 1e-3) & (lo[None] < hi[:, None] - 1e-3), axis=-1)
        np.fill_diagonal(overlap, False)
        assert not overlap.any()
        # An outer ring beyond the border roads on all four sides.
        reach = town.roads.road_half_width + town.roads.sidewalk_width
        nlo, nhi = town.roads.nodes.min(axis=0), town.roads.nodes.max(axis=0)
        assert np.sum(hi[:, 0] <= nlo[0] - reach + 1e-3) >= 5
        assert np.sum(lo[:, 0] >= nhi[0] + reach - 1e-3) >= 5
        assert np.sum(hi[:, 1] <= nlo[1] - reach + 1e-3) >= 5
        assert np.sum(lo[:, 1] >= nhi[1] + reach - 1e-3) >= 5
    heights = np.concatenate(all_heights)
    assert np.any(heights > 28) and np.median(heights) < 20  # a few towers, mostly low-rise


def test_street_trees_and_lamps(towns):
    for town in towns:
        boxes, roads = town.boxes, town.roads
        crowns = boxes.material == Material.FOLIAGE
        poles = boxes.material == Material.POLE
        assert crowns.sum() > 50 and poles.sum() > crowns.sum()
        assert np.allclose(boxes.z_range[poles, 0], 0.0)
        assert np.all((boxes.z_range[poles, 1] >= 2.5) & (boxes.z_range[poles, 1] <= 5.5))
        assert np.all(boxes.z_range[crowns, 0] >= 2.0)
        # Furniture on the sidewalks keeps clear of junctions and crosswalks.
        on_walk = town.ground.surface_at(boxes.center) == Surface.SIDEWALK
        assert np.any(on_walk & crowns) and np.any(on_walk & poles & (boxes.z_range[:, 1] > 4.5))
        furniture = boxes.center[on_walk].astype(np.float64)
        gap = np.abs(furniture[:, None, :] - roads.nodes[None]).max(axis=-1).min(axis=1)
        assert gap.min() >= roads.road_half_width + 3.5 + 2.0
