"""The on-disk dataset format: round trips, atomic writes, and clear errors on bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shareverse_env.data.format import (
    COMPLETE_MARKER,
    DATASET_JSON,
    SequenceData,
    dataset_info,
    frames_file,
    read_dataset_info,
    remove_stale_tmp,
    write_dataset_info,
    write_sequence,
)
from shareverse_env.data.reader import SequenceDataset, read_sequence, verify_sequence

A, F, H, W = 2, 5, 16, 32


def _data(seed: int = 0) -> SequenceData:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 120.0, (A, F, 2 * H, 2 * W)).astype(np.float32)
    depth[:, :, : H // 2] = np.inf  # sky
    meta = {"scenario": "head_on", "weather": "fog", "seed": seed, "agents": ["agent_0", "agent_1"]}
    meta.update(num_agents=A, num_frames=F, view_hw=[H, W])
    return SequenceData(
        frames=rng.integers(0, 256, (A, F, 2 * H, 2 * W, 3), dtype=np.uint8),
        depth=depth,
        poses=rng.normal(size=(A, F, 3)),
        meta=meta,
    )


@pytest.fixture
def root(tmp_path):
    info = dataset_info(
        num_agents=A,
        num_frames=F,
        view_hw=(H, W),
        splits={"train": {"sequences": 2}},
        generator={"test": True},
    )
    write_dataset_info(tmp_path, info)
    return tmp_path


def test_round_trip_equal_arrays_and_meta(root):
    data = _data()
    folder = write_sequence(root, "train", 3, data)
    assert folder.name == "000003"
    assert (folder / COMPLETE_MARKER).is_file()
    back = read_sequence(root, "train", "000003", depth=True)
    np.testing.assert_array_equal(back.frames, data.frames)
    np.testing.assert_array_equal(back.poses, data.poses)
    assert back.poses.dtype == np.float64
    np.testing.assert_array_equal(back.depth, data.depth.astype(np.float16).astype(np.float32))
    assert np.isinf(back.depth[:, :, 0]).all()
    assert back.meta == json.loads(json.dumps(data.meta))
    assert read_sequence(root, "train", 3).depth is None  # by index; depth skipped


def test_dataset_json_contents(root):
    info = read_dataset_info(root)
    assert info["format"] == "shareverse-dataset" and info["version"] == 1
    assert np.asarray(info["intrinsics"]).shape == (3, 3)
    assert np.asarray(info["camera_to_ego"]).shape == (4, 4, 4)
    assert info["view_hw"] == [H, W] and info["fps"] == 10


def test_dataset_json_wrong_version_refused(root):
    info = read_dataset_info(root)
    info["version"] = 99
    (root / DATASET_JSON).write_text(json.dumps(info))
    with pytest.raises(ValueError, match="version"):
        read_dataset_info(root)


def test_complete_marker_semantics(root):
    write_sequence(root, "train", 0, _data(0))
    write_sequence(root, "train", 1, _data(1))
    (root / "train" / "000000" / COMPLETE_MARKER).unlink()
    (root / "train" / ".000002.tmp").mkdir()  # an interrupted write
    ds = SequenceDataset(root, "train")
    assert ds.ids == ["000001"] and len(ds) == 1
    np.testing.assert_array_equal(ds[0].frames, _data(1).frames)
    with pytest.raises(FileNotFoundError, match=COMPLETE_MARKER):
        read_sequence(root, "train", "000000")
    assert [p.name for p in remove_stale_tmp(root)] == [".000002.tmp"]


def test_rewrite_replaces_and_leaves_no_tmp(root):
    write_sequence(root, "train", 0, _data(0))
    write_sequence(root, "train", 0, _data(1))
    np.testing.assert_array_equal(read_sequence(root, "train", 0).frames, _data(1).frames)
    assert sorted(p.name for p in (root / "train").iterdir()) == ["000000"]


def test_frames_only_and_windows(root):
    data = _data()
    write_sequence(root, "train", 0, data)
    ds = SequenceDataset(root, "train", frames_only=True)
    assert ds[0].depth is None
    window = ds.load_frames(0, agent=1, start=1, stop=4)
    assert type(window) is np.ndarray
    np.testing.assert_array_equal(window, data.frames[1, 1:4])
    np.testing.assert_array_equal(ds.load_poses(0), data.poses)
    with pytest.raises(IndexError):
        ds.load_frames(0, agent=2)
    with pytest.raises(IndexError):
        ds[1]


def test_truncated_frames_file_names_the_file(root):
    folder = write_sequence(root, "train", 0, _data())
    path = folder / frames_file(1)
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ValueError, match=r"frames_agent1\.npy.*truncated.*uint8"):
        read_sequence(root, "train", 0)
    with pytest.raises(ValueError, match=r"frames_agent1\.npy"):
        SequenceDataset(root, "train").load_frames(0, agent=1, start=0, stop=2)
    assert "frames_agent1.npy" in verify_sequence(root, "train", 0)


def test_missing_file_names_the_file(root):
    folder = write_sequence(root, "train", 0, _data())
    (folder / "poses.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"poses\.npy"):
        read_sequence(root, "train", 0)


def test_truncated_depth_names_the_file(root):
    folder = write_sequence(root, "train", 0, _data())
    path = folder / "depth.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    read_sequence(root, "train", 0)  # frames still fine
    with pytest.raises(ValueError, match=r"depth\.npz"):
        read_sequence(root, "train", 0, depth=True)


def test_wrong_shape_against_meta(root):
    folder = write_sequence(root, "train", 0, _data())
    np.save(folder / frames_file(0), np.zeros((F - 1, 2 * H, 2 * W, 3), np.uint8))
    with pytest.raises(ValueError, match=r"frames_agent0\.npy: expected uint8 \(5, 32, 64, 3\)"):
        read_sequence(root, "train", 0)


def test_meta_disagreeing_with_dataset_json(root):
    folder = write_sequence(root, "train", 0, _data())
    meta = json.loads((folder / "meta.json").read_text())
    meta["num_frames"] = F + 1
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="num_frames"):
        read_sequence(root, "train", 0)


def test_pickled_npy_refused(root):
    folder = write_sequence(root, "train", 0, _data())
    objects = np.empty((A, F, 3), dtype=object)
    objects[:] = {"evil": 1}
    np.save(folder / "poses.npy", objects, allow_pickle=True)
    with pytest.raises(ValueError, match=r"poses\.npy.*Python objects.*refused"):
        read_sequence(root, "train", 0)


def test_sequence_data_validation():
    data = _data()
    data.meta["num_frames"] = 99
    with pytest.raises(ValueError, match="num_frames"):
        data.validate()
    bad = _data()
    bad.poses = bad.poses[:, :-1]
    with pytest.raises(ValueError, match="poses"):
        write_sequence("/nonexistent-never-created", "train", 0, bad)
