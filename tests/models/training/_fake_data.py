"""A small in-memory sequence source: coloured noise drifting over time, agents driving straight."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FakeSequence:
    frames: np.ndarray
    poses: np.ndarray


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
            self.items.append(FakeSequence(((base + drift) % 255).astype(np.uint8), poses))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> FakeSequence:
        return self.items[index]
