"""The ground-truth backend: the exact renderer of the procedural town."""

from __future__ import annotations

from typing import Any

import numpy as np

from shareverse_env.backends.base import Backend, FirstFrames
from shareverse_env.core.geometry import CameraRig
from shareverse_env.world.renderer import Renderer, RenderResult
from shareverse_env.world.town import Town
from shareverse_env.world.vehicles import agent_colour
from shareverse_env.world.weather import Weather, get_weather


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
