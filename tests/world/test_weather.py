"""Tests of the weather presets."""

from __future__ import annotations

import dataclasses
import doctest

import numpy as np
import pytest

from shareverse_env.world import weather as weather_module
from shareverse_env.world.weather import WEATHERS, Weather, get_weather


def test_required_presets_exist() -> None:
    for name in ("clear_noon", "overcast", "sunset", "fog"):
        assert WEATHERS[name].name == name


def test_presets_differ() -> None:
    values = [dataclasses.astuple(dataclasses.replace(w, name="")) for w in WEATHERS.values()]
    assert len(set(values)) == len(values)
    assert WEATHERS["fog"].fog_distance < WEATHERS["clear_noon"].fog_distance / 5
    assert WEATHERS["sunset"].sun_elevation_deg < WEATHERS["clear_noon"].sun_elevation_deg


def test_get_weather() -> None:
    assert get_weather("fog") is WEATHERS["fog"]
    custom = dataclasses.replace(WEATHERS["overcast"], name="custom", exposure=1.2)
    assert get_weather(custom) is custom
    with pytest.raises(ValueError, match=r"unknown weather 'snow'.*clear_noon.*sunset"):
        get_weather("snow")
    with pytest.raises(TypeError):
        get_weather(3)  # type: ignore[arg-type]


def test_sun_vector_is_unit_and_above_the_horizon() -> None:
    for w in WEATHERS.values():
        v = w.sun_vector
        assert v.shape == (3,) and np.isclose(np.linalg.norm(v), 1.0) and v[2] > 0


def test_weather_is_hashable_and_validated() -> None:
    assert len({*WEATHERS.values()}) == len(WEATHERS)
    base = WEATHERS["clear_noon"]
    with pytest.raises(ValueError, match="sun_elevation_deg"):
        dataclasses.replace(base, sun_elevation_deg=-5.0)
    with pytest.raises(ValueError, match="fog_distance"):
        dataclasses.replace(base, fog_distance=0.0)
    with pytest.raises(ValueError, match="ambient"):
        dataclasses.replace(base, ambient=(0.5, -0.1, 0.5))
    assert isinstance(base, Weather)


def test_docstring_examples() -> None:
    result = doctest.testmod(weather_module)
    assert result.attempted > 0 and result.failed == 0
