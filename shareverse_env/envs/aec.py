"""The AEC form of the env: PettingZoo's ``parallel_to_aec``, with each action checked when given.

PettingZoo's converter stores every agent's action and steps the parallel env only after the
last agent of the cycle; a malformed action would then surface at a later agent's turn, and
again on every later ``step``, because the bad action stays stored. Here each action is
validated in its own ``step`` call, so the error names the agent that gave it and the env is
left as it was (the action is not stored).
"""

from __future__ import annotations

from typing import Any

from pettingzoo.utils.conversions import parallel_to_aec_wrapper
from pettingzoo.utils.wrappers import OrderEnforcingWrapper

from shareverse_env.envs.parallel import ShareVerseParallelEnv


class ShareVerseAECEnv(parallel_to_aec_wrapper):
    """``parallel_to_aec_wrapper`` that validates each live agent's action as it is given.

    Example:
        >>> import numpy as np
        >>> e = ShareVerseAECEnv(ShareVerseParallelEnv(backend="world", num_agents=2))
        >>> e.reset(seed=0)
        >>> e.step(np.zeros(2))
        Traceback (most recent call last):
        ...
        ValueError: action of agent_0: expected shape (3,) = (forward m, lateral m, yaw rad); got shape (2,)
        >>> e.agent_selection  # still agent_0's turn: nothing was stored
        'agent_0'
    """

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if not (self.terminations[agent] or self.truncations[agent]):
            self.env.validate_action(agent, action)
        super().step(action)


def aec_env(parallel: ShareVerseParallelEnv) -> OrderEnforcingWrapper:
    """``parallel`` as an AEC env, wrapped like PettingZoo's ``parallel_to_aec`` does."""
    return OrderEnforcingWrapper(ShareVerseAECEnv(parallel))
