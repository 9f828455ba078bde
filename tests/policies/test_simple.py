"""Random and still policies, and make_policy."""

import numpy as np
import pytest
from shareverse_env.wrappers import MetaActions

from shareverse_env.policies import (
    POLICIES,
    RandomPolicy,
    RouteFollowingExpert,
    StillPolicy,
    make_policy,
)


def test_make_policy_by_name(make_env):
    env = make_env()
    assert isinstance(make_policy("expert", env), RouteFollowingExpert)
    assert isinstance(make_policy("random", env, seed=1), RandomPolicy)
    assert isinstance(make_policy("still", env), StillPolicy)
    assert POLICIES == ("expert", "random", "still")
    with pytest.raises(ValueError, match=r"make_policy: unknown policy 'greedy'"):
        make_policy("greedy", env)


def test_random_is_seeded_and_in_bounds(make_env):
    env = make_env()
    env.reset(seed=0)
    a, b = make_policy("random", env, seed=3), make_policy("random", env, seed=3)
    first, second = a(), b()
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert all(env.action_space(k).contains(v) for k, v in first.items())
    assert not np.array_equal(make_policy("random", env, seed=4)()["agent_0"], first["agent_0"])


def test_random_samples_any_action_space(make_env):
    env = MetaActions(make_env())
    env.reset(seed=0)
    actions = make_policy("random", env)()
    assert all(env.action_space(k).contains(v) for k, v in actions.items())


def test_still_stands_still(make_env):
    env = make_env()
    env.reset(seed=1)
    before = env.state().copy()
    env.step(make_policy("still", env)())
    assert np.allclose(env.state()[:, :4], before[:, :4])
    with pytest.raises(ValueError, match=r"still_policy: action_space\('agent_0'\) must be a Box"):
        make_policy("still", MetaActions(make_env()))
