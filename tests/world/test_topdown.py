"""Tests of the top-down town map: shape, orientation, static content, agents and routes."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from shareverse_env.world import topdown as topdown_module
from shareverse_env.world.generator import generate_town
from shareverse_env.world.scene import BoxSet, GroundMap, Material, Surface
from shareverse_env.world.topdown import map_frame, topdown_image, world_to_pixel
from shareverse_env.world.town import RoadNetwork, Town
from shareverse_env.world.vehicles import agent_colour


@pytest.fixture(scope="module")
def town() -> Town:
    return generate_town(0)


@pytest.fixture(scope="module")
def flat_town() -> Town:
    """A 200 m × 100 m raster (wider than tall): road on the south half, one red-roofed box."""
    res = 0.5
    rgb = np.zeros((200, 400, 3), np.uint8)
    rgb[:100] = (60, 60, 60)  # south half: asphalt
    rgb[100:] = (40, 160, 40)  # north half: grass
    surface = np.where(np.arange(200)[:, None] < 100, Surface.ROAD, Surface.GRASS)
    surface = np.broadcast_to(surface, (200, 400)).astype(np.uint8)
    ground = GroundMap(origin=(0.0, 0.0), resolution=res, rgb=rgb, surface=surface)
    boxes = BoxSet.from_rows(
        [
            dict(
                center=(150.0, 80.0),
                half_extent=(15.0, 10.0),
                z_range=(0.0, 10.0),
                colour=(1.0, 0.0, 0.0),
                material=Material.PLAIN,
            )
        ]
    )
    roads = RoadNetwork(nodes=np.array([[0.0, 25.0], [200.0, 25.0]]), edges=np.array([[0, 1]]))
    return Town(seed=0, bounds=(0.0, 0.0, 200.0, 100.0), roads=roads, ground=ground, boxes=boxes)


def _pixel(img: np.ndarray, town: Town, xy) -> np.ndarray:
    col, row = np.floor(world_to_pixel(town, np.asarray(xy, float), img.shape[0])).astype(int)
    return img[row, col].astype(int)


def test_doctests():
    result = doctest.testmod(topdown_module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("size", [64, 128, 256])
def test_shape_and_dtype(town, size):
    img = topdown_image(town, size)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8


def test_square_frame_covers_the_raster_and_pads(flat_town):
    x_left, y_top, mpp = map_frame(flat_town, 100)
    assert mpp == pytest.approx(2.0)  # 200 m wide raster over 100 pixels
    assert (x_left, y_top) == pytest.approx((0.0, 150.0))  # 100 m tall raster, centred
    img = topdown_image(flat_town, 100)
    assert img.shape == (100, 100, 3)
    # Above and below the raster the map is padded with grass green.
    for row in (5, 95):
        r, g, b = img[row, 50].astype(int)
        assert g > r + 20 and g > b + 20


def test_orientation_and_world_to_pixel(flat_town):
    img = topdown_image(flat_town, 100)
    assert world_to_pixel(flat_town, np.array([0.0, 150.0]), 100).tolist() == [0.0, 0.0]
    assert world_to_pixel(flat_town, np.array([[200.0, -50.0]]), 100).tolist() == [[100.0, 100.0]]
    # North (+y, grass) is up, the road (south) below, the red box where it stands.
    assert _pixel(img, flat_town, (20.0, 90.0))[1] > 120
    assert np.all(_pixel(img, flat_town, (20.0, 10.0)) == 60)
    assert _pixel(img, flat_town, (150.0, 80.0)).tolist() == [255, 0, 0]
    assert _pixel(img, flat_town, (120.0, 80.0)).tolist() != [255, 0, 0]


def test_generated_town_content(town):
    img = topdown_image(town, 256)
    # Junction centres are dark asphalt.
    for node in town.roads.nodes:
        assert _pixel(img, town, node).max() < 110
    # The roofs of large buildings differ from the ground around the town.
    boxes = town.boxes
    big = np.flatnonzero((boxes.material == Material.FACADE) & (boxes.half_extent.min(1) > 6))
    grass = _pixel(img, town, np.array(town.ground.origin) + 5.0)
    assert grass[1] > grass[0] and grass[1] > grass[2]
    differs = [np.abs(_pixel(img, town, boxes.center[k]) - grass).sum() > 30 for k in big]
    assert np.mean(differs) > 0.9


def test_agents_and_routes(town):
    plain = topdown_image(town, 128)
    poses = np.array([[40.0, -1.75, 0.0], [town.roads.nodes[6, 0] - 1.75, 30.0, np.pi / 2]])
    route = np.array([[0.0, -1.75], [80.0, -1.75]])
    img = topdown_image(town, 128, poses=poses, routes=[route])
    for k, pose in enumerate(poses):
        want = np.round(np.array(agent_colour(k)) * 255)
        assert np.abs(_pixel(img, town, pose[:2]) - want).max() <= 1
    # The route is drawn (lighter than the agent's colour) where no agent stands on it.
    light = np.round(0.55 * np.array(agent_colour(0)) * 255 + 0.45 * 255)
    assert np.abs(_pixel(img, town, (70.0, -1.75)) - light).max() <= 1
    # Drawing never touches the cached background.
    np.testing.assert_array_equal(topdown_image(town, 128), plain)


def test_heading_points_the_marker(flat_town):
    # The marker is a triangle whose tip (narrow end) points along the heading.
    east = np.array([[100.0, 25.0, 0.0]])
    north = np.array([[100.0, 25.0, np.pi / 2]])
    for pose, axis, tip_at_max in ((east, 1, True), (north, 0, False)):
        img = topdown_image(flat_town, 200, poses=pose, colours=[(0, 0, 255)])
        coords = np.nonzero(np.all(img == (0, 0, 255), axis=-1))[axis]
        tip = coords.max() if tip_at_max else coords.min()  # rows grow southwards
        back = coords.min() if tip_at_max else coords.max()
        assert np.sum(coords == tip) <= 2 and np.sum(coords == back) >= 4


def test_colours_and_validation(town):
    poses = np.zeros((2, 3))
    ints = topdown_image(town, 64, poses=poses, colours=np.array([[255, 0, 0], [0, 255, 0]]))
    floats = topdown_image(town, 64, poses=poses, colours=[(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)])
    np.testing.assert_array_equal(ints, floats)
    with pytest.raises(ValueError):
        topdown_image(town, 64, poses=poses, colours=[(1.0, 0.0, 0.0)])
    with pytest.raises(ValueError):
        topdown_image(town, 64, poses=poses, colours=np.zeros((2, 4)))
    with pytest.raises(ValueError):
        topdown_image(town, 64, poses=np.array([[np.nan, 0.0, 0.0]]))
    with pytest.raises(ValueError):
        topdown_image(town, 4)
