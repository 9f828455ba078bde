"""Tests of poses, the camera rig, chunk trajectories and raymaps."""

import numpy as np
import pytest

from shareverse_env.core.geometry import (
    CHUNK_FRAMES,
    VIEW_NAMES,
    CameraRig,
    camera_ray_directions,
    compose_se2,
    ego_chunk_trajectory,
    inverse_se2,
    latent_frame_count,
    pack_raymaps,
    plan_chunk,
    raymaps,
    relative_se2,
    se2_to_se3,
    world_to_ego,
)
from shareverse_env.core.tiling import untile_views


def test_se2_compose_inverse_round_trip():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 3)) * [10, 10, 2]
    b = rng.normal(size=(5, 3)) * [10, 10, 2]
    ab = compose_se2(a, b)
    np.testing.assert_allclose(compose_se2(inverse_se2(a), ab)[:, :2], b[:, :2], atol=1e-9)
    np.testing.assert_allclose(relative_se2(a, ab)[:, :2], b[:, :2], atol=1e-9)
    # SE(2) composition agrees with SE(3) matrix products.
    np.testing.assert_allclose(se2_to_se3(ab), se2_to_se3(a) @ se2_to_se3(b), atol=1e-9)


def test_world_to_ego():
    pose = np.array([10.0, 5.0, np.pi / 2])
    # A point 3 m north of a car heading north is 3 m ahead of it.
    np.testing.assert_allclose(world_to_ego(pose, np.array([10.0, 8.0])), [3.0, 0.0], atol=1e-12)
    # A point west of it is on its left (+y).
    np.testing.assert_allclose(world_to_ego(pose, np.array([8.0, 5.0])), [0.0, 2.0], atol=1e-12)


def test_rig_intrinsics_and_axes():
    rig = CameraRig()
    k = rig.intrinsics(64, 96)
    assert k[0, 0] == pytest.approx(48.0) and k[1, 1] == pytest.approx(48.0)
    assert (k[0, 2], k[1, 2]) == (48.0, 32.0)
    cams = rig.camera_to_world(np.array([0.0, 0.0, 0.0]))
    expected_forward = {
        "front": (1, 0, 0),
        "rear": (-1, 0, 0),
        "left": (0, 1, 0),
        "right": (0, -1, 0),
    }
    for i, name in enumerate(VIEW_NAMES):
        rot = cams[i, :3, :3]
        np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-12)
        assert np.linalg.det(rot) == pytest.approx(1.0)
        np.testing.assert_allclose(rot[:, 2], expected_forward[name], atol=1e-12)  # optical axis
        np.testing.assert_allclose(rot[:, 1], (0, 0, -1), atol=1e-12)  # image down = world down
        assert cams[i, 2, 3] == pytest.approx(rig.mount_height)


def test_rig_rejects_bad_config():
    with pytest.raises(ValueError, match="offsets"):
        CameraRig(offsets=((0.0, 0.0),))
    with pytest.raises(ValueError, match="hfov"):
        CameraRig(hfov_deg=180.0)


@pytest.mark.parametrize(
    "action",
    [(10.0, 0.0, 0.0), (12.0, 3.0, 0.4), (8.0, -2.0, -1.2), (0.0, 2.0, 0.0), (-3.0, 0.5, 0.3)],
)
def test_trajectory_ends_exactly_at_action(action):
    traj = ego_chunk_trajectory(np.array(action))
    assert traj.shape == (CHUNK_FRAMES, 3)
    np.testing.assert_array_equal(traj[0], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(traj[-1], action)
    # Smooth: no jumps between frames bigger than a few times the average step.
    steps = np.linalg.norm(np.diff(traj[:, :2], axis=0), axis=1)
    assert steps.max() <= 3 * max(steps.mean(), 1e-9) + 1e-9


def test_trajectory_straight_is_constant_speed_and_turn_heads_along_path():
    straight = ego_chunk_trajectory(np.array([14.0, 0.0, 0.0]))
    np.testing.assert_allclose(np.diff(straight[:, 0]), 14.0 / (CHUNK_FRAMES - 1), atol=1e-12)
    turn = ego_chunk_trajectory(np.array([10.0, 10.0, np.pi / 2]))
    tangent = np.diff(turn[:, :2], axis=0)
    heading = np.arctan2(tangent[:, 1], tangent[:, 0])
    # Path starts along the initial heading and ends along the final one.
    assert abs(heading[0]) < 0.15 and abs(heading[-1] - np.pi / 2) < 0.15


def test_plan_chunk_in_world_and_batched():
    start = np.array([[5.0, -2.0, np.pi / 2], [0.0, 0.0, 0.0]])
    action = np.array([[10.0, 0.0, 0.0], [4.0, 1.0, 0.2]])
    traj = plan_chunk(start, action)
    assert traj.shape == (2, CHUNK_FRAMES, 3)
    np.testing.assert_allclose(traj[0, -1], [5.0, 8.0, np.pi / 2], atol=1e-12)
    np.testing.assert_allclose(traj[1, -1], compose_se2(start[1], action[1]), atol=1e-12)


def test_ray_directions_unit_and_centred():
    rig = CameraRig()
    d = camera_ray_directions(rig, (64, 96), downsample=8)
    assert d.shape == (8, 12, 3)
    np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-12)
    # Cells are symmetric about the principal point: mirror cells have mirrored x, y.
    np.testing.assert_allclose(d[:, ::-1, 0], -d[:, :, 0], atol=1e-12)
    np.testing.assert_allclose(d[::-1, :, 1], -d[:, :, 1], atol=1e-12)
    # The cell (0, 0) ray passes through pixel (4, 4): x = (4 - 48) / 48.
    assert d[0, 0, 0] / d[0, 0, 2] == pytest.approx((4 - 48) / 48)


