"""The car's dimensions: the one place every layer reads them from.

Every car, agent or parked, is a body box with a glass cabin box on top (drawn by
:func:`shareverse_env.world.vehicles.car_boxes`). The world draws and collides cars with these
sizes; the scene cache drops the points that fall on a car's box, which it may only know through
this module (it never imports the world).

Example:
    >>> CAR_LENGTH, CAR_WIDTH, CAR_HEIGHT
    (4.5, 1.9, 1.5)
    >>> CAR_HEIGHT == BODY_HEIGHT + CABIN_HEIGHT
    True
"""

from __future__ import annotations

CAR_LENGTH = 4.5
"""Length of every car body, metres."""

CAR_WIDTH = 1.9
"""Width of every car body, metres."""

BODY_HEIGHT = 1.0
"""Height of the body box (ground to its top), metres."""

CABIN_HEIGHT = 0.5
"""Height of the glass cabin box on top of the body, metres."""

CAR_HEIGHT = BODY_HEIGHT + CABIN_HEIGHT
"""Roof height of every car (body plus cabin), metres."""

CABIN_LENGTH = 2.4
"""Length of the cabin box, metres."""

CABIN_SETBACK = -0.3
"""Position of the cabin's centre along the car relative to the body's centre, metres
(negative: behind it)."""
