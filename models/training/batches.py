"""Training examples drawn from synchronised multi-agent sequences.

Every draw is a pure function of ``(seed, step, rank)``, so a resumed run sees exactly the
batches it would have seen without the interruption, and data-parallel ranks see different ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from shareverse_env.core.geometry import CHUNK_FRAMES, MEMORY_FRAMES
from shareverse_env.memory import SpatialMemory, sample_query_positions


class Sequence(Protocol):
    frames: np.ndarray  # (A, F, 2H, 2W, 3) uint8
    poses: np.ndarray  # (A, F, 3)


class SequenceSource(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sequence: ...


@dataclass
class ChunkExample:
    """One chunk of every agent of a sequence (numpy, uint8 frames).

    Drawn from a latent cache (:mod:`.latent_cache`), ``latents`` and ``memory_latents`` hold the
    frozen VAE's unscaled posterior means, ``video`` only the conditioning frame ``(A, 1, …)``
    (it gets fresh pixel noise every step, so it is always encoded from pixels) and
    ``memory_frames`` is ``None``.
    """

    video: np.ndarray  # (A, 29, 2H, 2W, 3): frame 0 is the conditioning frame
    poses: np.ndarray  # (A, 29, 3)
    memory_frames: np.ndarray | None  # (A, 4, 2H, 2W, 3)
    memory_poses: np.ndarray | None  # (A, 4, 3)
    sequence: int
    start: int
    latents: torch.Tensor | None = None  # (A, C, 8, h, w) unscaled, as encode_video returns
    memory_latents: torch.Tensor | None = None  # (A, 4, C, h, w) unscaled
    # Packed raymaps, float32 on the CPU, when the loader built them (Trainer does, off the
    # step's thread); otherwise the step computes them from the poses.
    raymaps: torch.Tensor | None = None  # (A, 8, 24, h, w)
    memory_raymaps: torch.Tensor | None = None  # (A, 4, 24, h, w)
    # The scene cache rendered into the chunk (models/cache_input.py), scaled, for a model
    # with a cache input; built by the trainer's loader or read from a cache-input store.
    cache_states: torch.Tensor | None = None  # (A, 8, cache_in_channels, h, w)


def step_rng(seed: int, step: int, rank: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, step, rank])


def retrieve_memory(
    poses: np.ndarray, start: int, source: str = "all"
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 3 over the sequence's frames ``0..start`` of every agent.

    Returns ``(agents (A, 4), times (A, 4))`` of the retrieved frames for the chunk starting at
    ``start``: 4 positions sampled on each agent's chunk trajectory, nearest archived frame each.
    """
    agents, _ = poses.shape[:2]
    memory = SpatialMemory()
    history = poses[:, : start + 1]
    times = np.arange(start + 1)
    for a in range(agents):
        memory.add(np.zeros((start + 1, 1), np.float32), history[a], a, times)
    queries = sample_query_positions(poses[:, start : start + CHUNK_FRAMES])
    found_agents = np.zeros((agents, MEMORY_FRAMES), np.int64)
    found_times = np.zeros((agents, MEMORY_FRAMES), np.int64)
    for a in range(agents):
        found = memory.retrieve(a, queries[a], source)
        if found.count == 0:  # e.g. "others" with one agent: fall back to the own frames
            found = memory.retrieve(a, queries[a], "own")
        found_agents[a], found_times[a] = found.agents, found.times
    return found_agents, found_times


def chunk_starts(frames: int, lowest: int = 0, stride: int = 1) -> range:
    """The chunk starts ``s ≥ lowest`` with ``s % stride == 0`` whose 29 frames fit in ``frames``.

    >>> list(chunk_starts(45, 8, 4))
    [8, 12, 16]
    """
    if stride < 1:
        raise ValueError(f"start stride must be >= 1; got {stride}")
    first = -(-lowest // stride) * stride
    return range(first, frames - CHUNK_FRAMES + 1, stride)


def draw_start(
    rng: np.random.Generator, frames: int, lowest: int, stride: int = 1, index: int = 0
) -> int:
    """A uniformly drawn chunk start on the grid of ``stride`` (one ``rng`` draw).

    With ``stride`` 1 this is ``rng.integers(lowest, frames - 28)``, the draw of uncached runs.
    """
    starts = chunk_starts(frames, lowest, stride)
    if len(starts) == 0:
        raise ValueError(
            f"sequence {index} has {frames} frames; a chunk needs {CHUNK_FRAMES + lowest}"
            + (f" with its start a multiple of {stride}" if stride > 1 else "")
        )
    return starts[int(rng.integers(len(starts)))]


def draw_chunk(
    data: SequenceSource,
    rng: np.random.Generator,
    with_memory: bool,
    min_history: int,
    source: str,
    start_stride: int = 1,
) -> ChunkExample:
    """The chunk of ``rng``'s draw: a sequence, then a start (a multiple of ``start_stride``)."""
    index = int(rng.integers(len(data)))
    seq = data[index]
    frames = seq.frames.shape[1]
    lowest = min_history if with_memory else 0
    start = draw_start(rng, frames, lowest, start_stride, index)
    window = slice(start, start + CHUNK_FRAMES)
    memory_frames = memory_poses = None
    if with_memory:
        who, when = retrieve_memory(seq.poses, start, source)
        memory_frames = seq.frames[who, when]
        memory_poses = seq.poses[who, when]
    return ChunkExample(
        np.asarray(seq.frames[:, window]),
        np.asarray(seq.poses[:, window], dtype=np.float64),
        memory_frames,
        memory_poses,
        index,
        start,
    )


def draw_vae_clips(
    data: SequenceSource, rng: np.random.Generator, batch: int, clip_frames: int
) -> np.ndarray:
    """``(batch, clip_frames, 2H, 2W, 3)`` uint8 clips of single agents."""
    clips = []
    for _ in range(batch):
        seq = data[int(rng.integers(len(data)))]
        agent = int(rng.integers(seq.frames.shape[0]))
        start = int(rng.integers(seq.frames.shape[1] - clip_frames + 1))
        clips.append(np.asarray(seq.frames[agent, start : start + clip_frames]))
    return np.stack(clips)


def to_video_tensor(frames: np.ndarray, device: Any, dtype: torch.dtype) -> torch.Tensor:
    """uint8 ``(..., F, H, W, 3)`` → ``(..., 3, F, H, W)`` in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    x = x.movedim(-1, -4).to(dtype) / 127.5 - 1.0
    return x
