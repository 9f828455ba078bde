"""The generative backend: the ShareVerse model and its spatial memory produce every frame.

Each :meth:`ShareVerseBackend.generate` call runs the paper's loop for one chunk, in named
stages over one :class:`~shareverse_env.backends.generative.state.ChunkState`:

1. :meth:`~ShareVerseBackend._start_chunk`: check the plan, pick the active agents;
2. :meth:`~ShareVerseBackend._render_cache_guide`: for a model that sees the scene cache,
   render the cache into the planned cameras and build its input (the cache guide);
3. :meth:`~ShareVerseBackend._retrieve_memory`: four query positions on every agent's planned
   trajectory retrieve the nearest archived frames from the shared memory (Eq. 3);
4. sample: the pipeline generates all agents' 28 new frames at once conditioned on their last
   frames, the planned camera raymaps, the retrieved memory (and the cache guide); the chunks of
   several worlds are batched here (:meth:`~ShareVerseBackend.generate_many`);
5. :meth:`~ShareVerseBackend._archive_memory`: every new frame's latent is archived with its
   pose, agent and time;
6. :meth:`~ShareVerseBackend._composite_and_cache`: the cache render is composited over the
   frames, whose new content enters the cache;
7. :meth:`~ShareVerseBackend._advance`: the clock moves on; the last frames condition the next
   chunk.

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

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from shareverse_env.backends import Backend, FirstFrames
from shareverse_env.backends.generative.colour import anchor_colour, view_channel_means
from shareverse_env.backends.generative.config import GenerativeConfig
from shareverse_env.backends.generative.depth import depth_estimator
from shareverse_env.backends.generative.state import Checkpoint, ChunkState
from shareverse_env.core.cache_guide import NO_CACHE, CacheGuide
from shareverse_env.core.geometry import CHUNK_FRAMES, CameraRig, check_finite_poses
from shareverse_env.memory import SpatialMemory, sample_query_positions
from shareverse_env.models.loading import load_model
from shareverse_env.models.pipeline import (
    ChunkOutput,
    ChunkRequest,
    MemoryInput,
    ShareVersePipeline,
)
from shareverse_env.scene.cache import CacheRender
from shareverse_env.scene.composite import SceneCompositor
from shareverse_env.scene.guide import cache_guide
from shareverse_env.world.town import Town
from shareverse_env.world.weather import Weather


class ShareVerseBackend(Backend):
    """Frames from the ShareVerse model with a shared spatial memory and scene cache.

    Args:
        view_hw: must equal the model's view size when given (the weights serve one size).
        rig: must equal the model's camera rig when given.
        model: ``None`` (shipped weights), a config name (random weights), a pipeline folder,
            a local diffusers CogVideoX-I2V folder, or a
            :class:`~shareverse_env.models.pipeline.ShareVersePipeline`.
        config: the settings by part (:class:`~shareverse_env.backends.generative.config.
            GenerativeConfig`), in place of ``options``.
        **options: the env's ``backend_options``, checked by :meth:`~shareverse_env.backends.
            generative.config.GenerativeConfig.from_options` before anything is loaded:
            ``memory_source``, ``memory_capacity``, ``archive_stride`` (memory);
            ``scene_cache``, ``composite``, ``cache_capacity``, ``cache_eviction``,
            ``cache_max_footprint``, ``cache_buffers``, ``depth_model`` (scene cache);
            ``num_inference_steps``, ``seed``, ``progress`` (sampler); ``device``,
            ``allow_random_full_size`` (model). Each is described on its config field.

    Example:
        >>> backend = ShareVerseBackend(model="tiny", memory_source="own", scene_cache=False)
        >>> backend.config.memory.source, backend.scene is None
        ('own', True)
        >>> ShareVerseBackend(model="tiny", memory_sorce="own")
        Traceback (most recent call last):
        ...
        ValueError: unknown backend option 'memory_sorce' (did you mean 'memory_source'?); ...
    """

    name = "shareverse"
    takes_model = True
    default_view_hw = None  # the model's own
    renders_frames_independently = False
    shares_weights = True
    reset_options = ("images",)

    @classmethod
    def load_shared_model(cls, model: Any, options: Mapping[str, Any]) -> ShareVersePipeline:
        """Load ``model`` once for several backends (weights are read-only at inference), with
        the ``device`` and ``seed`` of ``options`` (checked) as the constructor would."""
        config = GenerativeConfig.from_options(options)
        if isinstance(model, ShareVersePipeline):
            return model
        return cls._load(model, config)

    @staticmethod
    def _load(model: Any, config: GenerativeConfig) -> ShareVersePipeline:
        return load_model(
            model,
            device=config.model.device,
            seed=config.sampler.seed,
            allow_random_full_size=config.model.allow_random_full_size,
        )

    def __init__(
        self,
        view_hw: tuple[int, int] | None = None,
        rig: CameraRig | None = None,
        model: str | ShareVersePipeline | None = None,
        config: GenerativeConfig | None = None,
        **options: Any,
    ) -> None:
        if config is not None and options:
            raise ValueError(f"pass config= or backend options, not both; got {sorted(options)}")
        # Checked before the model loads: a typo costs nothing.
        config = GenerativeConfig.from_options(options) if config is None else config
        pipe = self._load(model, config)
        if view_hw is not None and tuple(view_hw) != pipe.view_hw:
            raise ValueError(
                f"view_hw {tuple(view_hw)} cannot be served: the model generates {pipe.view_hw} "
                "views; leave view_hw unset to use the model's"
            )
        if rig is not None and rig != pipe.rig:
            raise ValueError(f"the env's camera rig {rig} differs from the model's {pipe.rig}")
        super().__init__(pipe.view_hw, pipe.rig)
        self.config = config
        """The backend's settings by part."""
        self.pipeline = pipe
        self.memory_source = config.memory.source
        # fp16 halves the archive; latents are O(1) values, so nothing is lost that matters.
        self.memory = SpatialMemory(capacity=config.memory.capacity, storage_dtype=torch.float16)
        self.archive_stride = config.memory.archive_stride
        self.num_inference_steps = config.sampler.num_inference_steps
        self.progress = config.sampler.progress
        self.last_timings: dict[str, float] = {}
        self.start_frames: FirstFrames | None = None
        """The current episode's first frames as given to :meth:`reset` (``depth`` ``None``
        when unknown, as for ``options["images"]``)."""
        self._conditioning_all: np.ndarray | None = None  # (A, 2H, 2W, 3); None before reset
        self._time = 0
        self._generator = torch.Generator().manual_seed(config.sampler.seed)
        cache = config.scene_cache
        self.composite = cache.composite
        self.scene: SceneCompositor | None = None
        """The episode's scene cache and compositor (``None`` without ``scene_cache``)."""
        if cache.enabled:
            self.scene = SceneCompositor(
                pipe.rig,
                pipe.view_hw,
                capacity=cache.capacity,
                eviction=cache.eviction,
                max_footprint=cache.max_footprint,
                buffers_per_agent=cache.buffers,
                depth_estimator=depth_estimator(cache.depth_model),
            )
        self.last_cache_renders: list[CacheRender] = []
        """The scene cache's renders of the last chunk, one per generating agent."""
        takes_cache = bool(pipe.transformer.config.cache_in_channels)
        self.model_sees_cache = takes_cache and cache.enabled
        """The model takes the cache's renders as input (``cache_in_channels > 0``): they are
        rendered before the chunk is denoised, not only composited after. A cache model run
        without a scene cache (the paper's mode) gets ``NO_CACHE``, the all-zero input its
        training drops to."""
        self._no_cache = takes_cache and not cache.enabled
        self.colour_anchor = config.sampler.colour_anchor
        self._anchor_means: np.ndarray | None = None  # (A, 4, 3): the first frames' palette

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
        every = np.arange(len(poses))
        self._archive_latents(
            self.pipeline.encode_frames(frames)[:, None], poses[:, None], [0], every
        )
        if self.scene is not None:
            self.scene.reset(frames, start.depth, poses)
        self.last_cache_renders = []
        self._conditioning_all = frames
        self._anchor_means = view_channel_means(frames)
        self.start_frames = start
        return frames

    def generate(self, poses: np.ndarray, active: np.ndarray) -> np.ndarray:
        return self.generate_many([self], [poses], [active])[0]

    @property
    def conditioning_frames(self) -> np.ndarray:
        """A copy of every agent's conditioning frame for the next chunk, uint8
        ``(A, 2H, 2W, 3)``: the last frame generated (or given at reset)."""
        if self._conditioning_all is None:
            raise RuntimeError("ShareVerseBackend.reset() must be called first")
        return self._conditioning_all.copy()

    def condition_on(self, frames: np.ndarray) -> None:
        """Make ``frames`` (uint8 ``(A, 2H, 2W, 3)``) the agents' conditioning frames for the next
        chunk in place of their own last frames; the memory archive is left as it is.

        The quality evaluation's ``teacher_forced`` variant passes the true frames here at
        every chunk, which separates the model's one-chunk error from the error that compounds
        through its own outputs. On bad input nothing changes.
        """
        if self._conditioning_all is None:
            raise RuntimeError("ShareVerseBackend.reset() must be called first")
        expected = self._conditioning_all.shape
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.shape != expected:
            raise ValueError(
                f"conditioning frames must be uint8 {expected} (one tiled frame per agent); "
                f"got {frames.dtype} {frames.shape}"
            )
        self._conditioning_all = frames.copy()

    def checkpoint(self) -> Checkpoint:
        """A copy of the state between chunks (:meth:`branch` returns to it)."""
        if self._conditioning_all is None:
            raise RuntimeError("ShareVerseBackend.reset() must be called first")
        return Checkpoint.take(
            self.memory,
            self._conditioning_all,
            self._time,
            self.last_timings,
            self._generator,
            None if self.scene is None else self.scene.cache,
            self.last_cache_renders,
        )

    def restore(self, saved: Checkpoint) -> None:
        """Return to the state of :meth:`checkpoint` (it may be restored only once: the backend
        takes its memory and scene cache over)."""
        self.memory = saved.memory
        self._conditioning_all = saved.conditioning_all
        self._time = saved.time
        self.last_timings = saved.timings
        self._generator.set_state(saved.generator_state)
        if self.scene is not None:
            self.scene.cache = saved.scene_cache
        self.last_cache_renders = saved.cache_renders_active

    @contextmanager
    def branch(self) -> Iterator[ShareVerseBackend]:
        """Generate inside the ``with`` block, then return to the state before it.

        The memory archive, the conditioning frames, the clock, the noise generator and the
        scene cache are restored on exit (:class:`~shareverse_env.backends.generative.state.
        Checkpoint`), so a chunk generated in the block leaves no trace and the next chunk
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
        saved = self.checkpoint()
        try:
            yield self
        finally:
            self.restore(saved)

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
        for i, backend in enumerate(backends):
            if not isinstance(backend, ShareVerseBackend):
                raise TypeError(
                    f"generate_many batches ShareVerseBackend instances only; backend {i} is "
                    f"{type(backend).__name__}"
                )
        # Check and prepare every world before sampling any: an error changes nothing.
        chunks = [b._prepare_chunk(p, a) for b, p, a in zip(backends, poses, active, strict=True)]
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, (backend, chunk) in enumerate(zip(backends, chunks, strict=True)):
            if chunk.request is not None:
                key = (id(backend.pipeline), backend.num_inference_steps, backend.progress)
                groups.setdefault(key, []).append(i)
        for members in groups.values():
            for i, result in zip(members, cls._sample(backends, chunks, members), strict=True):
                backends[i]._finish_chunk(chunks[i], result)
        return [chunk.out_all for chunk in chunks]

    # ------------------------------------------------------------------------------ stages

    def _prepare_chunk(self, poses: np.ndarray, active: np.ndarray) -> ChunkState:
        """Stages before sampling: the checked chunk, its cache guide and its memory, and the
        sampler's request (none when no agent is active)."""
        chunk = self._start_chunk(poses, active)
        if len(chunk.agents) == 0:
            return chunk
        guide = self._render_cache_guide(chunk)
        chunk.request = ChunkRequest(
            chunk.conditioning_active,
            chunk.poses_active,
            memory=self._retrieve_memory(chunk),
            generator=self._generator,
            cache=guide,
        )
        return chunk

    @staticmethod
    def _sample(
        backends: Sequence[ShareVerseBackend], chunks: Sequence[ChunkState], members: list[int]
    ) -> list[ChunkOutput]:
        """The sampling stage of the ``members`` chunks, which share a pipeline and settings."""
        first = backends[members[0]]
        return first.pipeline.generate_batch(
            [chunks[i].request for i in members],
            num_inference_steps=first.num_inference_steps,
            progress=first.progress,
        )

    def _finish_chunk(self, chunk: ChunkState, result: ChunkOutput) -> None:
        """Stages after sampling: archive, composite and cache, advance."""
        self._archive_memory(chunk, result)
        timings = dict(result.timings)
        frames_active = result.frames
        if self.colour_anchor > 0:
            reference = self._anchor_means[chunk.agents]
            frames_active = anchor_colour(frames_active, reference, self.colour_anchor)
        frames_active = self._composite_and_cache(chunk, frames_active, timings)
        self._advance(chunk, frames_active, timings)

    def _start_chunk(self, poses: np.ndarray, active: np.ndarray) -> ChunkState:
        """Check the chunk's inputs (the one finite-pose check of a chunk: every later stage
        reads these poses)."""
        if self._conditioning_all is None:
            raise RuntimeError("ShareVerseBackend.reset() must be called before generate()")
        poses = check_finite_poses(np.asarray(poses, dtype=np.float64), "poses")
        active = np.asarray(active, dtype=bool)
        if poses.shape != (len(self._conditioning_all), CHUNK_FRAMES, 3):
            raise ValueError(
                f"poses must have shape ({len(self._conditioning_all)}, {CHUNK_FRAMES}, 3); "
                f"got {poses.shape}"
            )
        return ChunkState.start(poses, active, self._conditioning_all)

    def _render_cache_guide(self, chunk: ChunkState) -> CacheGuide | None:
        """The scene cache's input to a model that sees it (rendered now, before sampling, and
        kept on ``chunk`` for the composite); ``NO_CACHE`` for a cache model without a cache;
        ``None`` for a model without the input."""
        if not self.model_sees_cache:
            return NO_CACHE if self._no_cache else None
        start = time.perf_counter()
        renders = self.scene.render(chunk.new_poses_active, chunk.agents)
        guide = cache_guide(
            self.scene, chunk.conditioning_active, renders, chunk.poses_all, chunk.agents
        )
        chunk.renders_active = renders
        chunk.cache_seconds = time.perf_counter() - start
        return guide

    def _retrieve_memory(self, chunk: ChunkState) -> MemoryInput | None:
        """Eq. 3 for every active agent; ``None`` when any of them finds nothing."""
        if self.memory_source == "none":
            return None
        queries = sample_query_positions(chunk.poses_active)
        found = [
            self.memory.retrieve(int(a), q, self.memory_source)
            for a, q in zip(chunk.agents, queries, strict=True)
        ]
        if any(r.count == 0 for r in found):
            return None
        latents = torch.stack([r.payload for r in found])
        return MemoryInput(latents, np.stack([r.poses for r in found]))

    def _archive_memory(self, chunk: ChunkState, result: ChunkOutput) -> None:
        """Archive the latents of the chunk's new frames at every ``archive_stride``-th time."""
        times = self._new_times()
        keep = np.flatnonzero(times % self.archive_stride == 0)
        if len(keep):
            self._archive_latents(
                result.frame_latents[:, keep],
                chunk.new_poses_active[:, keep],
                times[keep],
                chunk.agents,
            )

    def _composite_and_cache(
        self, chunk: ChunkState, frames_active: np.ndarray, timings: dict[str, float]
    ) -> np.ndarray:
        """The active agents' frames with the cache render composited over them (unchanged
        without a scene cache or ``composite``); their new content enters the cache."""
        if self.scene is None:
            return frames_active
        start = time.perf_counter()
        renders = chunk.renders_active
        if (
            renders is None
        ):  # a model without the cache input: render the cache now, for the composite
            renders = self.scene.render(chunk.new_poses_all[chunk.agents], chunk.agents)
        else:
            start -= chunk.cache_seconds  # rendered before sampling: count it here
        new_poses_all = chunk.new_poses_all
        if self.composite:
            frames_active = self.scene.composite(
                frames_active, renders, new_poses_all, chunk.agents
            )
        self.scene.archive(frames_active, renders, new_poses_all, self._new_times(), chunk.agents)
        self.last_cache_renders = renders
        timings["scene_cache"] = time.perf_counter() - start
        return frames_active

    def _advance(
        self, chunk: ChunkState, frames_active: np.ndarray, timings: dict[str, float]
    ) -> None:
        """Move the clock on, return the frames and condition the next chunk on the last."""
        self._time += CHUNK_FRAMES - 1
        chunk.out_all[chunk.agents] = frames_active
        self._conditioning_all = self._conditioning_all.copy()
        self._conditioning_all[chunk.agents] = frames_active[:, -1]
        self.last_timings = timings

    def _new_times(self) -> np.ndarray:
        """``(F-1,)`` the times of the current chunk's new frames."""
        return np.arange(self._time + 1, self._time + CHUNK_FRAMES)

    def _archive_latents(
        self, latents: torch.Tensor, poses: np.ndarray, times: Any, agents: np.ndarray
    ) -> None:
        """Archive ``latents (n, K, C, h, w)`` of ``agents (n,)`` taken at ``poses (n, K, 3)``
        and ``times (K,)``."""
        count = latents.shape[1]
        self.memory.add(
            latents.reshape(-1, *latents.shape[2:]).cpu(),
            poses.reshape(-1, 3),
            np.repeat(agents, count),
            np.tile(np.asarray(times, dtype=np.int64), len(agents)),
        )
