"""Collision checks: rectangle overlap, cars against boxes, cars against cars, leaving the road."""

import doctest
import time

import numpy as np
import pytest

import shareverse_env.world.collision as collision_module
from shareverse_env.core.geometry import plan_chunk
from shareverse_env.world.collision import (
    CAR_HEIGHT,
    Collision,
    first_collisions,
    obstacle_boxes,
    rectangles_overlap,
)
from shareverse_env.world.scene import BoxSet, GroundMap, Surface
from shareverse_env.world.town import RoadNetwork, Town
from shareverse_env.world.vehicles import CAR_LENGTH, CAR_WIDTH, car_footprints


def make_town(boxes=(), road_half_width: float = 6.0) -> Town:
    """A 200 m square town; ROAD is the band |y| ≤ road_half_width, the rest SIDEWALK."""
    res = 0.25
    n = 800
    yc = -100.0 + (np.arange(n) + 0.5) * res
    surface = np.full((n, n), Surface.SIDEWALK, np.uint8)
    surface[np.abs(yc) <= road_half_width] = Surface.ROAD
    ground = GroundMap((-100.0, -100.0), res, np.zeros((n, n, 3), np.uint8), surface)
    roads = RoadNetwork(nodes=np.array([[-100.0, 0.0], [100.0, 0.0]]), edges=np.array([[0, 1]]))
    rows = [dict(colour=(0.5, 0.5, 0.5), **b) for b in boxes]
    box_set = BoxSet.from_rows(rows) if rows else BoxSet.empty()
    return Town(seed=0, bounds=(-100, -100, 100, 100), roads=roads, ground=ground, boxes=box_set)


def drive(start, action):
    return plan_chunk(np.asarray(start, float), np.asarray(action, float))


def test_doctests():
    result = doctest.testmod(collision_module)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------ rectangle overlap


def test_rectangles_known_cases():
    h = np.array([2.0, 1.0])
    z = np.zeros(2)
    cases = [
        ((0.0, 0.0), 0.0, True),  # identical
        ((4.0, 0.0), 0.0, True),  # touching end to end
        ((4.01, 0.0), 0.0, False),
        ((0.0, 2.0), 0.0, True),  # touching side by side
        ((0.0, 2.01), 0.0, False),
        # Rotated 45°: the axis-aligned boxes around them overlap, the rectangles do not.
        ((3.2, 3.2), np.pi / 4, False),
        ((2.0, 2.0), np.pi / 4, True),
    ]
    for center, yaw, expected in cases:
        got = bool(rectangles_overlap(z, h, 0.0, np.array(center), h, yaw))
        assert got == expected, (center, yaw)
        # Symmetric in its arguments.
        assert bool(rectangles_overlap(np.array(center), h, yaw, z, h, 0.0)) == expected
    assert bool(rectangles_overlap(z, h, 0.0, np.array([4.3, 0.0]), h, 0.0, margin=0.5))


def _overlap_reference(ca, ha, ya, cb, hb, yb) -> bool:
    """Slow SAT over polygon corners: project both corner sets on all four edge normals."""

    def corners(c, h, y):
        signs = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]])
        rot = np.array([[np.cos(y), -np.sin(y)], [np.sin(y), np.cos(y)]])
        return c + (signs * h) @ rot.T

    pa, pb = corners(ca, ha, ya), corners(cb, hb, yb)
    for poly in (pa, pb):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            normal = np.array([-edge[1], edge[0]])
            a, b = pa @ normal, pb @ normal
            if a.max() < b.min() or b.max() < a.min():
                return False
    return True


def test_rectangles_match_reference_and_broadcast():
    rng = np.random.default_rng(0)
    n = 2000
    ca, cb = rng.uniform(-4, 4, (n, 2)), rng.uniform(-4, 4, (n, 2))
    ha, hb = rng.uniform(0.2, 3, (n, 2)), rng.uniform(0.2, 3, (n, 2))
    ya, yb = rng.uniform(-np.pi, np.pi, n), rng.uniform(-np.pi, np.pi, n)
    got = rectangles_overlap(ca, ha, ya, cb, hb, yb)
    assert got.shape == (n,)
    want = np.array(
        [_overlap_reference(*args) for args in zip(ca, ha, ya, cb, hb, yb, strict=True)]
    )
    assert np.array_equal(got, want)
    assert 0.2 < want.mean() < 0.8  # both outcomes well represented
    # Broadcasting: 3 frames × 5 boxes.
    grid = rectangles_overlap(ca[:3, None], ha[0], ya[:3, None], cb[None, :5], hb[:5], yb[None, :5])
    assert grid.shape == (3, 5)


