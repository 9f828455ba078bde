"""Backends: what turns every agent's planned camera poses for a chunk into that chunk's frames.

The env owns the bookkeeping (poses, routes, rewards); a backend only produces pixels. Two
backends share this interface:

* ``"world"`` (:class:`WorldBackend`): the exact renderer of the procedural town — ground truth,
  the data source for training, and a fast backend for prototyping policies.
* ``"shareverse"`` (:class:`~shareverse_env.generative_backend.ShareVerseBackend`): the
  generative ShareVerse model with its spatial memory (imported on first use: it loads torch
  and diffusers).

``"auto"`` (the env's default) picks ``"shareverse"`` when the package ships trained weights
(or a ``model`` is given) and ``"world"`` otherwise: see :func:`default_backend_name`.

Example:
    >>> import numpy as np
    >>> from shareverse_env.world.generator import generate_town
    >>> backend = WorldBackend(view_hw=(64, 96))
    >>> town = generate_town(0)
    >>> start = np.array([[0.0, 0.0, 0.0]])
    >>> backend.reset(town, "clear_noon", start).shape
    (1, 128, 192, 3)
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .geometry import CameraRig
from .world.renderer import Renderer
from .world.town import Town
from .world.vehicles import agent_colour
from .world.weather import Weather, get_weather


class Backend(ABC):
    """Produces tiled 2×2 frames for every agent of a chunk.

    Subclasses implement :meth:`reset` (the frames at the start poses of an episode) and
    :meth:`generate` (the new frames of one chunk). Frames are uint8 ``(2H, 2W, 3)`` with views
    ``[[front, rear], [left, right]]``.
    """

    name: str = "base"
    renders_frames_independently: bool = False
    """Whether :meth:`generate` renders each frame from its poses alone, so that it may be given
    any subset of a chunk's frames (the env's ``chunk_frames="last"`` then passes only the first
    and last poses). ``False`` for a generative backend, which must roll the whole chunk out."""

    def __init__(self, view_hw: tuple[int, int] = (64, 96), rig: CameraRig | None = None) -> None:
        height, width = view_hw
        if height <= 0 or width <= 0 or height % 16 or width % 16:
            raise ValueError(f"view_hw must be positive multiples of 16; got {view_hw}")
        self.view_hw = (int(height), int(width))
        self.rig = rig or CameraRig()

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """Shape of one tiled frame."""
        return (2 * self.view_hw[0], 2 * self.view_hw[1], 3)

    @abstractmethod
    def reset(
        self,
        town: Town,
        weather: str | Weather,
        poses: np.ndarray,
        options: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """Start an episode in ``town`` with agents at ``poses (A, 3)``; return ``(A, 2H, 2W, 3)``."""

    @abstractmethod
    def generate(self, poses: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Frames of one chunk.

        Args:
            poses: ``(A, F, 3)`` every agent's planned poses; frame 0 is the conditioning frame
                (the pose of the previous chunk's last frame), frames ``1..F-1`` are new.
            active: ``(A,)`` bool; inactive agents' cars still stand in the world at their poses,
                but their views need not be produced.

        Returns:
            ``(A, F-1, 2H, 2W, 3)`` uint8; rows of inactive agents are unspecified (zeros).
        """

    @classmethod
    def generate_many(
        cls,
        backends: Sequence[Backend],
        poses: Sequence[np.ndarray],
        active: Sequence[np.ndarray],
    ) -> list[np.ndarray]:
        """:meth:`generate` for several independent worlds (one backend each), in one call.

        The default steps them in turn; a backend that can batch worlds (the generative one)
        overrides it. ``poses[i]`` and ``active[i]`` are backend ``i``'s arguments.
        """
        return [b.generate(p, a) for b, p, a in zip(backends, poses, active, strict=True)]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (nothing for the world backend)."""


class WorldBackend(Backend):
    """Ground-truth backend: the exact renderer of the procedural town.

    Renderers are cached per (town seed, weather) so that resets in the same town are cheap.
    """

    name = "world"
    renders_frames_independently = True

    def __init__(
        self,
        view_hw: tuple[int, int] = (64, 96),
        rig: CameraRig | None = None,
        max_distance: float = 250.0,
    ) -> None:
        super().__init__(view_hw, rig)
        self.max_distance = max_distance
        self._renderer: Renderer | None = None
        self._key: tuple[Any, ...] | None = None
        self._colours: np.ndarray | None = None

    @property
    def renderer(self) -> Renderer:
        if self._renderer is None:
            raise RuntimeError("WorldBackend.reset() must be called before rendering")
        return self._renderer

    def reset(
        self,
        town: Town,
        weather: str | Weather,
        poses: np.ndarray,
        options: dict[str, Any] | None = None,
    ) -> np.ndarray:
        weather = get_weather(weather)
        key = (id(town), town.seed, weather)
        if key != self._key:
            self._renderer = Renderer(
                town, weather, rig=self.rig, view_hw=self.view_hw, max_distance=self.max_distance
            )
            self._key = key
        self._colours = np.array([agent_colour(k) for k in range(len(poses))], dtype=np.float32)
        return self._render(np.asarray(poses, dtype=np.float64)[:, None, :])[:, 0]

    def generate(self, poses: np.ndarray, active: np.ndarray) -> np.ndarray:
        poses = np.asarray(poses, dtype=np.float64)
        out = np.zeros((poses.shape[0], poses.shape[1] - 1, *self.frame_shape), dtype=np.uint8)
        active = np.asarray(active, dtype=bool)
        if active.any():
            out[active] = self._render(poses[:, 1:], viewers=np.flatnonzero(active))
        return out

    def _render(self, poses: np.ndarray, viewers: np.ndarray | None = None) -> np.ndarray:
        """Views of ``viewers`` (default all) at every frame of ``poses (A, F, 3)``."""
        num_agents, frames = poses.shape[:2]
        viewers = np.arange(num_agents) if viewers is None else viewers
        # Viewer batch: one row per (viewer, frame); every agent's car at that frame is drawn.
        viewer_poses = poses[viewers].reshape(-1, 3)
        cars = np.broadcast_to(
            poses.transpose(1, 0, 2)[None], (len(viewers), frames, num_agents, 3)
        ).reshape(-1, num_agents, 3)
        hide = np.repeat(viewers, frames)
        result = self.renderer.render(viewer_poses, cars=cars, car_colours=self._colours, hide=hide)
        return result.rgb.reshape(len(viewers), frames, *self.frame_shape)


BACKENDS: dict[str, type[Backend] | None] = {"world": WorldBackend, "shareverse": None}
"""Backends by name; ``None`` marks one imported on first use."""


def make_backend(name: str | Backend, **kwargs: Any) -> Backend:
    """Build a backend from its name (or return a ready :class:`Backend` instance as is)."""
    if isinstance(name, Backend):
        return name
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {sorted(BACKENDS)}")
    if BACKENDS[name] is None:
        from .generative_backend import ShareVerseBackend

        BACKENDS["shareverse"] = ShareVerseBackend
    return BACKENDS[name](**kwargs)


def shipped_weights_folder() -> Path | None:
    """The trained pipeline folder shipped in the package, or ``None`` when this install has none.

    Found without importing torch: the folder lives inside ``shareverse_env.models``.
    """
    spec = importlib.util.find_spec("shareverse_env.models")
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "weights" / "small"
        if (folder / "pipeline.json").is_file():
            return folder
    return None


def default_backend_name(model: Any = None) -> str:
    """What ``backend="auto"`` means: the generative backend when there is a model to run
    (``model`` given, or shipped weights installed), else the exact renderer.

    >>> default_backend_name(model="tiny")
    'shareverse'
    """
    if model is not None or shipped_weights_folder() is not None:
        return "shareverse"
    return "world"
