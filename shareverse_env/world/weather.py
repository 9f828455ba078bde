"""Weather presets: sky, sun, ambient light, fog and exposure of a rendered town.

A :class:`Weather` is a small frozen (hashable) record of lighting parameters; the renderer turns
it into a sky gradient, a Lambert sun term plus ambient on every face, baked sun shadows on the
ground, and distance fog. Colours are RGB in ``[0, 1]`` (display space; the renderer does no gamma).

Example:
    >>> w = get_weather("sunset")
    >>> w.name, round(float(w.sun_vector[2]), 3)  # the sun is low: small z
    ('sunset', 0.174)
    >>> sorted(WEATHERS)
    ['clear_morning', 'clear_noon', 'fog', 'overcast', 'sunset']
    >>> get_weather(w) is w
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Weather:
    """Lighting of one weather preset.

    Attributes:
        name: preset name.
        sky_zenith: sky colour straight up.
        sky_horizon: sky colour at the horizon (the gradient runs between the two).
        sun_azimuth_deg: compass angle of the sun, counter-clockwise from the world +x axis.
        sun_elevation_deg: height of the sun above the horizon (> 0).
        sun_colour: light the sun adds to a face that faces it squarely (Lambert term).
        ambient: light every upward face receives from the sky; walls get 80 %, undersides 50 %.
        sun_glow: strength of the halo around the sun in the sky (0 for none).
        shadow: how much of the sun's light a shadow removes (0 none, 1 fully dark).
        fog_colour: colour distant surfaces fade to.
        fog_distance: metres over which fog reaches 63 % (``1 - exp(-d / fog_distance)``).
        exposure: global multiplier applied to every lit colour and the sky.
        clouds: cloud cover of the sky in ``[0, 1]`` (a fixed procedural layer 800 m up).
    """

    name: str
    sky_zenith: RGB
    sky_horizon: RGB
    sun_azimuth_deg: float
    sun_elevation_deg: float
    sun_colour: RGB
    ambient: RGB
    sun_glow: float
    shadow: float
    fog_colour: RGB
    fog_distance: float
    exposure: float = 1.0
    clouds: float = 0.0

    def __post_init__(self) -> None:
        for key in ("sky_zenith", "sky_horizon", "sun_colour", "ambient", "fog_colour"):
            value = getattr(self, key)
            if len(value) != 3 or any(not math.isfinite(c) or c < 0 for c in value):
                raise ValueError(
                    f"Weather.{key} must be 3 finite non-negative numbers; got {value}"
                )
        if not 0.0 < self.sun_elevation_deg <= 90.0:
            raise ValueError(
                f"Weather.sun_elevation_deg must lie in (0, 90]; got {self.sun_elevation_deg}"
            )
        if not self.fog_distance > 0:
            raise ValueError(f"Weather.fog_distance must be positive; got {self.fog_distance}")
        if not self.exposure > 0:
            raise ValueError(f"Weather.exposure must be positive; got {self.exposure}")
        if not 0.0 <= self.shadow <= 1.0:
            raise ValueError(f"Weather.shadow must lie in [0, 1]; got {self.shadow}")
        if not 0.0 <= self.clouds <= 1.0:
            raise ValueError(f"Weather.clouds must lie in [0, 1]; got {self.clouds}")

    @property
    def sun_vector(self) -> np.ndarray:
        """Unit world vector pointing towards the sun, ``(3,)`` float64."""
        az, el = np.deg2rad(self.sun_azimuth_deg), np.deg2rad(self.sun_elevation_deg)
        return np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])


WEATHERS: dict[str, Weather] = {
    w.name: w
    for w in (
        Weather(
            name="clear_noon",
            sky_zenith=(0.24, 0.45, 0.82),
            sky_horizon=(0.68, 0.80, 0.93),
            sun_azimuth_deg=35.0,
            sun_elevation_deg=62.0,
            sun_colour=(0.62, 0.60, 0.55),
            ambient=(0.50, 0.53, 0.58),
            sun_glow=0.25,
            shadow=0.75,
            fog_colour=(0.70, 0.79, 0.88),
            fog_distance=650.0,
            clouds=0.3,
        ),
        Weather(
            name="clear_morning",
            sky_zenith=(0.30, 0.48, 0.78),
            sky_horizon=(0.85, 0.82, 0.78),
            sun_azimuth_deg=-60.0,
            sun_elevation_deg=25.0,
            sun_colour=(0.78, 0.68, 0.52),
            ambient=(0.42, 0.45, 0.52),
            sun_glow=0.45,
            shadow=0.8,
            fog_colour=(0.80, 0.80, 0.80),
            fog_distance=450.0,
            clouds=0.15,
        ),
        Weather(
            name="overcast",
            sky_zenith=(0.60, 0.62, 0.65),
            sky_horizon=(0.76, 0.77, 0.78),
            sun_azimuth_deg=120.0,
            sun_elevation_deg=55.0,
            sun_colour=(0.16, 0.16, 0.16),
            ambient=(0.74, 0.75, 0.77),
            sun_glow=0.0,
            shadow=0.3,
            fog_colour=(0.72, 0.73, 0.75),
            fog_distance=300.0,
        ),
        Weather(
            name="sunset",
            sky_zenith=(0.20, 0.25, 0.48),
            sky_horizon=(0.98, 0.62, 0.36),
            sun_azimuth_deg=200.0,
            sun_elevation_deg=10.0,
            sun_colour=(0.95, 0.55, 0.28),
            ambient=(0.42, 0.37, 0.44),
            sun_glow=0.9,
            shadow=0.85,
            fog_colour=(0.80, 0.55, 0.42),
            fog_distance=350.0,
            clouds=0.35,
        ),
        Weather(
            name="fog",
            sky_zenith=(0.70, 0.71, 0.72),
            sky_horizon=(0.78, 0.78, 0.78),
            sun_azimuth_deg=80.0,
            sun_elevation_deg=40.0,
            sun_colour=(0.12, 0.12, 0.12),
            ambient=(0.72, 0.72, 0.74),
            sun_glow=0.0,
            shadow=0.25,
            fog_colour=(0.78, 0.78, 0.78),
            fog_distance=45.0,
        ),
    )
}
"""The presets by name: ``clear_noon``, ``clear_morning``, ``overcast``, ``sunset``, ``fog``."""


def get_weather(name_or_weather: str | Weather) -> Weather:
    """Return the preset called ``name_or_weather``, or the :class:`Weather` itself.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
        TypeError: for anything that is neither a string nor a :class:`Weather`.
    """
    if isinstance(name_or_weather, Weather):
        return name_or_weather
    if isinstance(name_or_weather, str):
        try:
            return WEATHERS[name_or_weather]
        except KeyError:
            raise ValueError(
                f"unknown weather {name_or_weather!r}; choose from {sorted(WEATHERS)}"
            ) from None
    raise TypeError(f"weather must be a preset name or a Weather; got {type(name_or_weather)}")
