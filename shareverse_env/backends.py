"""Backends: what turns every agent's planned camera poses for a chunk into that chunk's frames.

The env owns the bookkeeping (poses, routes, rewards) and the town; a backend only produces
pixels. Backends are a registry of lazily imported classes (:data:`BACKENDS`), so that
listing them imports nothing heavy:

* ``"world"`` (:class:`WorldBackend`): the exact renderer of the procedural town — ground truth,
  the data source for training, and a fast backend for prototyping policies.
* ``"shareverse"`` (:class:`~shareverse_env.generative_backend.ShareVerseBackend`): the
  generative ShareVerse model with its spatial memory (imported on first use: it loads torch
  and diffusers).

What differs between backends is declared on the class (:attr:`Backend.takes_model`,
:attr:`Backend.default_view_hw`, :attr:`Backend.renders_frames_independently`,
:attr:`Backend.shares_weights` with :meth:`Backend.load_shared_model`), so that the env, the
vector env and the CLI treat every backend alike. A new backend is one module and one
:func:`register_backend` call.

The env renders each episode's first frames itself, with their exact depth and sky mask
(:class:`FirstFrames`), and hands them to :meth:`Backend.reset`.

``"auto"`` (the env's default) picks ``"shareverse"`` when the package ships trained weights
(or a ``model`` is given) and ``"world"`` otherwise: see :func:`default_backend_name`.

Example:
    >>> import numpy as np
    >>> from shareverse_env.world.generator import generate_town
    >>> backend = make_backend("world", view_hw=(64, 96))
    >>> town = generate_town(0)
    >>> start = np.array([[0.0, 0.0, 0.0]])
    >>> backend.reset(town, "clear_noon", start).shape
    (1, 128, 192, 3)
    >>> first = backend.first_frames(town, "clear_noon", start)  # RGB with exact depth
    >>> first.depth.shape, first.sky.dtype
    ((1, 128, 192), dtype('bool'))
"""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .geometry import CameraRig
from .world.renderer import Renderer, RenderResult
from .world.town import Town
from .world.vehicles import agent_colour
from .world.weather import Weather, get_weather


@dataclass(frozen=True)
class FirstFrames:
    """Every agent's first frame of an episode, as the env hands it to :meth:`Backend.reset`.

    Attributes:
        rgb: ``(A, 2H, 2W, 3)`` uint8 tiled views ``[[front, rear], [left, right]]``.
        depth: ``(A, 2H, 2W)`` float32 metric z-depth along each camera's optical axis, ``inf``
            where the sky is seen: exact when the env rendered the frames from its town;
            ``None`` where it is unknown (frames given by the user, e.g.
            ``reset(options={"images": ...})``).
        sky: ``(A, 2H, 2W)`` bool, true where the sky is seen; ``None`` when ``depth`` is.

    Example:
        >>> import numpy as np
        >>> first = FirstFrames(np.zeros((1, 32, 32, 3), np.uint8))  # user images: no depth
        >>> first.depth is None, first.num_agents
        (True, 1)
    """

    rgb: np.ndarray
    depth: np.ndarray | None = None
    sky: np.ndarray | None = None

    @property
    def num_agents(self) -> int:
        return int(self.rgb.shape[0])


