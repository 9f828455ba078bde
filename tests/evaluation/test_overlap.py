"""Co-visibility masks on cases with a known answer, from synthetic depth and the real renderer."""

from __future__ import annotations

import numpy as np
import pytest
from _scenes import VIEW_HW, flat_town

from shareverse_env.core.geometry import CameraRig
from shareverse_env.core.tiling import untile_views
from shareverse_env.evaluation.overlap import covisibility_masks, ground_plane_depth
from shareverse_env.world.renderer import Renderer

RIG = CameraRig()


def _wall(x: float, thickness: float = 6.0) -> dict:
    """A wall across the whole world at ``x``: nothing on one side is visible from the other."""
    return dict(
        center=(x, 0.0),
        half_extent=(thickness / 2, 2000.0),
        z_range=(0.0, 60.0),
        colour=(0.6, 0.6, 0.6),
    )


def _render(boxes: list[dict], poses: np.ndarray, with_cars: bool = True):
    renderer = Renderer(flat_town(boxes), "overcast", view_hw=VIEW_HW, max_distance=3000.0)
    if with_cars:
        return renderer.render_agents(poses[:, None])
    return renderer.render(poses)


FACING = np.array([[0.0, -1.75, 0.0], [40.0, 1.75, np.pi]])
"""Two cars on one road, 40 m apart, driving towards each other."""


def test_same_pose_and_depth_sees_every_non_sky_pixel() -> None:
    depth = ground_plane_depth(RIG, VIEW_HW)
    mask = covisibility_masks(np.broadcast_to(depth, (2, 3, *depth.shape)), np.zeros((2, 3, 3)))
    assert np.array_equal(mask, np.broadcast_to(np.isfinite(depth), mask.shape))


def test_same_pose_with_rendered_depth() -> None:
    pose = np.array([[5.0, -1.75, 0.3]])
    rendered = _render([_wall(30.0)], pose, with_cars=False).depth  # (1, 2H, 2W)
    depth = np.broadcast_to(rendered[None], (2, 1, *rendered.shape[1:]))
    poses = np.broadcast_to(pose[None], (2, 1, 3))
    mask = covisibility_masks(depth, poses)
    assert np.isinf(depth).any() and np.isfinite(depth).any()
    assert np.array_equal(mask, np.isfinite(depth))


def test_far_apart_agents_share_nothing() -> None:
    depth = ground_plane_depth(RIG, VIEW_HW, max_range=40.0)  # each sees 40 m of ground
    poses = np.array([[[0.0, 0.0, 0.0]], [[300.0, 0.0, 0.0]]])  # one drives away from the other
    mask = covisibility_masks(np.broadcast_to(depth, (2, 1, *depth.shape)), poses)
    assert not mask.any()


def test_a_single_agent_has_no_overlap() -> None:
    depth = ground_plane_depth(RIG, VIEW_HW)[None, None]
    assert not covisibility_masks(depth, np.zeros((1, 1, 3))).any()


def test_open_road_overlaps_and_a_wall_between_hides_everything() -> None:
    open_road = _render([], FACING)
    open_mask = covisibility_masks(open_road.depth, FACING[:, None])
    walled = _render([_wall(20.0)], FACING)
    walled_mask = covisibility_masks(walled.depth, FACING[:, None])
    for a in range(2):
        ground = np.isfinite(open_road.depth[a, 0])
        assert open_mask[a, 0][ground].mean() > 0.5  # 360° views over one flat road
        assert not (open_mask & np.isinf(open_road.depth)).any()  # sky never counts
        # The wall hides each side from the other: its own face is seen by one agent only.
        # Only where the wall recedes to the horizon (> 100 m away, one pixel spanning tens of
        # metres of depth) may a few pixels pass the depth test.
        assert walled_mask[a, 0].mean() < 0.01
        assert (walled.depth[a, 0][walled_mask[a, 0]] > 100.0).all()
    front = untile_views(open_mask[0, 0][..., None])[0, ..., 0]
    assert front.mean() > 0.3  # the road ahead is what agent 1 looks back at


def test_the_other_car_is_not_covisible_with_itself() -> None:
    """Agent 0 sees agent 1's car; agent 1's cameras do not see their own car."""
    poses = np.array([[0.0, -1.75, 0.0], [8.0, -1.75, 0.0]])  # agent 1 just ahead
    with_cars = _render([], poses)
    without = _render([], poses[:1], with_cars=False)
    seen = with_cars.depth[0, 0]
    car = np.isfinite(seen) & (seen < without.depth[0] - 0.01)
    assert car.sum() > 20  # agent 1's car covers a visible patch of agent 0's front view
    mask = covisibility_masks(with_cars.depth, poses[:, None])
    assert mask[0, 0][car].mean() < 0.05
    assert mask[0, 0][~car & np.isfinite(with_cars.depth[0, 0])].mean() > 0.5


@pytest.mark.parametrize(
    ("depth", "poses", "message"),
    [
        (np.ones((2, 64, 96)), np.zeros((2, 3)), "agents, frames"),
        (np.ones((2, 1, 64, 96)), np.zeros((2, 2, 3)), "poses must have shape"),
        (np.full((2, 1, 64, 96), np.nan), np.zeros((2, 1, 3)), "NaN"),
        (np.ones((2, 1, 63, 96)), np.zeros((2, 1, 3)), "even"),
    ],
)
def test_bad_input_is_named(depth, poses, message) -> None:
    with pytest.raises(ValueError, match=message):
        covisibility_masks(depth, poses)