# ------------------------------------------------------------------ first_collisions


def test_obstacle_hit_at_the_right_frame():
    town = make_town([dict(center=(20.0, 0.0), half_extent=(0.5, 0.5), z_range=(0.0, 6.0))])
    poses = drive([0.0, 0.0, 0.0], [28.0, 0.0, 0.0])[None]  # 1 m per frame along +x
    hit = first_collisions(town, poses, np.array([True]))[0]
    # The front bumper (x + 2.25) reaches the box face at x = 19.5 at frame 18 (x = 18).
    assert hit == Collision(frame=18, kind="obstacle", other=0)


def test_boxes_above_the_car_and_flat_boxes_are_ignored():
    crown = dict(center=(20.0, 0.0), half_extent=(3.0, 3.0), z_range=(2.5, 6.0))  # tree crown
    kerb = dict(center=(10.0, 0.0), half_extent=(0.2, 8.0), z_range=(0.0, 0.15))  # flat strip
    roof = dict(center=(30.0, 0.0), half_extent=(1.0, 1.0), z_range=(CAR_HEIGHT - 0.1, 4.0))
    town = make_town([crown, kerb, roof])
    assert obstacle_boxes(town.boxes).tolist() == [2]
    poses = drive([0.0, 0.0, 0.0], [28.0, 0.0, 0.0])[None]
    hit = first_collisions(town, poses)[0]
    assert hit is not None and hit.kind == "obstacle" and hit.other == 2


def test_passing_close_by_is_not_a_collision():
    gap = 0.05
    y = CAR_WIDTH / 2 + 0.5 + gap  # box edge 5 cm beside the car's side
    town = make_town([dict(center=(15.0, y), half_extent=(1.0, 0.5), z_range=(0.0, 1.0))])
    poses = drive([0.0, 0.0, 0.0], [28.0, 0.0, 0.0])[None]
    assert first_collisions(town, poses) == [None]
    assert first_collisions(town, poses, margin=0.1)[0].kind == "obstacle"


def test_rotated_box_corner():
    # A box turned 45° whose corner points at the lane: its AABB overlaps the car's path,
    # the box itself stays clear.
    half = 1.0
    corner_reach = half * np.sqrt(2)
    y = CAR_WIDTH / 2 + corner_reach + 0.1
    box = dict(center=(15.0, y), half_extent=(half, half), yaw=np.pi / 4, z_range=(0.0, 2.0))
    town = make_town([box])
    poses = drive([0.0, 0.0, 0.0], [28.0, 0.0, 0.0])[None]
    assert first_collisions(town, poses) == [None]
    box["center"] = (15.0, y - 0.2)
    assert first_collisions(make_town([box]), poses)[0].kind == "obstacle"


def test_car_car_head_on_and_passing():
    town = make_town()
    # Same lane, towards each other: 40 m apart, closing 2 m per frame.
    a = drive([0.0, -1.75, 0.0], [28.0, 0.0, 0.0])
    b = drive([40.0, -1.75, np.pi], [28.0, 0.0, 0.0])
    hits = first_collisions(town, np.stack([a, b]), np.array([True, True]))
    # Bumpers meet when the gap 40 - 2f ≤ CAR_LENGTH: f ≥ 17.75.
    assert hits == [Collision(18, "car", 1), Collision(18, "car", 0)]
    # Opposite lanes: they pass 3.5 m apart without touching.
    b_other_lane = drive([40.0, 1.75, np.pi], [28.0, 0.0, 0.0])
    assert first_collisions(town, np.stack([a, b_other_lane])) == [None, None]