class Backend(ABC):
    """Produces tiled 2×2 frames for every agent of a chunk.

    Subclasses implement :meth:`reset` (the frames at the start poses of an episode) and
    :meth:`generate` (the new frames of one chunk). Frames are uint8 ``(2H, 2W, 3)`` with views
    ``[[front, rear], [left, right]]``. The class attributes below declare what the env and the
    vector env need to know; a subclass is built as ``cls(view_hw=..., rig=..., [model=...,]
    **backend_options)`` (``view_hw`` and ``rig`` may be ``None``: the backend's own).
    """

    name: ClassVar[str] = "base"
    takes_model: ClassVar[bool] = False
    """Whether the constructor takes ``model=`` (the env's ``model`` keyword); the env refuses
    ``model=`` for a backend that does not."""
    default_view_hw: ClassVar[tuple[int, int] | None] = (64, 96)
    """The view size the env asks for when ``view_hw`` is not given; ``None`` lets the backend
    choose (a model serves the size it was trained at)."""
    renders_frames_independently: ClassVar[bool] = False
    """Whether :meth:`generate` renders each frame from its poses alone, so that it may be given
    any subset of a chunk's frames (the env's ``chunk_frames="last"`` then passes only the first
    and last poses). ``False`` for a generative backend, which must roll the whole chunk out."""
    shares_weights: ClassVar[bool] = False
    """Whether several envs (the vector env's worlds) may share one loaded model: the vector env
    then calls :meth:`load_shared_model` once and passes the result as every env's ``model``."""
    reset_options: ClassVar[tuple[str, ...]] = ()
    """The ``reset(options=...)`` keys this backend reads beyond the env's own (``scenario``,
    ``weather``, ``town_seed``, ``start_poses``); the env refuses any other key."""

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

    @classmethod
    def load_shared_model(cls, model: Any, options: dict[str, Any]) -> Any:
        """The model object that several backends built with ``model`` and ``options`` (the
        env's ``backend_options``) can share; only called when :attr:`shares_weights`."""
        return model

    @abstractmethod
    def reset(
        self,
        town: Town | None,
        weather: str | Weather,
        poses: np.ndarray,
        options: dict[str, Any] | None = None,
        first_frames: FirstFrames | None = None,
    ) -> np.ndarray:
        """Start an episode in ``town`` with agents at ``poses (A, 3)``; return ``(A, 2H, 2W, 3)``.

        ``first_frames`` are the episode's first frames as the env rendered them (with exact
        depth) or as a caller gives them; a backend that renders the town itself may ignore
        them. ``town`` may be ``None`` for a backend that does not read it.
        """

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
        view_hw: tuple[int, int] | None = (64, 96),
        rig: CameraRig | None = None,
        max_distance: float = 250.0,
    ) -> None:
        super().__init__(view_hw or self.default_view_hw, rig)
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
        town: Town | None,
        weather: str | Weather,
        poses: np.ndarray,
        options: dict[str, Any] | None = None,
        first_frames: FirstFrames | None = None,
    ) -> np.ndarray:
        """Start an episode. ``first_frames``, when given, are taken as they are: the env renders
        them with this backend's own :meth:`first_frames` (so they are this renderer's frames);
        otherwise they are rendered here."""
        if town is None:
            raise ValueError("WorldBackend.reset needs the town it renders; got town=None")
        if first_frames is None:
            return self.first_frames(town, weather, poses).rgb
        poses = np.asarray(poses)
        if first_frames.rgb.shape != (len(poses), *self.frame_shape):
            raise ValueError(
                f"first_frames.rgb must have shape {(len(poses), *self.frame_shape)}; "
                f"got {first_frames.rgb.shape}"
            )
        self._start(town, weather, len(poses))
        return first_frames.rgb.copy()

    def first_frames(self, town: Town, weather: str | Weather, poses: np.ndarray) -> FirstFrames:
        """Start an episode in ``town`` with agents at ``poses (A, 3)`` and return their first
        frames with exact depth and sky mask (every agent's car stands at its pose)."""
        self._start(town, weather, len(poses))
        result = self._render_result(np.asarray(poses, dtype=np.float64)[:, None, :])
        return FirstFrames(result.rgb[:, 0], result.depth[:, 0], result.sky[:, 0])

    def _start(self, town: Town, weather: str | Weather, num_agents: int) -> None:
        """Point the renderer at ``town`` in ``weather`` (cached) for ``num_agents`` cars."""
        weather = get_weather(weather)
        key = (id(town), town.seed, weather)
        if key != self._key:
            self._renderer = Renderer(
                town, weather, rig=self.rig, view_hw=self.view_hw, max_distance=self.max_distance
            )
            self._key = key
        self._colours = np.array([agent_colour(k) for k in range(num_agents)], dtype=np.float32)

    def generate(self, poses: np.ndarray, active: np.ndarray) -> np.ndarray:
        poses = np.asarray(poses, dtype=np.float64)
        out = np.zeros((poses.shape[0], poses.shape[1] - 1, *self.frame_shape), dtype=np.uint8)
        active = np.asarray(active, dtype=bool)
        if active.any():
            out[active] = self._render(poses[:, 1:], viewers=np.flatnonzero(active))
        return out

    def _render(self, poses: np.ndarray, viewers: np.ndarray | None = None) -> np.ndarray:
        """Views of ``viewers`` (default all) at every frame of ``poses (A, F, 3)``."""
        return self._render_result(poses, viewers).rgb

    def _render_result(self, poses: np.ndarray, viewers: np.ndarray | None = None) -> RenderResult:
        """RGB, depth and sky of ``viewers`` (default all) at every frame of ``poses (A, F, 3)``,
        each ``(V, F, ...)``."""
        num_agents, frames = poses.shape[:2]
        viewers = np.arange(num_agents) if viewers is None else viewers
        # Viewer batch: one row per (viewer, frame); every agent's car at that frame is drawn.
        viewer_poses = poses[viewers].reshape(-1, 3)
        cars = np.broadcast_to(
            poses.transpose(1, 0, 2)[None], (len(viewers), frames, num_agents, 3)
        ).reshape(-1, num_agents, 3)
        hide = np.repeat(viewers, frames)
        result = self.renderer.render(viewer_poses, cars=cars, car_colours=self._colours, hide=hide)
        lead = (len(viewers), frames)
        return RenderResult(
            rgb=result.rgb.reshape(*lead, *self.frame_shape),
            depth=result.depth.reshape(*lead, *self.frame_shape[:2]),
            sky=result.sky.reshape(*lead, *self.frame_shape[:2]),
        )


