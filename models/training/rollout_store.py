"""Rollout store: training chunks whose inputs the model made itself, with the truth as target.

A model trained only on inputs built from exact data (the true conditioning frame, memory of
true frames, a scene cache of true frames with exact depth) never learns to recover from its
own output: at inference each chunk is conditioned on the last generated frame, on memory of
generated frames and on a cache that archived them, so errors compound (exposure bias). A
rollout store holds chunks of the env's own episodes (``shareverse-train collect-rollouts``,
:mod:`shareverse_env.cli.rollouts`): for every chunk of every car, the inputs exactly as the
generative backend gave them to the model, and as the target the latents of the true frames
the exact renderer draws at the same poses. Training on them (``Trainer(...,
rollouts=...)``) teaches the model to continue its own imperfect past toward the truth, as
DAgger does for policies and self-forcing / rolling training do for video models.

Layout (nothing is pickled; each file is written to a temporary name and renamed)::

    ROOT/rollouts.json            manifest: format, VAE identity, the model that rolled out,
                                  shapes, and per episode its file and chunk count
    ROOT/episode_00000.safetensors
        conditioning  (n, A, 1, 2H, 2W, 3) uint8   the generated frame each chunk started from
        poses         (n, A, 29, 3) float64        the chunk's planned poses
        latents       (n, A, C, 8, h, w) float16   unscaled VAE means of the TRUE 29 frames
        memory_latents (n, A, M, C, h, w) float16  unscaled latents of the retrieved memory
        memory_poses  (n, A, M, 3) float64
        cache_states  (n, A, 8, Cc, h, w) float16  the scene cache's input as the model saw it
        chunk         (n,) int64                   the chunk's index in its episode (0 = first)

Example::

    store = RolloutStore("rollouts/v4")
    example = store.draw(np.random.default_rng(0))   # a ChunkExample with cache_states
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from shareverse_env.models.training.batches import ChunkExample
from shareverse_env.models.training.latent_cache import vae_identity

from shareverse_env.core.files import atomic_file

FORMAT_NAME = "shareverse-rollouts"
FORMAT_VERSION = 1
MANIFEST = "rollouts.json"

FIELDS = (
    "conditioning",
    "poses",
    "latents",
    "memory_latents",
    "memory_poses",
    "cache_states",
    "chunk",
)
"""The tensors of an episode file, in the order of the layout above."""


@dataclass
class RolloutChunk:
    """One recorded chunk of every car (numpy / torch on the CPU), the unit the collector adds."""

    conditioning: np.ndarray  # (A, 2H, 2W, 3) uint8, the generated frame the chunk started from
    poses: np.ndarray  # (A, 29, 3)
    latents: torch.Tensor  # (A, C, 8, h, w) unscaled, of the true frames
    memory_latents: torch.Tensor  # (A, M, C, h, w) unscaled
    memory_poses: np.ndarray  # (A, M, 3)
    cache_states: torch.Tensor  # (A, 8, Cc, h, w)
    chunk: int


def write_episode(root: str | Path, index: int, chunks: list[RolloutChunk]) -> Path:
    """Write one episode's chunks as ``ROOT/episode_<index>.safetensors`` (atomic)."""
    if not chunks:
        raise ValueError("an episode file needs at least one chunk")
    tensors = {
        "conditioning": torch.from_numpy(np.stack([c.conditioning for c in chunks])[:, :, None]),
        "poses": torch.from_numpy(np.stack([c.poses for c in chunks]).astype(np.float64)),
        "latents": torch.stack([c.latents for c in chunks]).half(),
        "memory_latents": torch.stack([c.memory_latents for c in chunks]).half(),
        "memory_poses": torch.from_numpy(
            np.stack([c.memory_poses for c in chunks]).astype(np.float64)
        ),
        "cache_states": torch.stack([c.cache_states for c in chunks]).half(),
        "chunk": torch.tensor([c.chunk for c in chunks], dtype=torch.int64),
    }
    path = Path(root) / f"episode_{index:05d}.safetensors"
    with atomic_file(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    return path


def read_manifest(root: str | Path) -> dict[str, Any] | None:
    """The store's manifest, or ``None`` when there is none yet."""
    path = Path(root) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def write_manifest(root: str | Path, manifest: dict[str, Any]) -> None:
    path = Path(root) / MANIFEST
    with atomic_file(path) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=1))


def new_manifest(pipe: Any, model: str, settings: dict[str, Any]) -> dict[str, Any]:
    """A manifest for rollouts of ``pipe`` (its VAE's identity fixes the latent space)."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "vae": vae_identity(pipe.vae),
        "model": str(model),
        "settings": settings,
        "episodes": [],
    }


class RolloutStore:
    """Reads a rollout store and draws its chunks as :class:`~.batches.ChunkExample` s.

    Every chunk of every episode is one example (all its cars); the draw is uniform over them,
    from the caller's generator, so a training step's batch is a function of its seed.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        manifest = read_manifest(self.root)
        if manifest is None:
            raise FileNotFoundError(
                f"{self.root} is no rollout store (no {MANIFEST}); collect one with "
                "shareverse-train collect-rollouts"
            )
        if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{self.root}/{MANIFEST}: expected format {FORMAT_NAME!r} version "
                f"{FORMAT_VERSION}; got {manifest.get('format')!r} {manifest.get('version')!r}"
            )
        self.manifest = manifest
        self.episodes = [
            (self.root / e["file"], int(e["chunks"])) for e in manifest["episodes"] if e["chunks"]
        ]
        if not self.episodes:
            raise ValueError(f"{self.root}: the rollout store has no episodes yet")
        self._offsets = np.cumsum([0] + [n for _, n in self.episodes])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def check(self, pipe: Any) -> None:
        """Refuse a store whose latents were encoded by another VAE than ``pipe``'s."""
        if self.manifest["vae"] != vae_identity(pipe.vae):
            raise ValueError(
                f"{self.root}: the rollouts were encoded with another VAE (or scaling factor) "
                "than this pipeline's; collect them again with this model"
            )

    def example(self, index: int) -> ChunkExample:
        """The ``index``-th chunk of the store (episodes in order, chunks in order)."""
        if not 0 <= index < len(self):
            raise IndexError(f"rollout chunk {index} out of range 0..{len(self) - 1}")
        episode = int(np.searchsorted(self._offsets, index, side="right") - 1)
        row = index - int(self._offsets[episode])
        with safe_open(str(self.episodes[episode][0]), framework="pt") as f:
            get = {name: f.get_slice(name)[row] for name in FIELDS}
        return ChunkExample(
            video=get["conditioning"].numpy(),
            poses=get["poses"].numpy(),
            memory_frames=None,
            memory_poses=get["memory_poses"].numpy(),
            sequence=episode,
            start=int(get["chunk"]),
            latents=get["latents"].float(),
            memory_latents=get["memory_latents"].float(),
            cache_states=get["cache_states"].float(),
        )

    def draw(self, rng: np.random.Generator) -> ChunkExample:
        """A uniformly drawn chunk."""
        return self.example(int(rng.integers(len(self))))
