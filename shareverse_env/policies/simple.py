"""Baseline policies: uniformly random actions, and standing still.

Example:
    >>> import shareverse_env
    >>> from shareverse_env.policies import random_policy, still_policy
    >>> env = shareverse_env.parallel_env(backend="world", max_cycles=2)
    >>> obs, infos = env.reset(seed=0)
    >>> still_policy(env)(obs)["agent_0"].tolist()
    [0.0, 0.0, 0.0]
    >>> a = random_policy(env, seed=3)(obs)["agent_1"]
    >>> env.action_space("agent_1").contains(a)
    True
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv


class RandomPolicy:
    """Samples every live agent's action uniformly from its action space (any space type).

    Each agent samples from its own seeded copy of its space, so the policy neither touches the
    env's spaces nor depends on other random draws; ``reset(seed)`` starts the draws again.

    Example:
        >>> import shareverse_env
        >>> env = shareverse_env.parallel_env(backend="world", max_cycles=2)
        >>> _ = env.reset(seed=0)
        >>> policy = RandomPolicy(env, seed=7)
        >>> first = policy()
        >>> policy.reset(7)
        >>> again = policy()
        >>> bool(all((first[a] == again[a]).all() for a in first))
        True
    """

    def __init__(self, env: ParallelEnv, seed: int | None = 0) -> None:
        self.env = env
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        """Seed the draws (``None``: fresh entropy)."""
        self._spaces: dict[str, gymnasium.spaces.Space] = {}
        for k, agent in enumerate(self.env.possible_agents):
            space = copy.deepcopy(self.env.action_space(agent))
            space.seed(None if seed is None else int(seed) + k)
            self._spaces[agent] = space

    def __call__(self, observations: dict[str, Any] | None = None) -> dict[str, Any]:
        return {a: self._spaces[a].sample() for a in self.env.agents}


class StillPolicy:
    """Every live agent stands still: the zero pose delta.

    Example:
        >>> import shareverse_env
        >>> env = shareverse_env.parallel_env(backend="world", max_cycles=2, num_agents=1)
        >>> _ = env.reset(seed=0)
        >>> StillPolicy(env)()
        {'agent_0': array([0., 0., 0.], dtype=float32)}
    """

    def __init__(self, env: ParallelEnv) -> None:
        for agent in env.possible_agents:
            space = env.action_space(agent)
            if not (
                isinstance(space, gymnasium.spaces.Box)
                and space.contains(np.zeros(space.shape, space.dtype))
            ):
                raise ValueError(
                    f"still_policy: action_space({agent!r}) must be a Box that contains the zero "
                    f"pose delta (forward, lateral, yaw) = 0; got {space}"
                )
        self.env = env

    def __call__(self, observations: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        return {
            a: np.zeros(self.env.action_space(a).shape, self.env.action_space(a).dtype)
            for a in self.env.agents
        }


def random_policy(env: ParallelEnv, seed: int | None = 0) -> RandomPolicy:
    """Uniformly random actions for every live agent, reproducible from ``seed``."""
    return RandomPolicy(env, seed)


def still_policy(env: ParallelEnv) -> StillPolicy:
    """Every live agent stands still."""
    return StillPolicy(env)
