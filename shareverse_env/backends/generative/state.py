"""What the generative backend carries between the stages of one chunk (:class:`ChunkState`) and
from one chunk to the next (:class:`Checkpoint`, what ``branch()`` saves and restores).

Arrays come in two row layouts, named by their suffix: ``*_all`` has one row per agent of the
episode (``A`` rows, inactive agents included: their cars still stand in the world), ``*_active``
one row per generating agent, in the order of :attr:`ChunkState.agents` (``n`` rows). The scene
compositor's calls take both at once (``frames`` of the active agents, ``poses`` of all); the
names say which is which.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from shareverse_env.memory import SpatialMemory
from shareverse_env.models.pipeline import ChunkRequest
from shareverse_env.scene.cache import CacheRender, SceneCache


@dataclass
class ChunkState:
    """One chunk in flight, from its checked inputs to the frames it returns.

    Attributes:
        poses_all: ``(A, F, 3)`` float64 every agent's planned poses; frame 0 is the
            conditioning frame's.
        active_all: ``(A,)`` bool, the agents whose frames are generated.
        agents: ``(n,)`` int indices of the active agents: row ``i`` of every ``*_active``
            field is agent ``agents[i]``.
        out_all: ``(A, F-1, 2H, 2W, 3)`` uint8, the frames :meth:`generate` returns; inactive
            rows stay zero.
        conditioning_active: ``(n, 2H, 2W, 3)`` uint8, the active agents' conditioning frames.
        request: what the sampler is asked for (``None`` when no agent is active).
        renders_active: the scene cache rendered into the active agents' new frames, when it
            was rendered before sampling (a model that sees the cache); ``None``: rendered
            after sampling, for the composite.
        cache_seconds: time spent rendering the cache before sampling (counted in the chunk's
            ``scene_cache`` timing).

    Example:
        >>> chunk = ChunkState.start(np.zeros((2, 29, 3)), np.array([False, True]),
        ...                          np.zeros((2, 8, 8, 3), np.uint8))
        >>> chunk.agents.tolist(), chunk.out_all.shape, chunk.poses_active.shape
        ([1], (2, 28, 8, 8, 3), (1, 29, 3))
    """

    poses_all: np.ndarray
    active_all: np.ndarray
    agents: np.ndarray
    out_all: np.ndarray
    conditioning_active: np.ndarray
    request: ChunkRequest | None = None
    renders_active: list[CacheRender] | None = None
    cache_seconds: float = 0.0

    @classmethod
    def start(
        cls, poses_all: np.ndarray, active_all: np.ndarray, conditioning_all: np.ndarray
    ) -> ChunkState:
        """The chunk of checked ``poses_all (A, F, 3)`` and ``active_all (A,)``, given every
        agent's conditioning frame ``(A, 2H, 2W, 3)``; its output frames zeroed."""
        agents = np.flatnonzero(active_all)
        frames = poses_all.shape[1] - 1
        out = np.zeros((len(poses_all), frames, *conditioning_all.shape[1:]), dtype=np.uint8)
        return cls(poses_all, active_all, agents, out, conditioning_all[agents])

    @property
    def poses_active(self) -> np.ndarray:
        """``(n, F, 3)`` the active agents' planned poses."""
        return self.poses_all[self.agents]

    @property
    def new_poses_all(self) -> np.ndarray:
        """``(A, F-1, 3)`` every agent's poses at the chunk's new frames."""
        return self.poses_all[:, 1:]

    @property
    def new_poses_active(self) -> np.ndarray:
        """``(n, F-1, 3)`` the active agents' poses at the chunk's new frames."""
        return self.poses_all[self.agents][:, 1:]


@dataclass(frozen=True)
class Checkpoint:
    """The backend's state between two chunks, as ``branch()`` saves and restores it: copies,
    so that nothing generated after the checkpoint reaches it.

    Attributes:
        memory: the spatial memory archive.
        conditioning_all: ``(A, 2H, 2W, 3)`` every agent's conditioning frame.
        time: the episode's clock (frames since the first).
        timings: the last chunk's timings.
        generator_state: the noise generator's state.
        scene_cache: the scene cache (``None`` without one).
        cache_renders_active: the scene cache's renders of the last chunk.

    Example:
        >>> gen = torch.Generator().manual_seed(0)
        >>> frames = np.zeros((1, 8, 8, 3), np.uint8)
        >>> saved = Checkpoint.take(SpatialMemory(), frames, 0, {}, gen, None, [])
        >>> frames[:] = 255  # later changes do not reach the checkpoint
        >>> drawn = torch.rand(1, generator=gen)
        >>> _ = gen.set_state(saved.generator_state)  # the same noise again
        >>> bool(torch.rand(1, generator=gen) == drawn), int(saved.conditioning_all.max())
        (True, 0)
    """

    memory: SpatialMemory
    conditioning_all: np.ndarray
    time: int
    timings: dict[str, float]
    generator_state: torch.Tensor
    scene_cache: SceneCache | None
    cache_renders_active: list[CacheRender] = field(default_factory=list)

    @classmethod
    def take(
        cls,
        memory: SpatialMemory,
        conditioning_all: np.ndarray,
        time: int,
        timings: dict[str, float],
        generator: torch.Generator,
        scene_cache: SceneCache | None,
        cache_renders_active: list[CacheRender],
    ) -> Checkpoint:
        """Copies of the given state (deep copies of the memory and the scene cache)."""
        return cls(
            copy.deepcopy(memory),
            conditioning_all.copy(),
            time,
            dict(timings),
            generator.get_state(),
            None if scene_cache is None else copy.deepcopy(scene_cache),
            list(cache_renders_active),
        )
