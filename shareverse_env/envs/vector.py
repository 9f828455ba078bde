"""Batched envs: ``B`` independent ShareVerse worlds stepped together.

:class:`ShareVerseVectorEnv` holds ``B`` :class:`~shareverse_env.envs.parallel.ShareVerseParallelEnv`
instances built with the same keywords. On the generative backend all of them share one model,
and every ``step`` generates the chunks of all ``B`` worlds in ONE pipeline call (one denoiser
forward per denoising step, worlds on the transformer's batch axis: agents attend across agents
of their own world only, and each world reads its own spatial memory). On the world backend the
envs are simply stepped in turn.

Data layout (``N = num_agents``, agents in ``possible_agents`` order):

==================  ===========================================================================
``observations``    ``{agent: (B, 2H, 2W, 3) uint8}``
``actions``         ``{agent: (B, 3)}`` or one array ``(B, N, 3)``; rows of inactive agents are
                    ignored (any finite value will do)
``rewards``         ``{agent: (B,) float32}``
``terminations``,   ``{agent: (B,) bool}``: ``True`` only on the step where that agent's episode
``truncations``     ends
``infos``           a list of ``B`` dicts, env ``i``'s own ``{agent: info}`` of this step (agents
                    that did not act this step have none); ``chunk_frames="last"`` applies as in
                    one env (one frame rendered per agent on the world backend)
``active``          ``(B, N) bool`` property: the agents whose actions the next step uses
==================  ===========================================================================

**Autoreset** follows Gymnasium's default vector mode, ``AutoresetMode.NEXT_STEP``: an env whose
episode ended (every agent terminated or truncated) keeps showing its final observations, and the
next ``step`` resets it instead of stepping it — for that env the step returns the reset
observations and infos, zero rewards and all-``False`` flags, and ignores its actions (its row
of :attr:`active` is all ``False`` in between). Autoresets draw from each env's own seed stream,
so a seeded vector env replays the same episodes.

An agent that is done while others in its env drive on is inactive: its observation stays its
last one, its reward is 0 and its flags are ``False`` (they were ``True`` once, on the step it
ended). Train on the rows where ``active`` was ``True`` before the step.

Example:
    >>> import numpy as np
    >>> from shareverse_env.envs.vector import ShareVerseVectorEnv
    >>> envs = ShareVerseVectorEnv(num_envs=2, backend="world", max_cycles=2)
    >>> obs, infos = envs.reset(seed=0)
    >>> obs["agent_0"].shape, len(infos)
    ((2, 128, 192, 3), 2)
    >>> actions = np.tile(np.float32([8.0, 0.0, 0.0]), (2, 2, 1))  # (B, N, 3)
    >>> obs, rewards, terms, truncs, infos = envs.step(actions)
    >>> rewards["agent_0"].shape, envs.active.shape
    ((2,), (2, 2))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector.utils import batch_space

from shareverse_env.backends import Backend, backend_class, default_backend_name
from shareverse_env.envs.parallel import ShareVerseParallelEnv

Batch = dict[str, np.ndarray]
"""One array per agent, rows are envs."""
Infos = list[dict[str, dict[str, Any]]]
"""One PettingZoo infos dict per env."""


class ShareVerseVectorEnv:
    """``num_envs`` ShareVerse worlds stepped together; see the module docstring for the layout.

    Args:
        num_envs: number of worlds ``B`` (≥ 1).
        **env_kwargs: keywords of :func:`shareverse_env.parallel_env` for every env (``backend``
            must be a name: every world needs its own backend, as memory is per world). On the
            generative backend the model is loaded once and shared.

    Example:
        >>> envs = ShareVerseVectorEnv(2, model="tiny", max_cycles=1)  # the generative backend
        >>> obs, infos = envs.reset(seed=[3, 7])
        >>> import numpy as np
        >>> obs, *_ = envs.step(np.zeros((2, 2, 3), np.float32))  # one pipeline call, 2 worlds
        >>> obs["agent_1"].shape
        (2, 64, 96, 3)
    """

    def __init__(self, num_envs: int, **env_kwargs: Any) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer):
            raise TypeError(f"num_envs must be an int; got {num_envs!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1; got {num_envs}")
        backend = env_kwargs.get("backend", "auto")
        if isinstance(backend, Backend):
            raise ValueError(
                "backend must be a name (e.g. 'world', 'auto'): each of the vector env's worlds "
                "builds its own backend (its own memory and renderer)"
            )
        name = default_backend_name(env_kwargs.get("model")) if backend == "auto" else backend
        cls = backend_class(name)
        if cls.takes_model and cls.shares_weights:
            # Load the model once for every world (its weights are read-only at inference).
            options = env_kwargs.get("backend_options") or {}
            env_kwargs = {
                **env_kwargs,
                "model": cls.load_shared_model(env_kwargs.get("model"), options),
            }
        self.num_envs = int(num_envs)
        self.envs = [ShareVerseParallelEnv(**env_kwargs) for _ in range(self.num_envs)]
        first = self.envs[0]
        self.possible_agents: list[str] = list(first.possible_agents)
        self.metadata = first.metadata
        # Built once: code that compares spaces by identity sees the same object every call.
        self._observation_spaces = {
            a: batch_space(first.observation_space(a), self.num_envs) for a in self.possible_agents
        }
        self._action_spaces = {
            a: batch_space(first.action_space(a), self.num_envs) for a in self.possible_agents
        }
        self._obs = {
            a: np.zeros((self.num_envs, *first.observation_space(a).shape), np.uint8)
            for a in self.possible_agents
        }
        self._needs_reset = np.ones(self.num_envs, dtype=bool)
        self._started = False

    # ------------------------------------------------------------------ spaces
    def single_observation_space(self, agent: str) -> gymnasium.spaces.Box:
        """One env's observation space of ``agent``."""
        return self.envs[0].observation_space(agent)

    def single_action_space(self, agent: str) -> gymnasium.spaces.Box:
        """One env's action space of ``agent``."""
        return self.envs[0].action_space(agent)

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        """The batched observation space ``(B, 2H, 2W, 3)`` of ``agent``."""
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Box:
        """The batched action space ``(B, 3)`` of ``agent``."""
        return self._action_spaces[agent]

    @property
    def active(self) -> np.ndarray:
        """``(B, N) bool``: the agents whose actions the next :meth:`step` uses."""
        out = np.zeros((self.num_envs, len(self.possible_agents)), dtype=bool)
        for i, env in enumerate(self.envs):
            if not self._needs_reset[i]:
                out[i] = [a in env.agents for a in self.possible_agents]
        return out

    # ------------------------------------------------------------------ API
    def reset(
        self,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | Sequence[dict[str, Any] | None] | None = None,
    ) -> tuple[Batch, Infos]:
        """Reset every env.

        Args:
            seed: an int seeds env ``i`` with ``seed + i`` (as Gymnasium's vector envs do); a
                sequence gives one seed (or ``None``) per env.
            options: one options dict for every env, or a sequence of one per env (see
                :meth:`ShareVerseParallelEnv.reset`).
        """
        seeds = self._per_env(seed, "seed", lambda s, i: None if s is None else int(s) + i)
        opts = self._per_env(options, "options", lambda o, i: o, mapping=True)
        infos = [self._reset_env(i, seeds[i], opts[i]) for i in range(self.num_envs)]
        self._needs_reset[:] = False
        self._started = True
        return self._observations(), infos

    def step(
        self, actions: Mapping[str, Any] | np.ndarray
    ) -> tuple[Batch, Batch, Batch, Batch, Infos]:
        """Step every env by one chunk (autoresetting the ones that ended at the last step)."""
        if not self._started:
            raise RuntimeError("step() called before reset(); call reset() first")
        batched = self._batched_actions(actions)
        count = len(self.possible_agents)
        rewards = np.zeros((self.num_envs, count), np.float32)
        terms = np.zeros((self.num_envs, count), bool)
        truncs = np.zeros((self.num_envs, count), bool)
        infos: Infos = [{} for _ in range(self.num_envs)]

        # Plan every stepping env first: a bad action raises before any env changes.
        stepping = [i for i in range(self.num_envs) if not self._needs_reset[i]]
        plans = []
        for i in stepping:
            env = self.envs[i]
            env_actions = {a: batched[i, self.possible_agents.index(a)] for a in env.agents}
            try:
                plans.append(env.plan_step(env_actions))
            except (ValueError, TypeError, KeyError) as err:
                raise type(err)(f"env {i}: {err}") from err
        if stepping:
            envs = [self.envs[i] for i in stepping]
            backends = [env.backend for env in envs]
            poses = [plan.backend_poses for plan in plans]
            frames = _generate_many(backends, poses, [plan.active for plan in plans])
            for i, env, plan, chunk in zip(stepping, envs, plans, frames, strict=True):
                obs, rew, term, trunc, info = env.finish_step(plan, chunk)
                for k, agent in enumerate(self.possible_agents):
                    if agent in obs:
                        self._obs[agent][i] = obs[agent]
                        rewards[i, k] = rew[agent]
                        terms[i, k] = term[agent]
                        truncs[i, k] = trunc[agent]
                infos[i] = info

        # NEXT_STEP autoreset: the envs that ended at the previous step start over now.
        for i in np.flatnonzero(self._needs_reset):
            infos[i] = self._reset_env(int(i), None, None)
        self._needs_reset = np.array([not env.agents for env in self.envs])
        split = {
            name: {a: arr[:, k].copy() for k, a in enumerate(self.possible_agents)}
            for name, arr in (("rew", rewards), ("term", terms), ("trunc", truncs))
        }
        return self._observations(), split["rew"], split["term"], split["trunc"], infos

    def close(self) -> None:
        """Close every env."""
        for env in self.envs:
            env.close()

    def __repr__(self) -> str:
        return (
            f"ShareVerseVectorEnv(num_envs={self.num_envs}, backend={self.envs[0].backend.name!r})"
        )

    # ------------------------------------------------------------------ helpers
    def _reset_env(
        self, i: int, seed: int | None, options: dict[str, Any] | None
    ) -> dict[str, dict[str, Any]]:
        obs, info = self.envs[i].reset(seed=seed, options=options)
        for agent in self.possible_agents:
            self._obs[agent][i] = obs[agent]
        return info

    def _observations(self) -> Batch:
        return {a: buf.copy() for a, buf in self._obs.items()}

    def _per_env(self, value: Any, name: str, convert: Any, mapping: bool = False) -> list[Any]:
        """``value`` for every env: a sequence gives one each, anything else is shared."""
        if value is None or (mapping and isinstance(value, Mapping)) or np.isscalar(value):
            return [convert(value, i) for i in range(self.num_envs)]
        values = list(value)
        if len(values) != self.num_envs:
            raise ValueError(
                f"{name} must have one entry per env ({self.num_envs}); got {len(values)}"
            )
        return values

    def _batched_actions(self, actions: Mapping[str, Any] | np.ndarray) -> np.ndarray:
        """``(B, N, 3)`` float64 from a dict of ``(B, 3)`` arrays or one ``(B, N, 3)`` array."""
        shape = (self.num_envs, len(self.possible_agents), 3)
        if isinstance(actions, Mapping):
            unknown = [a for a in actions if a not in self.possible_agents]
            if unknown:
                raise KeyError(
                    f"actions for unknown agents {unknown}; agents are {self.possible_agents}"
                )
            out = np.zeros(shape)
            needed = self.active.any(axis=0)
            for k, agent in enumerate(self.possible_agents):
                if agent not in actions:
                    if needed[k]:
                        raise KeyError(f"actions missing for {agent}, which is active in some env")
                    continue
                value = np.asarray(actions[agent])
                if value.shape != (self.num_envs, 3):
                    raise ValueError(
                        f"actions[{agent!r}] must have shape ({self.num_envs}, 3); got {value.shape}"
                    )
                out[:, k] = value
            return out
        value = np.asarray(actions)
        if value.shape != shape:
            raise ValueError(
                f"actions must be a dict of (B, 3) arrays or one array of shape {shape}; "
                f"got {value.shape}"
            )
        return value


def _generate_many(
    backends: list[Backend], poses: list[np.ndarray], active: list[np.ndarray]
) -> list[np.ndarray]:
    """Frames of every world's chunk: one batched call where the backends share a type."""
    kinds = {type(b) for b in backends}
    if len(kinds) == 1:
        return kinds.pop().generate_many(backends, poses, active)
    return [b.generate(p, a) for b, p, a in zip(backends, poses, active, strict=True)]
