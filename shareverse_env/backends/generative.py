"""The generative backend: the ShareVerse model and its spatial memory produce every frame.

Each :meth:`ShareVerseBackend.generate` call runs the paper's loop for one chunk: four query
positions on every agent's planned trajectory retrieve the nearest archived frames from the
shared memory (Eq. 3), the pipeline generates all agents' 28 new frames at once conditioned on
their last frames, the planned camera raymaps and the retrieved memory, and every new frame's
latent is archived with its pose, agent and time.

The backend renders nothing itself: the first frames of an episode are handed to
:meth:`ShareVerseBackend.reset` — by the env, which renders them from its town with their exact
depth (:class:`~shareverse_env.backends.FirstFrames`), or by the caller as
``options={"images": ...}`` (depth then unknown) — so an episode starts where the ground truth
starts.

Example (a random tiny model: the frames are noise, the mechanics are real):

    >>> import numpy as np
    >>> from shareverse_env.backends import WorldBackend
    >>> from shareverse_env.core.geometry import plan_chunk
    >>> from shareverse_env.world.generator import generate_town
    >>> backend = ShareVerseBackend(model="tiny")
    >>> start = np.array([[0.0, 0.0, 0.0]])
    >>> first = WorldBackend(backend.view_hw).first_frames(generate_town(0), "clear_noon", start)
    >>> backend.reset(None, "clear_noon", start, {"noise_seed": 0}, first_frames=first).shape
    (1, 64, 96, 3)
    >>> backend.start_frames.depth.shape  # the exact depth, kept for the episode
    (1, 64, 96)
    >>> plan = plan_chunk(start, np.array([[8.0, 0.0, 0.0]]))
    >>> backend.generate(plan, np.array([True])).shape
    (1, 28, 64, 96, 3)
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shareverse_env.backends import Backend, FirstFrames
from shareverse_env.core.cache_guide import NO_CACHE
from shareverse_env.core.geometry import CHUNK_FRAMES, CameraRig, check_finite_poses
from shareverse_env.memory import SOURCES, SpatialMemory, sample_query_positions
from shareverse_env.models.loading import load_model
from shareverse_env.models.pipeline import (
    ChunkOutput,
    ChunkRequest,
    MemoryInput,
    ShareVersePipeline,
)
from shareverse_env.scene.cache import MAX_FOOTPRINT, CacheRender
from shareverse_env.scene.composite import DepthEstimator, SceneCompositor
from shareverse_env.scene.guide import cache_guide
from shareverse_env.world.town import Town
from shareverse_env.world.weather import Weather

DEFAULT_MEMORY_CAPACITY = 4096
"""Frames the spatial memory keeps by default. An episode's archive grows by 28 frames per agent
per chunk; bounded, memory stays flat over any episode length, and the quality runner's episodes
(at most 10 chunks, 560 frames) never reach the bound, so their retrieval is unchanged."""


class ShareVerseBackend(Backend):
    """Frames from the ShareVerse model with a shared spatial memory.

    Args:
        view_hw: must equal the model's view size when given (the weights serve one size).
        rig: must equal the model's camera rig when given.
        model: ``None`` (shipped weights), a config name (random weights), a pipeline folder,
            a local diffusers CogVideoX-I2V folder, or a
            :class:`~shareverse_env.models.pipeline.ShareVersePipeline`.
        memory_source: ``"all"`` (pooled over agents, the paper's shared world), ``"others"``
            or ``"own"``; ``"none"`` generates without memory.
        memory_capacity: bound on archived frames (oldest evicted first; default
            :data:`DEFAULT_MEMORY_CAPACITY`, about 25 MB of fp16 latents for the shipped
            model: the last 73 chunks of two agents); ``None``: unbounded.
        archive_stride: archive every k-th new frame (1: every frame, as in the paper).
        num_inference_steps: sampler steps (default: the pipeline's).
        device: torch device for the model.
        progress: show the denoising progress bar.
        seed: seed of the noise generator (and of random weights for a config name).
        scene_cache: keep a shared 3D scene cache (:class:`~shareverse_env.scene.composite.
            SceneCompositor`): every agent's first frame lifted with its depth, rendered into
            every planned camera. ``False``: the paper's mechanism alone, exactly as before.
        composite: with ``scene_cache``, show the cache render wherever it is valid (other
            cars' boxes excepted) and the model's frame elsewhere; ``False`` keeps the cache
            (rendered into :attr:`last_cache_renders`) without touching the frames.
        cache_capacity: buffers the scene cache keeps.
        cache_eviction: which buffers a full scene cache drops: ``"coverage"`` (those covering
            least of the cars' current views) or ``"oldest"`` (first in, first out; the only
            policy before 2026-12-06, which lost the exact first frames after 4 chunks).
        cache_max_footprint: largest splat of the cache's renders in pixels, an integer or a
            ``(width, height)`` pair (default 6 × 3; 3 × 3, the cap the shipped model was
            trained with, before 2026-12-06; see docs/scene_cache.md#splat-size).
        cache_buffers: buffers rendered into each agent's chunk (most coverage first).
        depth_model: depth network for frames whose depth is unknown (user images, new
            content of generated frames): ``None`` (the shipped one, when installed), a weights
            path, or ``False`` (none: only frames with exact depth enter the cache).
        allow_random_full_size: build a full-size config name (``"cogvideox-5b-i2v"``) with
            random weights even on the CPU (refused by default: tens of GB of noise).
    """

    name = "shareverse"
    takes_model = True
    default_view_hw = None  # the model's own
    renders_frames_independently = False
    shares_weights = True
    reset_options = ("images",)

    @classmethod
    def load_shared_model(cls, model: Any, options: dict[str, Any]) -> ShareVersePipeline:
        """Load ``model`` once for several backends (weights are read-only at inference), with
        the ``device`` and ``seed`` of ``options`` as the constructor would."""
        if isinstance(model, ShareVersePipeline):
            return model
        return load_model(
            model,
            device=options.get("device"),
            seed=options.get("seed", 0),
            allow_random_full_size=options.get("allow_random_full_size", False),
        )

    def __init__(
        self,
        view_hw: tuple[int, int] | None = None,
        rig: CameraRig | None = None,
        model: str | ShareVersePipeline | None = None,
        memory_source: str = "all",
        memory_capacity: int | None = DEFAULT_MEMORY_CAPACITY,
        archive_stride: int = 1,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        progress: bool = False,
        seed: int = 0,
        scene_cache: bool = True,
        composite: bool = True,
        cache_capacity: int = 32,
        cache_eviction: str = "coverage",
        cache_max_footprint: int | tuple[int, int] = MAX_FOOTPRINT,
        cache_buffers: int = 4,
        depth_model: str | Path | bool | None = None,
        allow_random_full_size: bool = False,
    ) -> None:
        pipe = load_model(
            model, device=device, seed=seed, allow_random_full_size=allow_random_full_size
        )
        if view_hw is not None and tuple(view_hw) != pipe.view_hw:
            raise ValueError(
                f"view_hw {tuple(view_hw)} cannot be served: the model generates {pipe.view_hw} "
                "views; leave view_hw unset to use the model's"
            )
        if rig is not None and rig != pipe.rig:
            raise ValueError(f"the env's camera rig {rig} differs from the model's {pipe.rig}")
        super().__init__(pipe.view_hw, pipe.rig)
        if memory_source not in (*SOURCES, "none"):
            raise ValueError(
                f"memory_source must be one of {(*SOURCES, 'none')}; got {memory_source!r}"
            )
        if archive_stride < 1:
            raise ValueError(f"archive_stride must be >= 1; got {archive_stride}")
        self.pipeline = pipe
        self.memory_source = memory_source
        # fp16 halves the archive; latents are O(1) values, so nothing is lost that matters.
        self.memory = SpatialMemory(capacity=memory_capacity, storage_dtype=torch.float16)
        self.archive_stride = int(archive_stride)
        self.num_inference_steps = num_inference_steps
        self.progress = progress
        self.last_timings: dict[str, float] = {}
        self.start_frames: FirstFrames | None = None
        """The current episode's first frames as given to :meth:`reset` (``depth`` ``None``
        when unknown, as for ``options["images"]``)."""
        self._last_frames: np.ndarray | None = None
        self._time = 0
        self._generator = torch.Generator().manual_seed(seed)
        for name, value in (("scene_cache", scene_cache), ("composite", composite)):
            if not isinstance(value, bool | np.bool_):
                raise ValueError(f"backend option {name!r} must be True or False; got {value!r}")
        self.composite = bool(composite)
        self.scene: SceneCompositor | None = None
        """The episode's scene cache and compositor (``None`` without ``scene_cache``)."""
        if scene_cache:
            self.scene = SceneCompositor(
                pipe.rig,
                pipe.view_hw,
                capacity=cache_capacity,
                eviction=cache_eviction,
                max_footprint=cache_max_footprint,
                buffers_per_agent=cache_buffers,
                depth_estimator=depth_estimator(depth_model),
            )
        self.last_cache_renders: list[CacheRender] = []
        """The scene cache's renders of the last chunk, one per generating agent."""
        self.model_sees_cache = bool(pipe.transformer.config.cache_in_channels) and bool(
            scene_cache
        )
        """The model takes the cache's renders as input (``cache_in_channels > 0``): they are
        rendered before the chunk is denoised, not only composited after. A cache model run
        without a scene cache (the paper's mode) gets ``NO_CACHE``, the all-zero input its
        training drops to."""
        self._no_cache = bool(pipe.transformer.config.cache_in_channels) and not scene_cache
        self._pending_renders: list[CacheRender] | None = None
        self._pending_seconds = 0.0

    def reset(
        self,
        town: Town | None,
        weather: str | Weather,
        poses: np.ndarray,
        options: dict[str, Any] | None = None,
        first_frames: FirstFrames | None = None,
    ) -> np.ndarray:
        """Start an episode from given first frames; ``town`` and ``weather`` are not read.

        Args:
            town: unused (the model never sees the town); may be ``None``.
            weather: unused.
            poses: ``(A, 3)`` start poses.
            options: ``images`` (uint8 ``(A, 2H, 2W, 3)``: first frames of the caller's, depth
                unknown; they take precedence over ``first_frames``), ``noise_seed`` (int).
            first_frames: the first frames with their depth, as the env renders them.
        """
        options = options or {}
        poses = check_finite_poses(np.asarray(poses, dtype=np.float64), "start poses")
        expected = (len(poses), *self.frame_shape)
        if "images" in options:
            frames = np.asarray(options["images"])
            if frames.dtype != np.uint8 or frames.shape != expected:
                raise ValueError(
                    f"options['images'] must be uint8 {expected} (one tiled frame per agent); "
                    f"got {frames.dtype} {frames.shape}"
                )
            start = FirstFrames(frames.copy())
        elif first_frames is not None:
            frames = np.asarray(first_frames.rgb)
            if frames.dtype != np.uint8 or frames.shape != expected:
                raise ValueError(
                    f"first_frames.rgb must be uint8 {expected} (one tiled frame per agent); "
                    f"got {frames.dtype} {frames.shape}"
                )
            start = FirstFrames(frames.copy(), first_frames.depth, first_frames.sky)
        else:
            raise ValueError(
                "ShareVerseBackend.reset needs the episode's first frames: first_frames= (the "
                "env renders them from its town) or options['images']"
            )
        frames = frames.copy()
        if "noise_seed" in options:
            self._generator.manual_seed(int(options["noise_seed"]))
        self.memory.clear()
        self._time = 0
        self._archive(self.pipeline.encode_frames(frames)[:, None], poses[:, None], times=[0])
        if self.scene is not None:
            self.scene.reset(frames, start.depth, poses)
        self.last_cache_renders = []
        self._last_frames = frames
        self.start_frames = start
        return frames

    def generate(self, poses: np.ndarray, active: np.ndarray) -> np.ndarray:
        return self.generate_many([self], [poses], [active])[0]

    @property
    def conditioning_frames(self) -> np.ndarray:
        """A copy of every agent's conditioning frame for the next chunk, uint8
        ``(A, 2H, 2W, 3)``: the last frame generated (or given at reset)."""
        if self._last_frames is None:
            raise RuntimeError("ShareVerseBackend.reset() must be called first")
        return self._last_frames.copy()

    def condition_on(self, frames: np.ndarray) -> None:
        """Make ``frames`` (uint8 ``(A, 2H, 2W, 3)``) the agents' conditioning frames for the next
        chunk in place of their own last frames; the memory archive is left as it is.

        The quality evaluation's ``teacher_forced`` variant passes the true frames here at
        every chunk, which separates the model's one-chunk error from the error that compounds
        through its own outputs. On bad input nothing changes.
        """
        if self._last_frames is None:
            raise RuntimeError("ShareVerseBackend.reset() must be called first")
        expected = self._last_frames.shape
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.shape != expected:
            raise ValueError(
                f"conditioning frames must be uint8 {expected} (one tiled frame per agent); "
                f"got {frames.dtype} {frames.shape}"
            )
        self._last_frames = frames.copy()

    @contextmanager
    def branch(self) -> Iterator[ShareVerseBackend]:
        """Generate inside the ``with`` block, then return to the state before it.

        The memory archive, the conditioning frames, the clock and the noise generator are
        restored on exit, so a chunk generated in the block leaves no trace and the next chunk
        after it draws the very same noise. The quality evaluation's action probes use it to
        generate a chunk under a wrong plan from the same state as the true one.

        Example:
            >>> from shareverse_env.core.geometry import plan_chunk
            >>> backend = ShareVerseBackend(model="tiny")
            >>> start = np.zeros((1, 3))
            >>> _ = backend.reset(None, "clear_noon", start, {"images": np.zeros((1, 64, 96, 3),
            ...                   np.uint8), "noise_seed": 0})
            >>> plan = plan_chunk(start, np.array([[8.0, 0.0, 0.0]]))
            >>> with backend.branch():
            ...     inside = backend.generate(plan, np.ones(1, bool))
            >>> after = backend.generate(plan, np.ones(1, bool))
            >>> bool((inside == after).all()), len(backend.memory)  # same state, same noise
            (True, 29)
        """
        if self._last_frames is None:
            raise RuntimeError("ShareVerseBackend.reset() must be called first")
        saved = (
            copy.deepcopy(self.memory),
            self._last_frames.copy(),
            self._time,
            dict(self.last_timings),
            self._generator.get_state(),
            None if self.scene is None else copy.deepcopy(self.scene.cache),
            list(self.last_cache_renders),
        )
        try:
            yield self
        finally:
            self.memory, self._last_frames, self._time, self.last_timings, state, cache, renders = (
                saved
            )
            self._generator.set_state(state)
            if self.scene is not None:
                self.scene.cache = cache
            self.last_cache_renders = renders

    @classmethod
    def generate_many(
        cls,
        backends: Sequence[Backend],
        poses: Sequence[np.ndarray],
        active: Sequence[np.ndarray],
    ) -> list[np.ndarray]:
        """:meth:`generate` for several independent worlds, batched through their pipeline.

        Backends that share one pipeline object (as :class:`~shareverse_env.envs.vector.
        ShareVerseVectorEnv` arranges) and the same sampler settings generate their chunks in
        one :meth:`~shareverse_env.models.pipeline.ShareVersePipeline.generate_batch` call: one
        denoiser forward per step for all worlds, each world attending only to its own agents
        and reading only its own memory. Others are grouped by pipeline and settings.
        """
        out: list[np.ndarray] = []
        groups: dict[tuple[Any, ...], list[tuple[int, ChunkRequest]]] = {}
        # Check and retrieve for every world before generating any: an error changes nothing.
        for i, backend in enumerate(backends):
            if not isinstance(backend, ShareVerseBackend):
                raise TypeError(
                    f"generate_many batches ShareVerseBackend instances only; backend {i} is "
                    f"{type(backend).__name__}"
                )
            request, frames = backend._begin_chunk(poses[i], active[i])
            out.append(frames)
            if request is not None:
                key = (id(backend.pipeline), backend.num_inference_steps, backend.progress)
                groups.setdefault(key, []).append((i, request))
        for members in groups.values():
            first = backends[members[0][0]]
            results = first.pipeline.generate_batch(
                [request for _, request in members],
                num_inference_steps=first.num_inference_steps,
                progress=first.progress,
            )
            for (i, _), result in zip(members, results, strict=True):
                backends[i]._end_chunk(poses[i], active[i], result, out[i])
        return out

    def _begin_chunk(
        self, poses: np.ndarray, active: np.ndarray
    ) -> tuple[ChunkRequest | None, np.ndarray]:
        """Check the chunk's inputs and retrieve memory: the pipeline request (``None`` when no
        agent is active) and the zeroed output frames."""
        if self._last_frames is None:
            raise RuntimeError("ShareVerseBackend.reset() must be called before generate()")
        poses = check_finite_poses(np.asarray(poses, dtype=np.float64), "poses")
        active = np.asarray(active, dtype=bool)
        if poses.shape != (len(self._last_frames), CHUNK_FRAMES, 3):
            raise ValueError(
                f"poses must have shape ({len(self._last_frames)}, {CHUNK_FRAMES}, 3); "
                f"got {poses.shape}"
            )
        out = np.zeros((len(poses), CHUNK_FRAMES - 1, *self.frame_shape), dtype=np.uint8)
        agents = np.flatnonzero(active)
        if len(agents) == 0:
            return None, out
        guide = NO_CACHE if self._no_cache else None
        self._pending_renders = None
        if self.model_sees_cache:
            start = time.perf_counter()
            renders = self.scene.render(poses[agents][:, 1:], agents)
            guide = cache_guide(self.scene, self._last_frames[agents], renders, poses, agents)
            self._pending_renders = renders
            self._pending_seconds = time.perf_counter() - start
        request = ChunkRequest(
            self._last_frames[agents],
            poses[agents],
            memory=self._retrieve(poses, agents),
            generator=self._generator,
            cache=guide,
        )
        return request, out

    def _end_chunk(
        self, poses: np.ndarray, active: np.ndarray, result: ChunkOutput, out: np.ndarray
    ) -> None:
        """Archive the chunk's frames, advance the clock and fill ``out`` for the active agents."""
        poses = np.asarray(poses, dtype=np.float64)
        agents = np.flatnonzero(np.asarray(active, dtype=bool))
        times = np.arange(self._time + 1, self._time + CHUNK_FRAMES)
        keep = np.flatnonzero(times % self.archive_stride == 0)
        if len(keep):
            self._archive(
                result.frame_latents[:, keep], poses[agents][:, 1:][:, keep], times[keep], agents
            )
        frames = result.frames
        timings = dict(result.timings)
        if self.scene is not None:
            start = time.perf_counter()
            new_poses = poses[:, 1:]
            renders = self._pending_renders or self.scene.render(new_poses[agents], agents)
            if self._pending_renders is not None:
                start -= self._pending_seconds  # rendered before denoising: count it here
            self._pending_renders = None
            if self.composite:
                frames = self.scene.composite(frames, renders, new_poses, agents)
            self.scene.archive(frames, renders, new_poses, times, agents)
            self.last_cache_renders = renders
            timings["scene_cache"] = time.perf_counter() - start
        self._time += CHUNK_FRAMES - 1
        out[agents] = frames
        self._last_frames = self._last_frames.copy()
        self._last_frames[agents] = frames[:, -1]
        self.last_timings = timings

    def _retrieve(self, poses: np.ndarray, agents: np.ndarray) -> MemoryInput | None:
        """Eq. 3 for every generating agent; ``None`` when any of them finds nothing."""
        if self.memory_source == "none":
            return None
        queries = sample_query_positions(poses[agents])
        found = [
            self.memory.retrieve(int(a), q, self.memory_source)
            for a, q in zip(agents, queries, strict=True)
        ]
        if any(r.count == 0 for r in found):
            return None
        latents = torch.stack([r.payload for r in found])
        return MemoryInput(latents, np.stack([r.poses for r in found]))

    def _archive(
        self,
        latents: torch.Tensor,
        poses: np.ndarray,
        times: Any,
        agents: np.ndarray | None = None,
    ) -> None:
        """Archive ``latents (A, K, C, h, w)`` taken at ``poses (A, K, 3)`` and ``times (K,)``."""
        agents = np.arange(latents.shape[0]) if agents is None else agents
        count = latents.shape[1]
        self.memory.add(
            latents.reshape(-1, *latents.shape[2:]).cpu(),
            poses.reshape(-1, 3),
            np.repeat(agents, count),
            np.tile(np.asarray(times, dtype=np.int64), len(agents)),
        )


def depth_estimator(depth_model: str | Path | bool | None) -> DepthEstimator | None:
    """The depth estimator a backend's ``depth_model`` names: ``None`` the shipped depth
    network (or no estimator when this install has none), a path its weights, ``False`` none."""
    if depth_model is False:
        return None
    try:
        from shareverse_env.models.depth import load_depth_model, predict_depth
    except ImportError:
        return None
    if depth_model is None or depth_model is True:
        try:
            model = load_depth_model(None)
        except FileNotFoundError:
            if depth_model is True:
                raise
            return None
    else:
        model = load_depth_model(depth_model)

    def estimate(frames: np.ndarray) -> np.ndarray:
        return predict_depth(model, frames)

    return estimate
