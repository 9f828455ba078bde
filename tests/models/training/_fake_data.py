"""A small in-memory sequence source: coloured noise drifting over time, agents driving straight."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FakeSequence:
    frames: np.ndarray
    poses: np.ndarray
    depth: np.ndarray | None = None  # (A, F, 2H, 2W): sky above the horizon, 6 m below


class FakeData:
    def __init__(self, sequences: int = 2, agents: int = 2, frames: int = 45, hw=(64, 96)) -> None:
        rng = np.random.default_rng(0)
        self.items = []
        for _ in range(sequences):
            base = rng.integers(0, 255, (agents, 1, *hw, 3))
            drift = np.arange(frames)[None, :, None, None, None] * 3
            poses = np.zeros((agents, frames, 3))
            poses[:, :, 0] = np.arange(frames)[None] * 0.5
            poses[:, :, 1] = np.arange(agents)[:, None] * 4.0
            depth = np.full((agents, frames, *hw), np.inf, np.float32)
            depth[:, :, hw[0] // 4 : hw[0] // 2] = 6.0  # lower half of the top row of views
            depth[:, :, 3 * hw[0] // 4 :] = 6.0  # and of the bottom row
            frames_u8 = ((base + drift) % 255).astype(np.uint8)
            self.items.append(FakeSequence(frames_u8, poses, depth))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> FakeSequence:
        return self.items[index]
