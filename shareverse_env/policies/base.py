"""What a policy is: a callable from observations to one action per live agent.

Every policy of :mod:`shareverse_env.policies` follows :class:`Policy`. Policies that draw random
numbers also have ``reset(seed)`` so that wrappers such as
:class:`~shareverse_env.wrappers.SingleAgentEnv` can replay an episode from its reset seed.

Example:
    >>> import numpy as np
    >>> class Forward:
    ...     def __call__(self, observations=None):
    ...         return {"agent_0": np.array([8.0, 0.0, 0.0], np.float32)}
    >>> isinstance(Forward(), Policy)
    True
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """``policy(observations) -> {agent: action}`` for the env's live agents it drives."""

    def __call__(self, observations: dict[str, Any] | None = None) -> dict[str, np.ndarray]: ...


def reset_policy(policy: Any, seed: int | None) -> None:
    """Call ``policy.reset(seed)`` when the policy has one (stateless policies need none)."""
    reset = getattr(policy, "reset", None)
    if callable(reset):
        reset(seed)
