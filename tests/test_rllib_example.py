"""examples/rllib_shared_policy.py runs one PPO iteration (only where Ray's RLlib is installed).

RLlib pins its own Gymnasium, so it lives in its own virtual environment (docs/ecosystem.md);
in the project's development environment this test is skipped. CI runs it in a second virtual
environment with ``SHAREVERSE_REQUIRE_RLLIB=1`` (``.ci/run``): there a missing RLlib is an error,
not a skip.
"""

import importlib.util
import math
import os
from pathlib import Path

import pytest

if os.environ.get("SHAREVERSE_REQUIRE_RLLIB", "") not in ("", "0"):
    try:
        import ray.rllib  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "SHAREVERSE_REQUIRE_RLLIB is set, but ray.rllib cannot be imported: "
            'install it with pip install -e ".[rllib]" (docs/ecosystem.md)'
        ) from error
else:
    pytest.importorskip("ray.rllib")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rllib_shared_policy.py"


def load_example():
    spec = importlib.util.spec_from_file_location("rllib_shared_policy", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_iteration_of_shared_ppo(capsys):
    example = load_example()
    returns = example.main(["--iterations", "1", "--batch", "32", "--max-cycles", "2"])
    assert len(returns) == 1 and math.isfinite(returns[0])
    assert "iteration 1: episode_return_mean" in capsys.readouterr().out


def test_rllib_observations_are_small_floats():
    example = load_example()
    env = example.make_env({"max_cycles": 2})  # RLlib's ParallelPettingZooEnv resets it once
    obs, infos = env.reset(seed=0)
    space = env.observation_space["agent_0"]
    assert obs["agent_0"].shape == space.shape == (32, 48, 1)
    assert space.contains(obs["agent_0"])
    assert "frames" not in infos["agent_0"]
