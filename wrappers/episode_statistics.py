"""Per-agent episode return, length and duration for a parallel env.

At the step where an agent is done (terminated or truncated), its info gains

    infos[agent]["episode"] = {"r": return, "l": length in steps, "t": seconds since reset}

as Gymnasium's ``RecordEpisodeStatistics`` does for single-agent envs. When the last agent is
done, the episode's numbers of every agent are appended to :attr:`return_queue`,
:attr:`length_queue` (one ``{agent: value}`` dict per episode) and :attr:`time_queue` (the
episode's wall time), which keep the ``buffer_length`` most recent episodes. An episode cut
short by ``reset`` is not recorded.

Example:
    >>> import shareverse_env
    >>> from shareverse_env.wrappers import RecordEpisodeStatistics
    >>> env = RecordEpisodeStatistics(shareverse_env.parallel_env(backend="world", max_cycles=2))
    >>> obs, infos = env.reset(seed=0)
    >>> while env.agents:
    ...     obs, rew, term, trunc, infos = env.step({a: [0.0, 0.0, 0.0] for a in env.agents})
    >>> infos["agent_0"]["episode"]["l"], len(env.return_queue)
    (2, 1)
    >>> round(env.return_queue[-1]["agent_0"], 2)    # standing still costs 0.05 a step
    -0.1
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from pettingzoo import ParallelEnv
from pettingzoo.utils.wrappers import BaseParallelWrapper


class RecordEpisodeStatistics(BaseParallelWrapper):
    """Track each agent's return and length; see the module docstring.

    Args:
        env: any PettingZoo parallel env.
        buffer_length: episodes kept in the queues.
        stats_key: the info key the statistics are written under.

    Raises:
        ValueError: for ``buffer_length < 1``, or at a step when the inner env already writes
            ``stats_key`` into an info.
    """

    def __init__(
        self, env: ParallelEnv, buffer_length: int = 100, stats_key: str = "episode"
    ) -> None:
        if not isinstance(buffer_length, int) or buffer_length < 1:
            raise ValueError(
                f"RecordEpisodeStatistics: buffer_length must be an integer ≥ 1; "
                f"got {buffer_length!r}"
            )
        super().__init__(env)
        self.stats_key = stats_key
        self.return_queue: deque[dict[str, float]] = deque(maxlen=buffer_length)
        self.length_queue: deque[dict[str, int]] = deque(maxlen=buffer_length)
        self.time_queue: deque[float] = deque(maxlen=buffer_length)
        self.episode_count = 0
        self._returns: dict[str, float] = {}
        self._lengths: dict[str, int] = {}
        self._start = 0.0

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        result = self.env.reset(seed=seed, options=options)
        self._returns = dict.fromkeys(self.env.agents, 0.0)
        self._lengths = dict.fromkeys(self.env.agents, 0)
        self._start = time.perf_counter()
        return result

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        observations, rewards, terminations, truncations, infos = self.env.step(actions)
        elapsed = time.perf_counter() - self._start
        infos = dict(infos)
        for agent, reward in rewards.items():
            self._returns[agent] = self._returns.get(agent, 0.0) + float(reward)
            self._lengths[agent] = self._lengths.get(agent, 0) + 1
            if terminations.get(agent, False) or truncations.get(agent, False):
                info = dict(infos.get(agent, {}))
                if self.stats_key in info:
                    raise ValueError(
                        f"RecordEpisodeStatistics: infos[{agent!r}] already has the key "
                        f"{self.stats_key!r}; pass another stats_key"
                    )
                info[self.stats_key] = {
                    "r": self._returns[agent],
                    "l": self._lengths[agent],
                    "t": round(elapsed, 6),
                }
                infos[agent] = info
        if not self.env.agents and self._lengths:
            self.return_queue.append(dict(self._returns))
            self.length_queue.append(dict(self._lengths))
            self.time_queue.append(round(elapsed, 6))
            self.episode_count += 1
            self._lengths = {}  # recorded: further steps need a reset
        return observations, rewards, terminations, truncations, infos
