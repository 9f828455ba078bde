"""Record episodes of a parallel ShareVerse env to H.264 MP4 files, every frame of every chunk.

One env step advances a 28-frame chunk, so recording one frame per step (as Gymnasium's
``RecordVideo`` does) would play 28× too fast and drop most of what happened. This wrapper asks
the env for the whole chunk (``env.unwrapped.render_chunk()``: all agents' tiled views side by
side, plus the minimap) and writes it at the env's 10 fps through imageio-ffmpeg. An env made
with ``chunk_frames="last"`` renders one frame per chunk: those are written at one frame per
chunk duration (10/28 fps), so the video still plays in real time, as a time-lapse of stills.

Files are written to a temporary name and renamed when the episode ends, when the env is reset
or closed, or when a step raises: a finished file is always a playable MP4, and a half-written
one never has the final name. Frames are never resized; a frame size H.264 cannot hold (odd
height or width) is an error.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
from pettingzoo import ParallelEnv
from pettingzoo.utils.wrappers import BaseParallelWrapper

from shareverse_env.core.geometry import NEW_FRAMES_PER_CHUNK


def capped_cubic_schedule(episode_id: int) -> bool:
    """Record episodes 0, 1, 8, 27, …, 729, then every 1000th (Gymnasium's default trigger)."""
    if episode_id < 1000:
        return round(episode_id ** (1.0 / 3)) ** 3 == episode_id
    return episode_id % 1000 == 0


class RecordVideo(BaseParallelWrapper):
    """Write chosen episodes of a parallel env to ``video_folder/{name_prefix}-episode-{k}.mp4``.

    Args:
        env: a ShareVerse parallel env (or a wrapper around one).
        video_folder: where MP4 files go; created if missing.
        episode_trigger: ``episode_id -> bool`` choosing episodes to record (ids start at 0);
            default :func:`capped_cubic_schedule`.
        name_prefix: file name prefix.
        fps: frames per second of the video; default the env's ``metadata["render_fps"]`` (10),
            or that divided by the 28 frames of a chunk when the env keeps only each chunk's
            last frame (``chunk_frames="last"``), so that the video plays in real time.
        crf: H.264 constant rate factor (lower is better quality, 18 is visually lossless).

    Example:
        >>> import tempfile, shareverse_env
        >>> from shareverse_env.wrappers import RecordVideo
        >>> folder = tempfile.mkdtemp()
        >>> env = RecordVideo(shareverse_env.parallel_env(max_cycles=1), folder)
        >>> obs, infos = env.reset(seed=0)
        >>> _ = env.step({a: env.action_space(a).low * 0 + [8.0, 0.0, 0.0] for a in env.agents})
        >>> env.close()
        >>> [p.name for p in env.recorded]
        ['shareverse-episode-0.mp4']
    """

    def __init__(
        self,
        env: ParallelEnv,
        video_folder: str | os.PathLike[str],
        episode_trigger: Callable[[int], bool] | None = None,
        name_prefix: str = "shareverse",
        fps: float | None = None,
        crf: int = 18,
    ) -> None:
        super().__init__(env)
        if not callable(getattr(env.unwrapped, "render_chunk", None)):
            raise TypeError(
                "RecordVideo needs an env whose unwrapped env has render_chunk() (the ShareVerse "
                f"parallel env); got {type(env.unwrapped).__name__}"
            )
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must lie in [0, 51]; got {crf}")
        self.video_folder = Path(video_folder)
        self.video_folder.mkdir(parents=True, exist_ok=True)
        self.episode_trigger = episode_trigger or capped_cubic_schedule
        self.name_prefix = name_prefix
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be > 0; got {fps!r}")
        render_fps = float(env.metadata.get("render_fps", 10))
        config = getattr(env.unwrapped, "config", None)
        one_per_chunk = getattr(config, "chunk_frames", "all") == "last"
        self.fps = float(
            fps or (render_fps / NEW_FRAMES_PER_CHUNK if one_per_chunk else render_fps)
        )
        self.crf = crf
        self.episode_id = -1
        self.recorded: list[Path] = []
        self._writer: Any = None
        self._frame_shape: tuple[int, ...] | None = None
        self._paths: tuple[Path, Path] | None = None
        self.frames_written = 0

    @property
    def recording(self) -> bool:
        """True while an episode is being written."""
        return self._writer is not None

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        self._finish()
        result = self.env.reset(seed=seed, options=options)
        self.episode_id += 1
        if self.episode_trigger(self.episode_id):
            self._start()
            self._write(self.env.unwrapped.render_chunk())
        return result

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        try:
            result = self.env.step(actions)
            if self.recording:
                self._write(self.env.unwrapped.render_chunk())
        except BaseException:
            self._finish()  # keep what was recorded playable
            raise
        if self.recording and not self.env.agents:
            self._finish()
        return result

    def close(self) -> None:
        self._finish()
        super().close()

    def __del__(self) -> None:
        # Best effort for envs dropped without close(); close() is the reliable path.
        try:
            self._finish()
        except Exception:
            pass

    # ------------------------------------------------------------------ writer

    def _start(self) -> None:
        final = self.video_folder / f"{self.name_prefix}-episode-{self.episode_id}.mp4"
        partial = final.with_name(f".{final.stem}.partial.mp4")
        self._writer = imageio.get_writer(
            partial,
            format="FFMPEG",
            mode="I",
            fps=self.fps,
            codec="libx264",
            macro_block_size=1,  # never resize frames behind the user's back
            pixelformat="yuv420p",
            quality=None,
            output_params=["-crf", str(self.crf)],
            ffmpeg_log_level="error",
        )
        self._paths = (partial, final)
        self._frame_shape = None
        self.frames_written = 0

    def _write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 frames (F, H, W, 3); got {frames.dtype} {frames.shape}"
            )
        shape = frames.shape[1:]
        if self._frame_shape is None:
            if shape[0] % 2 or shape[1] % 2:
                raise ValueError(
                    f"H.264 needs even frame sizes and frames are never resized; got {shape[:2]}"
                )
            self._frame_shape = shape
        elif shape != self._frame_shape:
            raise ValueError(f"frame size changed within an episode: {self._frame_shape} → {shape}")
        for frame in frames:
            self._writer.append_data(frame)
        self.frames_written += len(frames)

    def _finish(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.close()
        partial, final = self._paths
        if self.frames_written:
            os.replace(partial, final)
            self.recorded.append(final)
        else:
            partial.unlink(missing_ok=True)
