"""Policies for the ShareVerse env: a route-following expert and two baselines.

A policy is a callable ``policy(observations) -> {agent: action}`` for the env's live agents
(:class:`Policy`). :func:`make_policy` builds one by name.

==============  ================================================================================
``"expert"``    :class:`RouteFollowingExpert`: follows each scenario route at town speed, keeps
                its distance to cars ahead (time-to-collision rule), checks every chunk for
                collisions before driving it
``"random"``    :func:`random_policy`: uniform samples of the action space
``"still"``     :func:`still_policy`: the zero pose delta, every car stands where it is
a path          a trained :class:`ActorCritic` checkpoint (``.safetensors``), loaded by
                :func:`load_policy`; wrap the env with :func:`shareverse_env.wrappers.wrap_for_policy` first when the
                network reads wrapped observations
==============  ================================================================================

Example:
    >>> import shareverse_env
    >>> from shareverse_env.policies import make_policy
    >>> env = shareverse_env.parallel_env(backend="world", max_cycles=2)
    >>> obs, infos = env.reset(seed=0)
    >>> policy = make_policy("expert", env)
    >>> obs, rewards, terms, truncs, infos = env.step(policy(obs))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pettingzoo import ParallelEnv

from shareverse_env.policies.actor_critic import (
    ActorCritic,
    ActorCriticConfig,
    LearnedPolicy,
    load_policy,
    save_policy,
)
from shareverse_env.policies.base import Policy, reset_policy
from shareverse_env.policies.expert import RouteFollowingExpert
from shareverse_env.policies.rollout import Outcome, run_episode
from shareverse_env.policies.simple import RandomPolicy, StillPolicy, random_policy, still_policy

POLICIES: tuple[str, ...] = ("expert", "random", "still")
"""Names :func:`make_policy` knows."""


def make_policy(
    name: str | os.PathLike[str], env: ParallelEnv, seed: int | None = 0, **kwargs: Any
) -> Policy:
    """The policy called ``name`` (one of :data:`POLICIES`, or a checkpoint path) for ``env``.

    ``seed`` seeds the random policy and a sampling learned policy (the others are
    deterministic); ``kwargs`` go to the policy's constructor (e.g. ``cruise_speed=6.0`` or
    ``agents=[...]`` for the expert, ``deterministic=False`` for a checkpoint).
    """
    if isinstance(name, str) and name in POLICIES:
        if name == "expert":
            return RouteFollowingExpert(env, **kwargs)
        if name == "random":
            return random_policy(env, seed, **kwargs)
        return still_policy(env, **kwargs)
    if Path(name).suffix in (".safetensors", ".json"):
        return load_policy(name, env, seed=seed, **kwargs)
    raise ValueError(
        f"make_policy: unknown policy {str(name)!r}; expected one of {POLICIES} or the path of a "
        "checkpoint ending in .safetensors"
    )


__all__ = [
    "POLICIES",
    "ActorCritic",
    "ActorCriticConfig",
    "LearnedPolicy",
    "Outcome",
    "Policy",
    "RandomPolicy",
    "RouteFollowingExpert",
    "StillPolicy",
    "load_policy",
    "make_policy",
    "random_policy",
    "reset_policy",
    "run_episode",
    "save_policy",
    "still_policy",
]
