"""The generative backend (``backend="shareverse"``): the ShareVerse model, its spatial memory
and the shared scene cache produce every frame.

* :mod:`.backend`: :class:`ShareVerseBackend`, one chunk as a sequence of named stages;
* :mod:`.config`: the typed settings by part, read from the env's ``backend_options``
  (:class:`GenerativeConfig`);
* :mod:`.state`: what a chunk carries between its stages (:class:`ChunkState`) and what
  ``branch()`` saves (:class:`Checkpoint`);
* :mod:`.depth`: the depth network that lifts generated frames into the scene cache.

Example:
    >>> GenerativeConfig.from_options({"cache_capacity": 8}).scene_cache.capacity
    8
"""

from shareverse_env.backends.generative.backend import ShareVerseBackend
from shareverse_env.backends.generative.config import (
    DEFAULT_MEMORY_CAPACITY,
    OPTIONS,
    BackendOptionTypeError,
    GenerativeConfig,
    MemoryConfig,
    ModelConfig,
    SamplerConfig,
    SceneCacheConfig,
)
from shareverse_env.backends.generative.depth import DepthModelUnavailableError, depth_estimator
from shareverse_env.backends.generative.state import Checkpoint, ChunkState

__all__ = [
    "DEFAULT_MEMORY_CAPACITY",
    "OPTIONS",
    "BackendOptionTypeError",
    "Checkpoint",
    "ChunkState",
    "DepthModelUnavailableError",
    "GenerativeConfig",
    "MemoryConfig",
    "ModelConfig",
    "SamplerConfig",
    "SceneCacheConfig",
    "ShareVerseBackend",
    "depth_estimator",
]
