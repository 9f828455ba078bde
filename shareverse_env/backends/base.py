"""The backend interface: what the env hands a backend (:class:`FirstFrames`) and what it asks of
it (:class:`Backend`). The package docstring of :mod:`shareverse_env.backends` tells the whole story."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from shareverse_env.core.geometry import CameraRig
from shareverse_env.world.town import Town
from shareverse_env.world.weather import Weather


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
