"""RecordVideo: every frame of every chunk, exact size, playable files on errors and close()."""

import imageio.v2 as imageio
import numpy as np
import pytest
from shareverse_env.wrappers import RecordVideo, capped_cubic_schedule

import shareverse_env
from shareverse_env.core.geometry import NEW_FRAMES_PER_CHUNK

DRIVE = np.array([8.0, 0.0, 0.0], dtype=np.float32)


def read_video(path):
    reader = imageio.get_reader(path, format="FFMPEG")
    frames = [f for f in reader]
    fps = reader.get_meta_data()["fps"]
    reader.close()
    return np.stack(frames), fps


def make(tmp_path, **kwargs):
    env = shareverse_env.parallel_env(
        backend="world", max_cycles=2, terminate_on_collision=False, **kwargs
    )
    return RecordVideo(env, tmp_path, episode_trigger=lambda _: True, name_prefix="test")


def test_writes_every_frame_at_exact_size(tmp_path):
    env = make(tmp_path)
    env.reset(seed=0)
    while env.agents:
        env.step({a: DRIVE for a in env.agents})
    # The episode ended: the file is final without close().
    path = tmp_path / "test-episode-0.mp4"
    assert path.exists() and env.recorded == [path]
    frames, fps = read_video(path)
    assert frames.shape == (1 + 2 * NEW_FRAMES_PER_CHUNK, 128, 2 * 192 + 128, 3)
    assert fps == 10
    # Content matches what the env rendered (lossy codec: close, not equal).
    last = env.unwrapped.render_chunk()[-1].astype(float)
    assert np.abs(frames[-1].astype(float) - last).mean() < 6.0
    env.close()
    assert not list(tmp_path.glob(".*partial*"))


def test_one_frame_per_chunk_plays_in_real_time(tmp_path):
    env = make(tmp_path, chunk_frames="last")
    assert env.fps == pytest.approx(10 / NEW_FRAMES_PER_CHUNK)
    env.reset(seed=0)
    while env.agents:
        env.step({a: DRIVE for a in env.agents})
    frames, fps = read_video(tmp_path / "test-episode-0.mp4")
    assert len(frames) == 1 + 2  # the first frame, then one per chunk
    assert fps == pytest.approx(10 / NEW_FRAMES_PER_CHUNK, rel=0.02)
    assert RecordVideo(env.env, tmp_path, fps=5).fps == 5.0  # an explicit fps wins
    with pytest.raises(ValueError, match="fps must be > 0"):
        RecordVideo(env.env, tmp_path, fps=-1)


def test_close_finishes_recording(tmp_path):
    env = make(tmp_path, minimap=False)
    env.reset(seed=1)
    env.step({a: DRIVE for a in env.agents})
    assert env.recording
    env.close()
    frames, _ = read_video(tmp_path / "test-episode-0.mp4")
    assert frames.shape == (1 + NEW_FRAMES_PER_CHUNK, 128, 384, 3)


def test_error_in_step_keeps_recording_playable(tmp_path):
    env = make(tmp_path)
    env.reset(seed=2)
    env.step({a: DRIVE for a in env.agents})
    with pytest.raises(ValueError, match="non-finite"):
        env.step({a: np.array([np.nan, 0, 0]) for a in env.agents})
    assert not env.recording
    frames, _ = read_video(tmp_path / "test-episode-0.mp4")
    assert len(frames) == 1 + NEW_FRAMES_PER_CHUNK


def test_episode_trigger_and_names(tmp_path):
    env = shareverse_env.parallel_env(backend="world", max_cycles=1, num_agents=1)
    env = RecordVideo(
        env, tmp_path / "videos", episode_trigger=lambda k: k % 2 == 1, name_prefix="ep"
    )
    for seed in range(3):
        env.reset(seed=seed)
        env.step({a: DRIVE for a in env.agents})
    env.close()
    assert [p.name for p in env.recorded] == ["ep-episode-1.mp4"]
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["ep-episode-1.mp4"]


def test_default_schedule():
    assert [k for k in range(30) if capped_cubic_schedule(k)] == [0, 1, 8, 27]
    assert capped_cubic_schedule(2000) and not capped_cubic_schedule(2001)


def test_rejects_env_without_chunks(tmp_path):
    from pettingzoo.test.example_envs.generated_agents_parallel_v0 import parallel_env

    with pytest.raises(TypeError, match="render_chunk"):
        RecordVideo(parallel_env(), tmp_path)
