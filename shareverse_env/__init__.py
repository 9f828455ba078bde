"""shareverse_env: a PettingZoo env of several cars driving through one shared, generated world.

Entry points:

* :func:`parallel_env` — the ``ParallelEnv`` (all agents act at once; each step adds one chunk of
  28 new frames per agent: a 33-frame window of 4 memory frames, the conditioning frame and 28
  new ones).
* :func:`env` — the same env as an AEC env (``pettingzoo.utils.parallel_to_aec``, each action
  checked when it is given: :mod:`shareverse_env.envs.aec`).
* ``pettingzoo.make("parallel", "shareverse/ShareVerse-v0")`` (or ``"aec"``) through PettingZoo's
  registry, once ``shareverse_env`` is imported.

Example:
    >>> import shareverse_env
    >>> env = shareverse_env.parallel_env(max_cycles=2)
    >>> obs, infos = env.reset(seed=0)
    >>> sorted(obs)
    ['agent_0', 'agent_1']
"""

from __future__ import annotations

from typing import Any

from shareverse_env.envs.parallel import ACTION_HIGH, ACTION_LOW, EnvConfig, ShareVerseParallelEnv

__version__ = "0.1.0"

ENV_ID = "shareverse/ShareVerse-v0"


def parallel_env(**kwargs: Any) -> ShareVerseParallelEnv:
    """The ShareVerse ``ParallelEnv``; keywords are those of :class:`EnvConfig` plus ``render_mode``."""
    return ShareVerseParallelEnv(**kwargs)


def env(**kwargs: Any):
    """The AEC version of :func:`parallel_env` (same keywords)."""
    from shareverse_env.envs.aec import aec_env

    return aec_env(parallel_env(**kwargs))


raw_env = ShareVerseParallelEnv


def _register() -> None:
    try:
        from pettingzoo import register
    except ImportError:  # PettingZoo before the registry (< 1.27): nothing to register
        return
    from pettingzoo.env_registry.registration import aec_registry, parallel_registry

    if ENV_ID not in parallel_registry:
        register("parallel", ENV_ID, entry_point="shareverse_env:parallel_env")
    if ENV_ID not in aec_registry:
        register("aec", ENV_ID, entry_point="shareverse_env:env")


_register()

__all__ = [
    "ACTION_HIGH",
    "ACTION_LOW",
    "ENV_ID",
    "EnvConfig",
    "ShareVerseParallelEnv",
    "env",
    "parallel_env",
    "raw_env",
]
