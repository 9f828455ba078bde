"""Scene data shared by the town generator, the renderer and collision checks.

A scene is a ground raster (what lies on the z = 0 plane: roads, markings, sidewalks, grass) plus
a set of solid boxes standing on or above it (buildings, cars, tree trunks and crowns, poles).
Boxes are oriented in the xy plane and span ``[z_min, z_max]`` vertically; everything the world
holds is one of these two things, which is what lets the renderer cast rays column by column.

Example:
    >>> import numpy as np
    >>> boxes = BoxSet.from_rows([
    ...     dict(center=(10.0, 0.0), half_extent=(2.0, 3.0), z_range=(0.0, 12.0),
    ...          colour=(0.7, 0.6, 0.5), material=Material.FACADE),
    ... ])
    >>> len(boxes), boxes.footprint_corners().shape
    (1, (1, 4, 2))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any

import numpy as np


class Material(IntEnum):
    """How the renderer shades a box's faces."""

    PLAIN = 0  # flat colour (walls without windows, kerbs, props)
    FACADE = 1  # building: colour plus a window grid on the walls, roof on top
    CAR_BODY = 2  # painted car body
    GLASS = 3  # car cabin / windows: dark, slightly reflective
    FOLIAGE = 4  # tree crown
    POLE = 5  # tree trunk, lamp post


class Surface(IntEnum):
    """What covers the ground at a point; drives rendering colour and the off-road test."""

    GRASS = 0  # open ground, parks, outside the town
    SIDEWALK = 1
    ROAD = 2  # drivable asphalt, including junctions and parking lanes
    LOT = 3  # paved plaza / parking lot inside a block (not drivable for agents)


@dataclass(frozen=True)
class BoxSet:
    """``M`` oriented boxes, stored as parallel float32 arrays (struct of arrays).

    Attributes:
        center: ``(M, 2)`` world xy of each footprint centre.
        half_extent: ``(M, 2)`` half length along the box's local x and local y axes.
        yaw: ``(M,)`` rotation of the local x axis from world x (counter-clockwise, rad).
        z_range: ``(M, 2)`` bottom and top height in metres.
        colour: ``(M, 3)`` base RGB in ``[0, 1]``.
        material: ``(M,)`` :class:`Material` codes (int8).
        seed: ``(M,)`` per-box random float in ``[0, 1)`` for procedural detail (window layout...).
    """

    center: np.ndarray
    half_extent: np.ndarray
    yaw: np.ndarray
    z_range: np.ndarray
    colour: np.ndarray
    material: np.ndarray
    seed: np.ndarray

    def __post_init__(self) -> None:
        m = len(self.center)
        expected = {
            "center": (m, 2),
            "half_extent": (m, 2),
            "yaw": (m,),
            "z_range": (m, 2),
            "colour": (m, 3),
            "material": (m,),
            "seed": (m,),
        }
        for name, shape in expected.items():
            value = getattr(self, name)
            if value.shape != shape:
                raise ValueError(f"BoxSet.{name} must have shape {shape}; got {value.shape}")

    def __len__(self) -> int:
        return len(self.center)

    @staticmethod
    def empty() -> BoxSet:
        return BoxSet.from_rows([])

    @staticmethod
    def from_rows(rows: Iterable[Mapping[str, Any]]) -> BoxSet:
        """Build from dicts with keys ``center, half_extent, z_range, colour`` (required) and
        ``yaw, material, seed`` (default 0, PLAIN, 0)."""
        rows = list(rows)

        def col(name: str, default: Any, width: int | None, dtype: Any) -> np.ndarray:
            vals = [r.get(name, default) for r in rows]
            shape = (len(rows), width) if width else (len(rows),)
            return np.asarray(vals, dtype=dtype).reshape(shape)

        return BoxSet(
            center=col("center", None, 2, np.float32),
            half_extent=col("half_extent", None, 2, np.float32),
            yaw=col("yaw", 0.0, None, np.float32),
            z_range=col("z_range", None, 2, np.float32),
            colour=col("colour", None, 3, np.float32),
            material=col("material", Material.PLAIN, None, np.int8),
            seed=col("seed", 0.0, None, np.float32),
        )

    @staticmethod
    def concatenate(sets: Iterable[BoxSet]) -> BoxSet:
        sets = list(sets)
        if not sets:
            return BoxSet.empty()
        return BoxSet(
            **{f.name: np.concatenate([getattr(s, f.name) for s in sets]) for f in fields(BoxSet)}
        )

    def select(self, index: np.ndarray) -> BoxSet:
        """The boxes at ``index`` (an integer array or boolean mask)."""
        return BoxSet(**{f.name: getattr(self, f.name)[index] for f in fields(BoxSet)})

    def footprint_corners(self) -> np.ndarray:
        """``(M, 4, 2)`` world xy of each footprint's corners, counter-clockwise."""
        signs = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float32)
        local = signs[None] * self.half_extent[:, None, :]
        c, s = np.cos(self.yaw)[:, None], np.sin(self.yaw)[:, None]
        x = c * local[..., 0] - s * local[..., 1]
        y = s * local[..., 0] + c * local[..., 1]
        return np.stack([x, y], axis=-1) + self.center[:, None, :]

    def bounding_radius(self) -> np.ndarray:
        """``(M,)`` radius of each footprint's circumscribed circle."""
        return np.linalg.norm(self.half_extent, axis=-1)


@dataclass(frozen=True)
class GroundMap:
    """A top-down raster of the ground plane.

    Texel ``[row, col]`` covers ``x ∈ [x0 + col·res, x0 + (col+1)·res)`` and
    ``y ∈ [y0 + row·res, y0 + (row+1)·res)``: rows grow with y, columns with x.
    Points outside the raster are :attr:`Surface.GRASS`.

    Attributes:
        origin: ``(x0, y0)`` world coordinates of the raster's lower-left corner.
        resolution: metres per texel.
        rgb: ``(rows, cols, 3)`` uint8 albedo (asphalt, markings, kerbs, grass...).
        surface: ``(rows, cols)`` uint8 :class:`Surface` codes.
    """

    origin: tuple[float, float]
    resolution: float
    rgb: np.ndarray
    surface: np.ndarray

    def __post_init__(self) -> None:
        if self.rgb.shape[:2] != self.surface.shape or self.rgb.shape[-1] != 3:
            raise ValueError(
                f"rgb must be (rows, cols, 3) matching surface (rows, cols); "
                f"got {self.rgb.shape} and {self.surface.shape}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return self.surface.shape

    def texel_index(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row, column and in-bounds mask of the texel under each world point ``(..., 2)``."""
        xy = np.asarray(xy, dtype=np.float64)
        col = np.floor((xy[..., 0] - self.origin[0]) / self.resolution).astype(np.int64)
        row = np.floor((xy[..., 1] - self.origin[1]) / self.resolution).astype(np.int64)
        inside = (row >= 0) & (row < self.shape[0]) & (col >= 0) & (col < self.shape[1])
        return np.clip(row, 0, self.shape[0] - 1), np.clip(col, 0, self.shape[1] - 1), inside

    def surface_at(self, xy: np.ndarray) -> np.ndarray:
        """:class:`Surface` code under each world point ``(..., 2)``."""
        row, col, inside = self.texel_index(xy)
        return np.where(inside, self.surface[row, col], Surface.GRASS).astype(np.uint8)

    def is_drivable(self, xy: np.ndarray) -> np.ndarray:
        """True where the point lies on the road surface."""
        return self.surface_at(xy) == Surface.ROAD
