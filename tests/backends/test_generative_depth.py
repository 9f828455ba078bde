"""The scene cache's depth network: off only when asked, else loaded or a loud error."""

import sys

import numpy as np
import pytest

import shareverse_env
from shareverse_env.backends.generative import DepthModelUnavailableError, depth_estimator

TURN_OFF = r'backend_options=\{"depth_model": False\}'


@pytest.fixture
def no_shipped_weights(monkeypatch, tmp_path):
    import shareverse_env.models.depth as depth

    monkeypatch.setattr(depth, "WEIGHTS_DIR", tmp_path / "no_weights_here")


def test_the_shipped_network_is_the_default():
    estimate = depth_estimator(None)
    depth = estimate(np.zeros((1, 64, 96, 3), np.uint8))
    assert depth.shape == (1, 64, 96) and np.isfinite(depth).all()
    assert depth_estimator(False) is None


@pytest.mark.parametrize("asked", [None, True])
def test_missing_shipped_weights_raise(no_shipped_weights, asked):
    with pytest.raises(DepthModelUnavailableError, match="the shipped depth weights") as info:
        depth_estimator(asked)
    assert "no depth weights" in str(info.value)
    assert isinstance(info.value.__cause__, FileNotFoundError)
    with pytest.raises(DepthModelUnavailableError, match=TURN_OFF):
        depth_estimator(asked)
    assert depth_estimator(False) is None  # off, explicitly: no weights needed


def test_a_missing_weights_path_raises_naming_it(tmp_path):
    with pytest.raises(DepthModelUnavailableError, match=f"depth_model '{tmp_path / 'x'}'"):
        depth_estimator(tmp_path / "x")


def test_a_missing_depth_module_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "shareverse_env.models.depth", None)  # import fails
    with pytest.raises(DepthModelUnavailableError, match="cannot be imported") as info:
        depth_estimator(None)
    assert TURN_OFF.replace("\\", "") in str(info.value)
    assert isinstance(info.value.__cause__, ImportError)
    assert depth_estimator(False) is None


def test_the_env_fails_loudly_and_runs_with_depth_off(no_shipped_weights):
    def make(**options):
        return shareverse_env.parallel_env(
            backend="shareverse", model="tiny", max_cycles=1, backend_options=options
        )

    with pytest.raises(DepthModelUnavailableError, match=TURN_OFF):
        make()
    assert make(depth_model=False).backend.scene.depth_estimator is None
    assert make(scene_cache=False).backend.scene is None  # no cache: no depth needed