def test_inactive_cars_are_obstacles_but_not_reported():
    town = make_town()
    parked = np.repeat(np.array([[12.0, -1.75, 0.0]]), 29, axis=0)
    mover = drive([0.0, -1.75, 0.0], [28.0, 0.0, 0.0])
    hits = first_collisions(town, np.stack([mover, parked]), np.array([True, False]))
    assert hits[1] is None
    # Front of the mover reaches the parked car's rear (12 - 2.25) when x + 2.25 ≥ 9.75.
    assert hits[0] == Collision(frame=8, kind="car", other=1)
    # Inactive agents are not checked themselves.
    assert first_collisions(town, np.stack([mover, parked]), np.array([False, False])) == [
        None,
        None,
    ]


def test_off_road_is_judged_by_the_car_centre():
    town = make_town()  # ROAD is |y| ≤ 6
    # Drifting sideways by 8 m over the chunk: the centre crosses y = 6 late in the chunk.
    poses = drive([0.0, 0.0, 0.0], [20.0, 8.0, 0.0])
    hit = first_collisions(town, poses[None])[0]
    first_off = int(np.argmax(poses[:, 1] > 6.0))
    assert hit == Collision(frame=first_off, kind="off_road", other=None)
    # Wheels over the kerb with the centre still on the road is allowed.
    edge = np.repeat(np.array([[0.0, 6.0 - CAR_WIDTH / 4, 0.0]]), 29, axis=0)
    assert car_footprints(edge[:1])[0, :, 1].max() > 6.0
    assert first_collisions(town, edge[None]) == [None]


def test_precedence_and_frame_zero():
    wall = dict(center=(0.0, 0.0), half_extent=(1.0, 1.0), z_range=(0.0, 3.0))
    town = make_town([wall])
    still = np.repeat(np.array([[0.0, 20.0, 0.0]]), 29, axis=0)  # off the road and in the wall?
    inside = np.repeat(np.array([[0.5, 0.0, 0.0]]), 29, axis=0)
    other = np.repeat(np.array([[3.0, 0.0, 0.0]]), 29, axis=0)
    hits = first_collisions(town, np.stack([inside, other, still]))
    assert hits[0] == Collision(0, "car", 1)  # car beats obstacle at the same frame
    assert hits[1] == Collision(0, "car", 0)
    assert hits[2] == Collision(0, "off_road", None)
    only_obstacles = first_collisions(town, np.stack([inside, other]), check_cars=False)
    assert only_obstacles[0] == Collision(0, "obstacle", 0)


def test_input_validation():
    town = make_town()
    with pytest.raises(ValueError, match="finite"):
        first_collisions(town, np.full((1, 3, 3), np.nan))
    with pytest.raises(ValueError, match="active"):
        first_collisions(town, np.zeros((2, 3, 3)), np.array([True]))
    with pytest.raises(ValueError, match="kind"):
        Collision(0, "tree")
    # (A, 3) is read as a single frame per agent.
    assert first_collisions(town, np.array([[0.0, 0.0, 0.0]])) == [None]


def test_speed_with_1500_boxes():
    rng = np.random.default_rng(0)
    n = 1500
    rows = [
        dict(
            center=tuple(rng.uniform(-100, 100, 2)),
            half_extent=tuple(rng.uniform(0.2, 6.0, 2)),
            yaw=float(rng.uniform(-np.pi, np.pi)),
            z_range=(float(rng.choice([0.0, 2.5])), 8.0),
        )
        for _ in range(n)
    ]
    town = make_town(rows)
    poses = np.stack(
        [drive([-20.0, -1.75, 0.0], [25.0, 0.0, 0.3]), drive([20.0, 1.75, np.pi], [25.0, 0.0, 0.0])]
    )
    active = np.array([True, True])
    first_collisions(town, poses, active)  # warm up
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        first_collisions(town, poses, active)
        times.append(time.perf_counter() - t0)
    assert np.median(times) < 0.01, f"median {np.median(times) * 1e3:.1f} ms"


def test_car_dimensions_match_the_footprint():
    fp = car_footprints(np.zeros((1, 3)))[0]
    assert np.allclose(fp.max(axis=0), [CAR_LENGTH / 2, CAR_WIDTH / 2])
