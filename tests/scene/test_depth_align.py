"""Fitting an estimated depth map to the scene cache's depth (scale and shift of inverse depth)."""

from __future__ import annotations

import numpy as np
import pytest

from shareverse_env.scene.depth_align import align_depth


def test_align_depth_recovers_scale_and_shift_despite_outliers() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(2.0, 120.0, (128, 192)).astype(np.float32)
    pred = (1.0 / (1.7 / truth + 0.01)).astype(np.float32)
    pred[:10] = np.inf  # sky
    reference = truth.copy()
    bad = rng.random(truth.shape) < 0.05
    reference[bad] = 1.0  # wrong reference pixels (occlusions)
    overlap = rng.random(truth.shape) < 0.5
    aligned = align_depth(pred, reference, overlap)
    assert aligned.dtype == np.float32
    assert np.isinf(aligned[:10]).all()
    np.testing.assert_allclose(aligned[10:], truth[10:], rtol=1e-3)
    assert (aligned > 0).all()


def test_align_depth_needs_enough_overlap() -> None:
    pred = np.full((16, 16), 5.0, np.float32)
    overlap = np.zeros((16, 16), bool)
    overlap[0, :10] = True
    assert align_depth(pred, pred * 2, overlap) is pred
    with pytest.raises(ValueError, match="shapes"):
        align_depth(pred, pred[:8], overlap)
