"""Fixtures for the whole suite: one torch thread, and small, fast envs (the ``make_env`` and
``drive`` fixtures of the wrapper and policy tests): the exact renderer with 16×16 views in one
town.

Rendering dominates a step; tiny views and a short draw distance keep it to tens of
milliseconds. A fixed town and weather let every test reuse the one generated town, and
``make_env`` hands out one env per set of keywords for the whole session, so that the renderer
(built at an env's first reset) is built once per set too. Tests reset the env they get with a
seed before using it, must not expect two calls with the same keywords to give two envs, and
must leave the env as they found it (no ``close``, no changed attributes): the wrapper and the
policy tests share the cache.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import shareverse_env

# The renderer runs on torch. With the default two intra-op threads on a busy two-core machine,
# a 16×16 step took about 5 s instead of 0.15 s (threads waiting on each other); one thread
# is as fast as two when idle at these sizes and immune to the contention. Set here, it holds
# for the whole suite.
torch.set_num_threads(1)

FAST = {
    "backend": "world",  # always explicit: the default backend is the (slow) generative model
    "view_hw": (16, 16),
    "town_seed": 2,
    "backend_options": {"max_distance": 40.0},
    "weather": "clear_noon",
    "max_cycles": 3,
}

_ENVS: dict[str, object] = {}

DRIVE = np.array([8.0, 0.0, 0.0], dtype=np.float32)


def fast_env(**kwargs):
    config = {**FAST, **kwargs}
    key = repr(sorted(config.items()))
    if key not in _ENVS:
        _ENVS[key] = shareverse_env.parallel_env(**config)
    return _ENVS[key]


def drive_all(env, action=DRIVE):
    return {a: np.array(action, dtype=np.float32) for a in env.agents}


@pytest.fixture
def make_env():
    """``make_env(**kwargs)``: a fast world-backend env; keywords override :data:`FAST`."""
    return fast_env


@pytest.fixture
def drive():
    """``drive(env, action=DRIVE)``: the same pose delta for every live agent."""
    return drive_all
