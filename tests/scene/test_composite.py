"""The compositor: cache renders composited with generated frames, car boxes, feathering,
archiving of new content, depth alignment."""

import numpy as np
import pytest

from shareverse_env.backends import WorldBackend
from shareverse_env.core.geometry import CameraRig, plan_chunk
from shareverse_env.core.tiling import untile_views
from shareverse_env.scene.composite import (
    SceneCompositor,
    car_masks,
    feather,
)
from shareverse_env.world.generator import generate_town

HW = (32, 48)
RIG = CameraRig()


@pytest.fixture(scope="module")
def town():
    return generate_town(0)


def first_frames(town, poses):
    return WorldBackend(HW, RIG).first_frames(town, "clear_noon", poses)


def test_car_masks_cover_the_projected_car_only_in_the_views_that_see_it():
    ahead = np.array([[[10.0, 0.0, 0.0]]])
    mask = untile_views(car_masks(RIG, HW, np.zeros((1, 3)), ahead)[0][..., None])[..., 0]
    front, rear, left, right = mask
    assert front.any() and not rear.any() and not left.any() and not right.any()
    _, cols = np.nonzero(front)
    # Centred; the box's near face (2.2 m wide with margins, 7 m from the camera) spans
    # f · 2.2 / 7 ≈ 7.5 of the 48 columns (f = 24 px for a 90° view).
    assert abs(cols.mean() - HW[1] / 2) < 1
    assert 6 <= cols.max() - cols.min() + 1 <= 10
    behind = np.array([[[-10.0, 0.0, 0.0]]])
    assert untile_views(car_masks(RIG, HW, np.zeros((1, 3)), behind)[0][..., None])[1].any()
    none = car_masks(RIG, HW, np.zeros((2, 3)), np.zeros((2, 0, 3)))
    assert none.shape == (2, 64, 96) and not none.any()


def test_feather_is_one_inside_zero_outside_and_stays_within_each_view():
    valid = np.zeros((64, 96), bool)
    valid[:32, :48] = True  # the whole front view
    w = feather(valid)
    assert w.dtype == np.float32
    assert np.all(w[:32, :48] == 1.0)  # the view border is not an edge of the mask
    assert np.all(w[32:] == 0) and np.all(w[:, 48:] == 0)
    hole = valid.copy()
    hole[16, 24] = False
    w = feather(hole)
    assert w[16, 24] == 0 and 0 < w[15, 24] < 1 and w[10, 10] == 1
    assert np.array_equal(feather(hole, radius=0), hole.astype(np.float32))


def test_first_frame_re_rendered_at_its_own_pose_is_composited_back_exactly(town):
    start = np.array([[0.0, 0.0, 0.0]])
    first = first_frames(town, start)
    scene = SceneCompositor(RIG, HW, feather_radius=0)
    scene.reset(first.rgb, first.depth, start)
    poses = np.repeat(start[:, None], 2, axis=1)  # (1, 2, 3): two frames at the start pose
    renders = scene.render(poses, [0])
    assert renders[0].valid.mean() > 0.99
    generated = np.zeros((1, 2, 64, 96, 3), np.uint8)
    out = scene.composite(generated, renders, poses, [0])
    valid = renders[0].valid[0]
    assert np.array_equal(out[0, 0][valid], first.rgb[0][valid])
    assert np.all(out[0, 0][~valid] == 0)


def test_other_cars_boxes_show_the_generated_frame(town):
    start = np.array([[0.0, 0.0, 0.0], [40.0, 0.0, np.pi]])
    first = first_frames(town, start)
    scene = SceneCompositor(RIG, HW)
    scene.reset(first.rgb, first.depth, start)
    # The second car drives up to 10 m in front of the first.
    poses = np.stack(
        [np.repeat(start[:1], 3, 0), np.array([[30, 0, np.pi], [20, 0, np.pi], [10, 0, np.pi]])]
    )
    renders = scene.render(poses, [0, 1])
    generated = np.full((2, 3, 64, 96, 3), 7, np.uint8)
    out = scene.composite(generated, renders, poses, [0, 1])
    box = scene.car_masks(poses, 0)[2]
    assert box.any()
    assert np.all(out[0, 2][box] == 7)
    weight = scene.weights(renders[0], poses, 0)
    assert np.all(weight[2][box] == 0)


def test_a_forward_chunk_is_mostly_covered_and_closer_to_the_truth_than_repeating(town):
    start = np.array([[0.0, 0.0, 0.0]])
    first = first_frames(town, start)
    scene = SceneCompositor(RIG, HW)
    scene.reset(first.rgb, first.depth, start)
    plan = plan_chunk(start, np.array([[6.0, 0.0, 0.0]]))[:, 1:]
    world = WorldBackend(HW, RIG)
    world.reset(town, "clear_noon", start)
    truth = world.generate(plan_chunk(start, np.array([[6.0, 0.0, 0.0]])), np.ones(1, bool))
    renders = scene.render(plan, [0])
    filler = np.repeat(first.rgb[:, None], plan.shape[1], axis=1)
    out = scene.composite(filler, renders, plan, [0])
    assert renders[0].valid[-1].mean() > 0.7
    err_cache = np.abs(out[0, -1].astype(float) - truth[0, -1]).mean()
    err_repeat = np.abs(filler[0, -1].astype(float) - truth[0, -1]).mean()
    assert err_cache < 0.7 * err_repeat


def test_user_images_without_depth_and_no_estimator_leave_the_cache_empty():
    scene = SceneCompositor(RIG, HW)
    frames = np.full((1, 64, 96, 3), 50, np.uint8)
    scene.reset(frames, None, np.zeros((1, 3)))
    assert len(scene.cache) == 0
    renders = scene.render(np.zeros((1, 2, 3)), [0])
    assert not renders[0].valid.any()
    generated = np.full((1, 2, 64, 96, 3), 9, np.uint8)
    assert np.array_equal(scene.composite(generated, renders, np.zeros((1, 2, 3)), [0]), generated)
    assert scene.archive(generated, renders, np.zeros((1, 2, 3)), np.array([7, 14]), [0]) == 0


def test_archive_adds_only_uncovered_pixels_of_keyframes_with_estimated_depth(town):
    start = np.array([[0.0, 0.0, 0.0]])
    first = first_frames(town, start)
    calls = []

    def estimator(frames):
        calls.append(frames.shape)
        return np.full(frames.shape[:3], 12.0, np.float32)

    scene = SceneCompositor(RIG, HW, depth_estimator=estimator)
    scene.reset(first.rgb, first.depth, start)
    assert len(scene.cache) == 1 and not calls  # exact depth: no estimate
    plan = plan_chunk(start, np.array([[0.0, 0.0, 1.2]]))[:, 1:]  # turning: new content
    renders = scene.render(plan, [0])
    times = np.arange(1, 29)
    added = scene.archive(renders[0].rgb[None], renders, plan, times, [0])
    assert added == 4 and calls == [(4, 64, 96, 3)]  # keyframes 7, 14, 21, 28
    newest = scene.cache.buffers[-1]
    assert newest.time == 28 and newest.agent == 0
    assert np.array_equal(newest.mask, ~renders[0].valid[27])


def test_bad_settings_are_rejected():
    for kwargs in ({"buffers_per_agent": 0}, {"keyframe_stride": 0}, {"feather_radius": -1}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            SceneCompositor(RIG, HW, **kwargs)
