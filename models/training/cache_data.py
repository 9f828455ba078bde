"""Scene-cache inputs for training a cache-conditioned model, built from the dataset.

At inference the env's scene cache holds the episode's first frames with their exact depth and
keyframes of the frames generated since, lifted with a depth network's estimate, and the model
sees it rendered into its planned cameras (:mod:`shareverse_env.scene.guide`). A training chunk
gets the same input, built from what the dataset knows at the chunk's start:

- the **buffers**: every agent's conditioning frame (the chunk's frame 0) and the memory frames
  Eq. 3 retrieves for the chunk (:func:`~.batches.retrieve_memory`), each with the dataset's
  exact depth, made imperfect like estimated depth (GEN3C): a per-buffer scale
  ``exp(N(0, level))`` and per-pixel factors ``1 + N(0, level / 2)``, with ``level`` drawn
  uniformly up to :attr:`CacheNoise.max_level` (10 %) and grown with the buffer's age
  (``× (1 + age / age_frames)``: older keyframes were estimated from frames further from the
  truth);
- the **render**: the same compositor as the env's (:class:`~shareverse_env.scene.composite.
  SceneCompositor`, the same buffer selection and splatting) into each agent's 28 new frames,
  turned into a :class:`~shareverse_env.models.cache_input.CacheGuide` by the env's own
  :func:`~shareverse_env.scene.guide.cache_guide`;
- the **drop**: for :attr:`CacheNoise.drop` of the examples (15 %), the whole cache input is
  zeros, so the model still generates where nothing is known. The drop is drawn per step by
  :func:`drop_cache` (a latent cache of inputs keeps one noise draw per chunk start).

Every draw comes from a ``numpy`` generator seeded by the caller, so an input is reproducible.

Example (a tiny dataset of the test suite's kind is built the same way):

    >>> import numpy as np
    >>> from shareverse_env.core.geometry import CameraRig
    >>> rig, hw, a, f = CameraRig(), (16, 24), 2, 40
    >>> frames = np.full((a, f, 32, 48, 3), 120, np.uint8)
    >>> depth = np.full((a, f, 32, 48), np.inf, np.float32); depth[:, :, 16:] = 6.0
    >>> x = np.arange(f) * 0.3
    >>> poses = np.stack([np.stack([x, x * 0, x * 0], -1), np.stack([x, x * 0 + 4, x * 0], -1)])
    >>> guide = chunk_cache_guide(frames, depth, poses, 8, rig, hw, np.random.default_rng(0))
    >>> guide.rgb.shape, round(float(guide.valid[:, 1:].mean()), 2) > 0.5
    ((2, 29, 32, 48, 3), True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from shareverse_env.models.training.batches import retrieve_memory

from shareverse_env.core.cache_guide import CacheGuide
from shareverse_env.core.geometry import CHUNK_FRAMES, CameraRig
from shareverse_env.scene.cache import MAX_FOOTPRINT, SceneBuffer
from shareverse_env.scene.composite import SceneCompositor
from shareverse_env.scene.guide import cache_guide


@dataclass(frozen=True)
class CacheNoise:
    """How a training chunk's cache input is made imperfect (see the module docstring)."""

    max_level: float = 0.10
    age_frames: float = 56.0
    drop: float = 0.15
    buffers: int = 4

    def validate(self) -> None:
        if not 0 <= self.max_level < 1:
            raise ValueError(f"cache noise max_level must be in [0, 1); got {self.max_level}")
        if not self.age_frames > 0:
            raise ValueError(f"cache noise age_frames must be > 0; got {self.age_frames}")
        if not 0 <= self.drop <= 1:
            raise ValueError(f"cache drop must be in [0, 1]; got {self.drop}")
        if self.buffers < 1:
            raise ValueError(f"cache buffers must be >= 1; got {self.buffers}")


def perturb_depth(depth: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """``depth`` (``inf`` = sky, kept) times a global ``exp(N(0, level))`` and per-pixel
    ``1 + N(0, level / 2)`` (clipped to ≥ 0.5). ``level`` 0 returns a copy."""
    depth = np.array(depth, dtype=np.float32)
    if level <= 0:
        return depth
    scale = np.exp(rng.normal(0.0, level))
    pixel = np.clip(1.0 + rng.normal(0.0, level / 2, depth.shape), 0.5, None)
    finite = np.isfinite(depth)
    depth[finite] = (depth * scale * pixel)[finite]
    return depth


def chunk_cache_guide(
    frames: np.ndarray,
    depth: np.ndarray,
    poses: np.ndarray,
    start: int,
    rig: CameraRig,
    view_hw: tuple[int, int],
    rng: np.random.Generator,
    noise: CacheNoise | None = None,
    memory_source: str = "all",
    max_footprint: int | tuple[int, int] = MAX_FOOTPRINT,
) -> CacheGuide:
    """The cache input of every agent for the chunk of a sequence starting at ``start``.

    Args:
        frames: ``(A, F, 2H, 2W, 3)`` uint8, the sequence (only the frames read are loaded
            when it is a memory map).
        depth: ``(A, F, 2H, 2W)`` exact z-depth, ``inf`` = sky.
        poses: ``(A, F, 3)``.
        start: the chunk's first frame (its conditioning frame).
        rig, view_hw: the camera rig and the size of one view.
        rng: draws the depth noise.
        noise: the noise settings (default :class:`CacheNoise`); ``max_level=0`` for exact
            depth.
        memory_source: the memory the chunk retrieves (as in training).
        max_footprint: the largest splat of the renders (the env's default).
    """
    noise = noise or CacheNoise()
    noise.validate()
    poses = np.asarray(poses, dtype=np.float64)
    agents, total = poses.shape[:2]
    if not 0 <= start <= total - CHUNK_FRAMES:
        raise ValueError(f"start {start} leaves no {CHUNK_FRAMES}-frame chunk in {total} frames")
    who, when = retrieve_memory(poses, start, memory_source)
    picked = {(a, start) for a in range(agents)}
    picked |= {(int(a), int(t)) for a, t in zip(who.ravel(), when.ravel(), strict=True)}
    scene = SceneCompositor(
        rig,
        view_hw,
        capacity=len(picked),
        max_footprint=max_footprint,
        buffers_per_agent=noise.buffers,
        depth_estimator=None,
    )
    for a, t in sorted(picked, key=lambda p: (p[1], p[0])):  # oldest first, as the env adds
        level = rng.uniform(0.0, noise.max_level) * (1.0 + (start - t) / noise.age_frames)
        noisy = perturb_depth(depth[a, t], level, rng)
        buffer = SceneBuffer(np.asarray(frames[a, t]), noisy, poses[a, t], a, t)
        scene.cache.add(buffer, car_poses=poses[:, t])
    window = poses[:, start : start + CHUNK_FRAMES]
    renders = scene.render(window[:, 1:], list(range(agents)))
    conditioning = np.stack([np.asarray(frames[a, start]) for a in range(agents)])
    return cache_guide(scene, conditioning, renders, window, list(range(agents)))


def drop_cache(
    states: torch.Tensor, probability: float, generator: torch.Generator
) -> torch.Tensor:
    """``states`` ``(B, …)`` with each example's whole cache input zeroed with ``probability``
    (one draw per example from ``generator``)."""
    keep = torch.rand(states.shape[0], generator=generator) >= probability
    shape = (states.shape[0],) + (1,) * (states.ndim - 1)
    return states * keep.to(states.device, states.dtype).reshape(shape)
