"""Cars as boxes: the agents' fixed colours and the boxes that draw a car.

Every car, agent or parked, is a body box plus a glass cabin box on top. Agent ``k`` is always
painted :data:`AGENT_COLOURS` ``[k]`` so that agents can recognise each other in any frame.
The dimensions live in :mod:`shareverse_env.core.vehicle` (re-exported here).

Example:
    >>> import numpy as np
    >>> boxes = car_boxes(np.array([[0.0, 0.0, 0.0], [10.0, 5.0, 1.57]]), agent_colour(0))
    >>> len(boxes)
    4
"""

from __future__ import annotations

import numpy as np

from shareverse_env.core.vehicle import (
    BODY_HEIGHT,
    CABIN_HEIGHT,
    CABIN_LENGTH,
    CABIN_SETBACK,
    CAR_HEIGHT,
    CAR_LENGTH,
    CAR_WIDTH,
)
from shareverse_env.world.scene import BoxSet, Material

__all__ = [
    "AGENT_COLOURS",
    "AGENT_COLOUR_NAMES",
    "BODY_HEIGHT",
    "CABIN_HEIGHT",
    "CABIN_LENGTH",
    "CABIN_SETBACK",
    "CAR_HEIGHT",
    "CAR_LENGTH",
    "CAR_WIDTH",
    "PARKED_COLOURS",
    "agent_colour",
    "car_boxes",
    "car_footprints",
]

AGENT_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.85, 0.10, 0.10),  # red
    (0.10, 0.25, 0.90),  # blue
    (0.10, 0.70, 0.20),  # green
    (0.95, 0.85, 0.10),  # yellow
    (0.80, 0.15, 0.80),  # magenta
    (0.10, 0.80, 0.85),  # cyan
    (0.95, 0.50, 0.05),  # orange
    (0.55, 0.30, 0.10),  # brown
)
"""Fixed body colour of agent k (cycled past eight agents)."""

AGENT_COLOUR_NAMES: tuple[str, ...] = (
    "red",
    "blue",
    "green",
    "yellow",
    "magenta",
    "cyan",
    "orange",
    "brown",
)

PARKED_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.85, 0.85, 0.85),
    (0.15, 0.15, 0.16),
    (0.55, 0.56, 0.58),
    (0.35, 0.37, 0.40),
    (0.75, 0.72, 0.65),
)
"""Muted colours for parked cars, none of which can be mistaken for an agent."""


def agent_colour(index: int) -> tuple[float, float, float]:
    """Body colour of agent ``index``."""
    return AGENT_COLOURS[index % len(AGENT_COLOURS)]


def car_boxes(poses: np.ndarray, colours: np.ndarray | tuple[float, float, float]) -> BoxSet:
    """Boxes of cars at ground poses ``(N, 3)`` (centre of the footprint, heading).

    Returns ``2N`` boxes ordered ``[body_0, cabin_0, body_1, cabin_1, ...]``. ``colours`` is one
    RGB for all cars or ``(N, 3)``.
    """
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, 3)
    n = len(poses)
    colours = np.broadcast_to(np.asarray(colours, dtype=np.float32), (n, 3))
    c, s = np.cos(poses[:, 2]), np.sin(poses[:, 2])
    cabin_xy = poses[:, :2] + CABIN_SETBACK * np.stack([c, s], axis=-1)
    center = np.stack([poses[:, :2], cabin_xy], axis=1).reshape(2 * n, 2)
    half = np.tile(
        np.array([[CAR_LENGTH / 2, CAR_WIDTH / 2], [CABIN_LENGTH / 2, CAR_WIDTH / 2 - 0.1]]),
        (n, 1),
    )
    z = np.tile(np.array([[0.0, BODY_HEIGHT], [BODY_HEIGHT, BODY_HEIGHT + CABIN_HEIGHT]]), (n, 1))
    glass = np.array([0.12, 0.14, 0.17], dtype=np.float32)
    colour = np.stack([colours, np.broadcast_to(glass, (n, 3))], axis=1).reshape(2 * n, 3)
    material = np.tile(np.array([Material.CAR_BODY, Material.GLASS], dtype=np.int8), n)
    return BoxSet(
        center=center.astype(np.float32),
        half_extent=half.astype(np.float32),
        yaw=np.repeat(poses[:, 2], 2).astype(np.float32),
        z_range=z.astype(np.float32),
        colour=colour.astype(np.float32),
        material=material,
        seed=np.zeros(2 * n, dtype=np.float32),
    )


def car_footprints(poses: np.ndarray) -> np.ndarray:
    """``(N, 4, 2)`` world corners of the car footprints at poses ``(N, 3)``."""
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, 3)
    signs = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float64)
    local = signs * np.array([CAR_LENGTH / 2, CAR_WIDTH / 2])
    c, s = np.cos(poses[:, 2])[:, None], np.sin(poses[:, 2])[:, None]
    x = c * local[None, :, 0] - s * local[None, :, 1] + poses[:, None, 0]
    y = s * local[None, :, 0] + c * local[None, :, 1] + poses[:, None, 1]
    return np.stack([x, y], axis=-1)
