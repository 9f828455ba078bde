"""A single-agent ``gymnasium.Env`` view of the parallel env: you drive one car, a policy the rest.

``SingleAgentEnv(parallel_env, agent="agent_0", others=policy)`` exposes ``agent``'s observation
and action spaces; at every step it asks ``others`` for the other live agents' actions (by
default the :class:`~shareverse_env.policies.RouteFollowingExpert`, driving all of them) and steps
the shared world. The episode ends when the controlled car is done (its goal, a collision or
truncation), whatever the others do; the other agents' rewards and infos are dropped.

``reset(seed=...)`` seeds the parallel env and, when it has a ``reset(seed)`` method, the
``others`` policy, so the same seed replays the same episode (Gymnasium's ``check_env`` checks
this).

Example:
    >>> import shareverse_env
    >>> from shareverse_env.wrappers import SingleAgentEnv
    >>> env = SingleAgentEnv(shareverse_env.parallel_env(backend="world", max_cycles=3))
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, env.action_space.shape
    ((128, 192, 3), (3,))
    >>> obs, reward, terminated, truncated, info = env.step(env.action_space.low * 0 + [8, 0, 0])
    >>> info["scenario"]["index"]
    0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv

from shareverse_env.policies import RouteFollowingExpert, reset_policy

OthersPolicy = Callable[[dict[str, Any]], dict[str, Any]]


class SingleAgentEnv(gymnasium.Env):
    """Control ``agent`` of a parallel env; ``others`` drives every other agent.

    Args:
        parallel_env: a PettingZoo parallel env (the ShareVerse env or a wrapper around it).
        agent: the controlled agent; default the first of ``possible_agents``.
        others: ``others(observations) -> {agent: action}`` for the other live agents (extra
            entries, e.g. for the controlled agent, are ignored); default a
            :class:`~shareverse_env.policies.RouteFollowingExpert` driving the other agents,
            which needs their action spaces to be the env's pose deltas.

    Raises:
        ValueError: for an unknown ``agent``, or a default expert over other agents whose
            action spaces are not the pose-delta ``Box`` (wrap those with
            ``MetaActions(env, agents=[...])`` for the controlled agent only, or pass ``others``).
    """

    def __init__(
        self,
        parallel_env: ParallelEnv,
        agent: str | None = None,
        others: OthersPolicy | None = None,
    ) -> None:
        possible = list(parallel_env.possible_agents)
        if agent is None:
            agent = possible[0]
        if agent not in possible:
            raise ValueError(
                f"SingleAgentEnv: agent must be one of possible_agents {possible}; got {agent!r}"
            )
        self.parallel_env = parallel_env
        self.agent = agent
        self.other_agents = [a for a in possible if a != agent]
        if others is None:
            raw = parallel_env.unwrapped
            for other in self.other_agents:
                if parallel_env.action_space(other) != raw.action_space(other):
                    raise ValueError(
                        f"SingleAgentEnv: the default expert drives {other!r} with pose deltas, "
                        f"but its action_space is {parallel_env.action_space(other)}; apply the "
                        f"action wrapper to the controlled agent only (e.g. MetaActions(env, "
                        f"agents=[{agent!r}])) or pass others="
                    )
            others = RouteFollowingExpert(parallel_env, agents=self.other_agents)
        self.others = others
        self.observation_space = parallel_env.observation_space(agent)
        self.action_space = parallel_env.action_space(agent)
        self.metadata = dict(getattr(parallel_env, "metadata", {}) or {})
        self.render_mode = getattr(parallel_env, "render_mode", None)
        self._observations: dict[str, Any] | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        reset_policy(self.others, seed)
        observations, infos = self.parallel_env.reset(seed=seed, options=options)
        self._observations = observations
        return observations[self.agent], infos[self.agent]

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._observations is None:
            raise RuntimeError("SingleAgentEnv: step() called before reset()")
        if self.agent not in self.parallel_env.agents:
            raise RuntimeError(
                f"SingleAgentEnv: {self.agent} is done; call reset() to start a new episode"
            )
        live_others = [a for a in self.parallel_env.agents if a != self.agent]
        actions = {}
        if live_others:
            planned = self.others(self._observations)
            missing = [a for a in live_others if a not in planned]
            if missing:
                raise ValueError(
                    f"SingleAgentEnv: others returned no action for live agents {missing}"
                )
            actions = {a: planned[a] for a in live_others}
        actions[self.agent] = action
        observations, rewards, terminations, truncations, infos = self.parallel_env.step(actions)
        self._observations = observations
        return (
            observations[self.agent],
            float(rewards[self.agent]),
            bool(terminations[self.agent]),
            bool(truncations[self.agent]),
            infos[self.agent],
        )

    def render(self) -> np.ndarray | None:
        return self.parallel_env.render()

    def close(self) -> None:
        self.parallel_env.close()
