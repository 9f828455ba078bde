"""The action probes' plans, the true chunks under them, and the change metric."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from shareverse_env.core.geometry import plan_chunk
from shareverse_env.evaluation import action_probes as probes_module
from shareverse_env.evaluation.action_probes import (
    LATERAL_OFFSET_M,
    PROBES,
    mean_abs_change,
    probe_plan,
)


def _plans() -> np.ndarray:
    start = np.array([[5.0, -3.0, 0.7], [-20.0, 4.0, -2.5]])
    return plan_chunk(start, np.array([[8.0, 0.0, 0.1], [12.0, 1.0, 0.0]]))


def test_still_plan_holds_the_start_pose() -> None:
    plans = _plans()
    still = probe_plan("still", plans)
    assert still.shape == plans.shape
    np.testing.assert_array_equal(still, np.repeat(plans[:, :1], 29, axis=1))


def test_lateral_plan_shifts_left_of_the_start_heading() -> None:
    plans = _plans()
    side = probe_plan("lateral", plans)
    shift = side[..., :2] - plans[..., :2]
    left = np.stack([np.cos(plans[:, 0, 2] + np.pi / 2), np.sin(plans[:, 0, 2] + np.pi / 2)], -1)
    np.testing.assert_allclose(shift[:, 0], 0.0, atol=1e-12)
    np.testing.assert_allclose(shift[:, -1], LATERAL_OFFSET_M * left, atol=1e-12)
    along = np.einsum("afc,ac->af", shift, left)
    assert np.all(np.diff(along, axis=1) >= -1e-12)  # a monotone ramp, no jump
    np.testing.assert_array_equal(side[..., 2], plans[..., 2])  # headings as planned
    assert probe_plan("lateral", plans) is not plans


def test_bad_probe_input_is_named() -> None:
    with pytest.raises(ValueError, match="unknown action probe 'left'"):
        probe_plan("left", _plans())
    with pytest.raises(ValueError, match=r"shape \(A, 29, 3\)"):
        probe_plan("still", np.zeros((2, 28, 3)))
    assert PROBES == ("still", "lateral")


def test_mean_abs_change_in_grey_levels() -> None:
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[0] = 255
    assert mean_abs_change(a, b) == pytest.approx(127.5)
    assert mean_abs_change(b, a) == pytest.approx(127.5)  # no uint8 wrap-around


def test_doctests() -> None:
    result = doctest.testmod(probes_module)
    assert result.attempted > 0 and result.failed == 0