def test_raymaps_rotated_per_view_and_mean_normalised():
    rig = CameraRig()
    poses = np.zeros((2, 5, 3))
    poses[0, :, 0] = np.linspace(0, 8, 5)
    poses[1, :, 1] = 30.0
    poses[1, :, 2] = np.pi / 2
    rays, center = raymaps(poses, rig, (64, 96))
    assert rays.shape == (2, 5, 16, 24, 6) and rays.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rays[..., :3], axis=-1), 1.0, atol=1e-5)
    # One normalisation for all agents: camera centres average to zero over the chunk.
    centres = rig.camera_positions(poses).reshape(-1, 3)
    np.testing.assert_allclose(center, centres.mean(axis=0), atol=1e-12)
    views = untile_views(rays)  # (2, 5, 4, 8, 12, 6)
    origins = views[..., 0, 0, 3:]  # (2, 5, 4, 3): per-view constant origins
    np.testing.assert_allclose(origins.reshape(-1, 3).mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(
        views[..., 3:],
        np.broadcast_to(origins[..., None, None, :], views[..., 3:].shape),
        atol=1e-6,
    )
    # Central rays point along each view's world optical axis (agent 0 heads +x, agent 1 +y).
    axis = {0: [(1, 0), (-1, 0), (0, 1), (0, -1)], 1: [(0, 1), (0, -1), (-1, 0), (1, 0)]}
    for agent, dirs in axis.items():
        for v, (dx, dy) in enumerate(dirs):
            mid = views[agent, 0, v, 3:5, 5:7, :3].mean(axis=(0, 1))  # the four central cells
            mid = mid / np.linalg.norm(mid)
            np.testing.assert_allclose(mid, (dx, dy, 0.0), atol=1e-5)
    # A given centre is used as is (memory frames share the chunk's normalisation).
    rays2, center2 = raymaps(poses[:, :1], rig, (64, 96), center=center)
    np.testing.assert_array_equal(center2, center)
    np.testing.assert_allclose(rays2, rays[:, :1], atol=1e-6)


def test_raymap_cells_are_the_camera_rays_rotated_into_the_world():
    rig = CameraRig()
    poses = np.random.default_rng(3).normal(size=(2, 3, 3)) * [5.0, 5.0, 2.0]
    rays, _ = raymaps(poses, rig, (64, 96))
    views = untile_views(rays)  # (2, 3, 4, 8, 12, 6)
    rot = rig.camera_to_world(poses)[..., :3, :3]  # (2, 3, 4, 3, 3)
    cells = camera_ray_directions(rig, (64, 96), 8)  # (8, 12, 3)
    for a, f, v, y, x in [(0, 0, 0, 0, 0), (1, 2, 3, 7, 11), (0, 1, 2, 4, 5), (1, 0, 1, 2, 9)]:
        np.testing.assert_allclose(views[a, f, v, y, x, :3], rot[a, f, v] @ cells[y, x], atol=1e-6)


def test_raymaps_reject_non_finite():
    with pytest.raises(ValueError, match="finite"):
        raymaps(np.full((1, 1, 3), np.nan), CameraRig(), (64, 96))


def test_pack_raymaps_order():
    frames = 29
    rays = np.arange(frames, dtype=np.float32)[None, :, None, None, None] * np.ones((1, 1, 2, 3, 6))
    rays[..., 3:] += 100  # tell r_d and r_o channels apart
    packed = pack_raymaps(rays)
    assert packed.shape == (1, latent_frame_count(frames), 2, 3, 24) == (1, 8, 2, 3, 24)
    # Latent 0 = frame 0 repeated four times; latent k = frames 4k-3 .. 4k.
    np.testing.assert_array_equal(packed[0, 0, 0, 0, ::6], [0, 0, 0, 0])
    np.testing.assert_array_equal(packed[0, 1, 0, 0, ::6], [1, 2, 3, 4])
    np.testing.assert_array_equal(packed[0, 7, 0, 0, ::6], [25, 26, 27, 28])
    np.testing.assert_array_equal(packed[0, 7, 0, 0, 3:6], [125, 125, 125])
    assert pack_raymaps(rays[:, :1]).shape == (1, 1, 2, 3, 24)
    with pytest.raises(ValueError, match="1 \\+ 4"):
        pack_raymaps(rays[:, :3])
