"""The PettingZoo API over the backends: the parallel env and its configuration, the AEC
version, the batched vector env, and the rewards.

Example:
    >>> from shareverse_env.envs import ShareVerseParallelEnv
    >>> env = ShareVerseParallelEnv(backend="world", max_cycles=2)
    >>> obs, infos = env.reset(seed=0)
    >>> obs["agent_0"].shape
    (128, 192, 3)
"""

from shareverse_env.envs.aec import ShareVerseAECEnv, aec_env
from shareverse_env.envs.parallel import (
    ACTION_FIELDS,
    ACTION_HIGH,
    ACTION_LOW,
    EnvConfig,
    ShareVerseParallelEnv,
    StepPlan,
)
from shareverse_env.envs.rewards import RewardConfig, chunk_reward
from shareverse_env.envs.vector import ShareVerseVectorEnv

__all__ = [
    "ACTION_FIELDS",
    "ACTION_HIGH",
    "ACTION_LOW",
    "EnvConfig",
    "RewardConfig",
    "ShareVerseAECEnv",
    "ShareVerseParallelEnv",
    "ShareVerseVectorEnv",
    "StepPlan",
    "aec_env",
    "chunk_reward",
]
