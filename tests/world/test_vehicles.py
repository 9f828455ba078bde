"""The cars the world draws have the dimensions of :mod:`shareverse_env.core.vehicle`, the one
source the scene cache (which never sees the world) also reads."""

from __future__ import annotations

import numpy as np

from shareverse_env.core import vehicle
from shareverse_env.world.vehicles import car_boxes, car_footprints


def test_drawn_car_spans_the_core_dimensions():
    boxes = car_boxes(np.array([[3.0, -2.0, 0.0]]), (1.0, 0.0, 0.0))
    low = boxes.center - boxes.half_extent
    high = boxes.center + boxes.half_extent
    np.testing.assert_allclose(high.max(0) - low.min(0), [vehicle.CAR_LENGTH, vehicle.CAR_WIDTH])
    assert boxes.z_range.min() == 0.0
    assert boxes.z_range.max() == np.float32(vehicle.CAR_HEIGHT)


def test_footprint_is_length_by_width():
    corners = car_footprints(np.zeros((1, 3)))[0]
    np.testing.assert_allclose(
        corners.max(0) - corners.min(0), [vehicle.CAR_LENGTH, vehicle.CAR_WIDTH]
    )
