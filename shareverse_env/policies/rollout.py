"""Run whole episodes with a policy and summarise how each agent's episode ended.

Example:
    >>> import shareverse_env
    >>> from shareverse_env.policies import RouteFollowingExpert, run_episode
    >>> env = shareverse_env.parallel_env(backend="world", scenario="following", max_cycles=4)
    >>> outcomes = run_episode(env, RouteFollowingExpert(env), seed=0)
    >>> sorted(outcomes), outcomes["agent_0"].collision
    (['agent_0', 'agent_1'], None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pettingzoo import ParallelEnv

from shareverse_env.policies.base import Policy, reset_policy


@dataclass(frozen=True)
class Outcome:
    """How one agent's episode ended.

    Attributes:
        reached_goal: the car reached its goal.
        collision: the kind of the first collision (``"car"``, ``"obstacle"``, ``"off_road"``),
            or ``None``.
        steps: steps the agent took.
        episode_return: the sum of its rewards.
    """

    reached_goal: bool
    collision: str | None
    steps: int
    episode_return: float


def run_episode(
    env: ParallelEnv,
    policy: Policy,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Outcome]:
    """Reset ``env`` with ``seed``/``options``, drive it with ``policy`` until every agent is
    done, and return each agent's :class:`Outcome`."""
    reset_policy(policy, seed)
    observations, _ = env.reset(seed=seed, options=options)
    reached = dict.fromkeys(env.possible_agents, False)
    collision: dict[str, str | None] = dict.fromkeys(env.possible_agents)
    steps = dict.fromkeys(env.possible_agents, 0)
    returns = dict.fromkeys(env.possible_agents, 0.0)
    while env.agents:
        observations, rewards, _, _, infos = env.step(policy(observations))
        for agent, reward in rewards.items():
            steps[agent] += 1
            returns[agent] += float(reward)
            reached[agent] |= bool(infos[agent].get("reached_goal", False))
            if collision[agent] is None:
                collision[agent] = infos[agent].get("collision")
    return {a: Outcome(reached[a], collision[a], steps[a], returns[a]) for a in env.possible_agents}
