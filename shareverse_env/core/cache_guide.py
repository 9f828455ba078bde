"""What the scene cache tells a cache-conditioned model about one chunk: the contract between
:mod:`shareverse_env.scene` (which builds a :class:`CacheGuide` from its renders) and
:mod:`shareverse_env.models` (which encodes it, :mod:`shareverse_env.models.cache_input`).
Neither of the two imports the other; both import this.

Example:
    >>> import numpy as np
    >>> guide = CacheGuide(np.zeros((1, 29, 16, 24, 3), np.uint8), np.ones((1, 29, 16, 24), bool),
    ...                    np.zeros((1, 29, 16, 24), np.float32))
    >>> guide.rgb.shape, NO_CACHE
    ((1, 29, 16, 24, 3), NO_CACHE)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shareverse_env.core.geometry import CHUNK_FRAMES


class NoCache:
    """The cache input of "nothing is known": all zeros, which is exactly what training shows
    a cache model for its dropped examples (``cache_drop``). Pass :data:`NO_CACHE` as a
    request's ``cache`` to run a cache-conditioned model without a scene cache, as the
    paper's mode (``scene_cache=False``) does.

    >>> NO_CACHE
    NO_CACHE
    """

    _instance: NoCache | None = None

    def __new__(cls) -> NoCache:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_CACHE"


NO_CACHE = NoCache()
"""The one :class:`NoCache`."""


@dataclass
class CacheGuide:
    """Pixel-space cache input of one world's chunk, per agent and frame.

    ``rgb`` ``(N, 29, 2H, 2W, 3)`` uint8: the cache render (row 0: the conditioning frame);
    ``valid`` ``(N, 29, 2H, 2W)`` bool: where the render holds the cache; ``cars``
    ``(N, 29, 2H, 2W)`` float32 in [0, 1]: nearness of the other agents' cars
    ``1 / max(z, 1 m)`` of each car pixel's depth ``z``; 0 where there is none).
    """

    rgb: np.ndarray
    valid: np.ndarray
    cars: np.ndarray

    def __post_init__(self) -> None:
        rgb, valid, cars = self.rgb, self.valid, self.cars
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 5:
            raise ValueError(
                f"cache rgb must be uint8 (agents, {CHUNK_FRAMES}, H, W, 3); got "
                f"{getattr(rgb, 'dtype', type(rgb))} {getattr(rgb, 'shape', '')}"
            )
        if rgb.shape[1] != CHUNK_FRAMES or rgb.shape[-1] != 3:
            raise ValueError(
                f"cache rgb must be (agents, {CHUNK_FRAMES}, H, W, 3); got {rgb.shape}"
            )
        if not isinstance(valid, np.ndarray) or valid.dtype != bool or valid.shape != rgb.shape[:4]:
            raise ValueError(
                f"cache valid must be bool {rgb.shape[:4]}; got "
                f"{getattr(valid, 'dtype', type(valid))} {getattr(valid, 'shape', '')}"
            )
        if not isinstance(cars, np.ndarray) or cars.shape != rgb.shape[:4]:
            raise ValueError(
                f"cache cars must be float {rgb.shape[:4]}; got {getattr(cars, 'shape', cars)}"
            )
        if not np.isfinite(cars).all() or cars.min(initial=0) < 0 or cars.max(initial=0) > 1:
            raise ValueError("cache cars must hold finite nearness values in [0, 1]")