# ------------------------------------------------------------------------------- registry

BACKENDS: dict[str, str | type[Backend]] = {
    "world": "shareverse_env.backends:WorldBackend",
    "shareverse": "shareverse_env.generative_backend:ShareVerseBackend",
}
"""Backends by name: ``"module:Class"`` entries are imported on first use (then replaced by the
class). Add entries with :func:`register_backend`."""


def register_backend(name: str, target: str | type[Backend], replace: bool = False) -> None:
    """Make ``target`` (a :class:`Backend` subclass or ``"module:Class"``, imported on first use)
    available as ``parallel_env(backend=name)``.

    Raises ``ValueError`` when ``name`` is taken (unless ``replace``) or is ``"auto"``.

    Example:
        >>> register_backend("world_again", "shareverse_env.backends:WorldBackend")
        >>> backend_class("world_again") is WorldBackend
        True
        >>> unregister_backend("world_again")
    """
    if not isinstance(name, str) or not name or name == "auto":
        raise ValueError(
            f"a backend name must be a non-empty string other than 'auto'; got {name!r}"
        )
    if isinstance(target, str):
        if target.count(":") != 1 or not all(target.split(":")):
            raise ValueError(f"backend target must be 'module:Class'; got {target!r}")
    elif not (isinstance(target, type) and issubclass(target, Backend)):
        raise TypeError(
            f"backend target must be a Backend subclass or 'module:Class'; got {target!r}"
        )
    if name in BACKENDS and not replace:
        raise ValueError(f"backend {name!r} is already registered; pass replace=True to replace it")
    BACKENDS[name] = target


def unregister_backend(name: str) -> None:
    """Remove ``name`` from the registry (a no-op when it is not there)."""
    BACKENDS.pop(name, None)


def backend_names() -> tuple[str, ...]:
    """The registered backend names, sorted (``"auto"`` is not one: it picks one of them).

    >>> backend_names()[:2]
    ('shareverse', 'world')
    """
    return tuple(sorted(BACKENDS))


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name``, imported on first use."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {list(backend_names())}")
    target = BACKENDS[name]
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise TypeError(f"backend {name!r}: {target} is not a Backend subclass")
        BACKENDS[name] = target = cls
    return target


def make_backend(name: str | Backend, **kwargs: Any) -> Backend:
    """Build a backend from its name (or return a ready :class:`Backend` instance as is)."""
    if isinstance(name, Backend):
        return name
    return backend_class(name)(**kwargs)


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
