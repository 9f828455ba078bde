"""Typed settings of the generative backend, one frozen dataclass per part, read from the env's
``backend_options``.

``backend_options`` is a flat dict of keywords (``{"memory_source": "own", "cache_capacity":
16}``); :meth:`GenerativeConfig.from_options` checks every key and type before anything is built
or loaded, so that a typo or a wrong type is named with what was expected instead of surfacing
as a bare ``TypeError`` from a constructor or an ``int()`` deep inside the scene cache.

Example:
    >>> config = GenerativeConfig.from_options({"memory_source": "own", "cache_capacity": 16})
    >>> config.memory.source, config.scene_cache.capacity, config.sampler.seed
    ('own', 16, 0)
    >>> GenerativeConfig.from_options({"scene_cach": False})
    Traceback (most recent call last):
    ...
    ValueError: unknown backend option 'scene_cach' (did you mean 'scene_cache'?); known options: ...
    >>> try:
    ...     GenerativeConfig.from_options({"cache_capacity": "lots"})
    ... except TypeError as err:
    ...     print(err)
    backend_options['cache_capacity']: expected int, got str 'lots'
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shareverse_env.memory import SOURCES
from shareverse_env.scene.cache import DEFAULT_CACHE_CAPACITY, MAX_FOOTPRINT

DEFAULT_MEMORY_CAPACITY = 4096
"""Frames the spatial memory keeps by default. An episode's archive grows by 28 frames per agent
per chunk; bounded, memory stays flat over any episode length, and the quality runner's episodes
(at most 10 chunks, 560 frames) never reach the bound, so their retrieval is unchanged."""

MEMORY_SOURCES: tuple[str, ...] = (*SOURCES, "none")
"""Where a chunk's memory is retrieved from: the spatial memory's sources, or ``"none"``."""


class BackendOptionTypeError(TypeError, ValueError):
    """A backend option of the wrong type: a ``TypeError``, and a ``ValueError`` too, so that
    one ``except ValueError`` catches every option error."""


@dataclass(frozen=True)
class MemoryConfig:
    """The paper's spatial memory (Eq. 3).

    Attributes:
        source: option ``memory_source``: ``"all"`` (pooled over agents, the paper's shared
            world), ``"others"`` or ``"own"``; ``"none"`` generates without memory.
        capacity: option ``memory_capacity``: bound on archived frames (oldest evicted first;
            about 25 MB of fp16 latents for the shipped model at the default: the last 73
            chunks of two agents); ``None``: unbounded.
        archive_stride: option ``archive_stride``: archive every k-th new frame (1: every
            frame, as in the paper).

    Example:
        >>> MemoryConfig(source="own").archive_stride
        1
    """

    source: str = "all"
    capacity: int | None = DEFAULT_MEMORY_CAPACITY
    archive_stride: int = 1

    def __post_init__(self) -> None:
        if self.source not in MEMORY_SOURCES:
            raise ValueError(f"memory_source must be one of {MEMORY_SOURCES}; got {self.source!r}")
        if self.archive_stride < 1:
            raise ValueError(f"archive_stride must be >= 1; got {self.archive_stride}")


@dataclass(frozen=True)
class SceneCacheConfig:
    """The shared 3D scene cache beside the paper's memory (docs/scene_cache.md).

    Attributes:
        enabled: option ``scene_cache``: keep the cache (every agent's first frame lifted with
            its depth, rendered into every planned camera); ``False``: the paper's mechanism
            alone.
        composite: option ``composite``: show the cache render wherever it is valid (other
            cars' boxes excepted) and the model's frame elsewhere; ``False`` keeps the cache
            without touching the frames.
        capacity: option ``cache_capacity``: buffers the cache keeps.
        eviction: option ``cache_eviction``: ``"coverage"`` (drop the buffers covering least
            of the cars' current views) or ``"oldest"`` (first in, first out).
        max_footprint: option ``cache_max_footprint``: largest splat of the renders in pixels,
            an integer or a ``(width, height)`` pair (docs/scene_cache.md#splat-size).
        buffers: option ``cache_buffers``: buffers rendered into each agent's chunk (most
            coverage first).
        depth_model: option ``depth_model``: depth network for frames whose depth is unknown
            (user images, new content of generated frames): ``None`` the shipped one, a weights
            path, or ``False`` none (only frames with exact depth enter the cache). A depth
            network that was asked for and cannot be loaded is an error
            (:func:`~shareverse_env.backends.generative.depth_estimator`).

    Example:
        >>> SceneCacheConfig().capacity == DEFAULT_CACHE_CAPACITY
        True
    """

    enabled: bool = True
    composite: bool = True
    capacity: int = DEFAULT_CACHE_CAPACITY
    eviction: str = "coverage"
    max_footprint: int | tuple[int, int] = MAX_FOOTPRINT
    buffers: int = 4
    depth_model: str | Path | bool | None = None


@dataclass(frozen=True)
class SamplerConfig:
    """The diffusion sampler.

    Attributes:
        num_inference_steps: option ``num_inference_steps``: sampler steps (``None``: the
            pipeline's).
        seed: option ``seed``: seed of the noise generator (and of random weights for a config
            name).
        progress: option ``progress``: show the denoising progress bar.
        colour_anchor: option ``colour_anchor``: move each generated view's channel means this
            fraction of the way to the episode's first frame's (0: off, 1, the default: the
            first frame's means; :mod:`~shareverse_env.backends.generative.colour`). On by
            default since 2026-12-08: over 20 expert-driven chunks it halves the colour drift
            and adds 0.8-1.2 dB from chunk 8 on (docs/long_horizon.md).

    Example:
        >>> SamplerConfig(num_inference_steps=4).seed
        0
    """

    num_inference_steps: int | None = None
    seed: int = 0
    progress: bool = False
    colour_anchor: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.colour_anchor <= 1.0:
            raise ValueError(f"colour_anchor must be in [0, 1]; got {self.colour_anchor}")


@dataclass(frozen=True)
class ModelConfig:
    """Where and how the model is loaded.

    Attributes:
        device: option ``device``: torch device of the model (``None``: the loader's choice).
        allow_random_full_size: option ``allow_random_full_size``: build a full-size config
            name (``"cogvideox-5b-i2v"``) with random weights even on the CPU (refused by
            default: tens of GB of noise).

    Example:
        >>> ModelConfig().allow_random_full_size
        False
    """

    device: str | torch.device | None = None
    allow_random_full_size: bool = False


# ------------------------------------------------------------------------------ option checks


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _is_int(value: Any) -> bool:
    # bool is an int subclass in Python; as a count or a seed it is always a mistake.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _checked_int(value: Any) -> int | type[_Bad]:
    return int(value) if _is_int(value) else _Bad


def _optional_int(value: Any) -> int | type[_Bad] | None:
    return None if value is None else _checked_int(value)


def _float(value: Any) -> float | type[_Bad]:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return _Bad
    return float(value)


def _bool(value: Any) -> bool | type[_Bad]:
    return bool(value) if isinstance(value, bool | np.bool_) else _Bad


def _str(value: Any) -> str | type[_Bad]:
    return value if isinstance(value, str) else _Bad


def _device(value: Any) -> str | torch.device | type[_Bad] | None:
    return value if value is None or isinstance(value, str | torch.device) else _Bad


def _footprint(value: Any) -> int | tuple[int, int] | type[_Bad]:
    if _is_int(value):
        return int(value)
    if isinstance(value, tuple | list) and len(value) == 2 and all(_is_int(v) for v in value):
        return (int(value[0]), int(value[1]))
    return _Bad


def _depth_model(value: Any) -> str | Path | bool | type[_Bad] | None:
    if value is None or isinstance(value, str | Path):
        return value
    return bool(value) if isinstance(value, bool | np.bool_) else _Bad


class _Bad:
    """Marks a value of the wrong type (``None`` is a valid value of some options)."""


@dataclass(frozen=True)
class _Option:
    part: str  # the GenerativeConfig field holding it
    field: str  # the field of that part
    expected: str  # what the error says was expected
    convert: Callable[[Any], Any]  # the value, or _Bad


OPTIONS: dict[str, _Option] = {
    "memory_source": _Option("memory", "source", "str", _str),
    "memory_capacity": _Option("memory", "capacity", "int or None", _optional_int),
    "archive_stride": _Option("memory", "archive_stride", "int", _checked_int),
    "scene_cache": _Option("scene_cache", "enabled", "bool (True or False)", _bool),
    "composite": _Option("scene_cache", "composite", "bool (True or False)", _bool),
    "cache_capacity": _Option("scene_cache", "capacity", "int", _checked_int),
    "cache_eviction": _Option("scene_cache", "eviction", "str", _str),
    "cache_max_footprint": _Option(
        "scene_cache", "max_footprint", "int or a (width, height) pair of ints", _footprint
    ),
    "cache_buffers": _Option("scene_cache", "buffers", "int", _checked_int),
    "depth_model": _Option(
        "scene_cache",
        "depth_model",
        "None, False, True or a weights path (str or Path)",
        _depth_model,
    ),
    "num_inference_steps": _Option("sampler", "num_inference_steps", "int or None", _optional_int),
    "seed": _Option("sampler", "seed", "int", _checked_int),
    "progress": _Option("sampler", "progress", "bool (True or False)", _bool),
    "colour_anchor": _Option("sampler", "colour_anchor", "float in [0, 1]", _float),
    "device": _Option("model", "device", "str, torch.device or None", _device),
    "allow_random_full_size": _Option("model", "allow_random_full_size", "bool", _bool),
}
"""Every ``backend_options`` key of the generative backend: where it goes in
:class:`GenerativeConfig` and what type it takes."""


@dataclass(frozen=True)
class GenerativeConfig:
    """All settings of a :class:`~shareverse_env.backends.generative.ShareVerseBackend`, by part.

    Build it from the env's flat ``backend_options`` with :meth:`from_options` (every key and
    type checked); the option names are the keys of :data:`OPTIONS`.

    Example:
        >>> config = GenerativeConfig.from_options({"scene_cache": False, "seed": 3})
        >>> config.scene_cache.enabled, config.sampler.seed, config.memory.source
        (False, 3, 'all')
        >>> try:  # a bool is no int here
        ...     GenerativeConfig.from_options({"seed": True})
        ... except TypeError as err:
        ...     print(err)
        backend_options['seed']: expected int, got bool True
    """

    memory: MemoryConfig = field(default_factory=MemoryConfig)
    scene_cache: SceneCacheConfig = field(default_factory=SceneCacheConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None = None) -> GenerativeConfig:
        """The config of ``options`` (``backend_options``; defaults for keys left out).

        Raises:
            ValueError: an unknown key (with the closest known ones and the full list), or a
                value out of range (``memory_source``, ``archive_stride``).
            BackendOptionTypeError: a value of the wrong type, naming the option and the type
                it takes (a ``TypeError`` and a ``ValueError``).
        """
        options = dict(options or {})
        unknown = [key for key in options if key not in OPTIONS]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(str(key), list(OPTIONS), n=3)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            raise ValueError(
                f"unknown backend option {key!r}{hint}; known options: {', '.join(OPTIONS)}"
            )
        parts: dict[str, dict[str, Any]] = {f.name: {} for f in fields(cls)}
        for key, value in options.items():
            option = OPTIONS[key]
            converted = option.convert(value)
            if converted is _Bad:
                raise BackendOptionTypeError(
                    f"backend_options[{key!r}]: expected {option.expected}, got {_describe(value)}"
                )
            parts[option.part][option.field] = converted
        types = {f.name: f.default_factory for f in fields(cls)}
        return cls(**{name: types[name](**values) for name, values in parts.items()})

    def to_options(self) -> dict[str, Any]:
        """The flat ``backend_options`` of this config (every key; ``from_options`` inverts it).

        >>> GenerativeConfig.from_options(GenerativeConfig().to_options()) == GenerativeConfig()
        True
        """
        return {
            key: getattr(getattr(self, option.part), option.field)
            for key, option in OPTIONS.items()
        }
