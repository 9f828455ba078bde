"""ShareVerse: several cars driving through one shared town, one 2.8-second chunk per step.

A PettingZoo ``ParallelEnv``. Every ``step(actions)`` takes one pose delta per live agent —
``(forward m, lateral m, yaw rad)`` in the agent's frame at the chunk's start — plans a smooth
29-frame trajectory for each (frame 0 is the current pose), and asks the backend for the 28 new
frames of every agent at once. Each agent observes its four roof cameras tiled 2×2
(``[[front, rear], [left, right]]``).

==================  ============================================================================
Agents              ``agent_0 … agent_{N-1}`` (``num_agents``, default 2); car k has a fixed colour
Action space        ``Box(low=ACTION_LOW, high=ACTION_HIGH, (3,), float32)``: forward ∈ [-5, 28] m,
                    lateral ∈ [-3, 3] m, yaw ∈ [-π/2, π/2] rad over the chunk
Observation space   ``Box(0, 255, (2H, 2W, 3), uint8)``: the last frame of the chunk (128×192)
State               ``(N, 8) float32``: x, y, cos yaw, sin yaw, goal x, goal y, route progress
                    in [0, 1], alive flag — see :meth:`ShareVerseParallelEnv.state`
Rewards             progress along the scenario's route, a goal bonus, collision and harsh-action
                    penalties (:class:`shareverse_env.envs.rewards.RewardConfig`)
Ends                termination on collision (car, obstacle, off-road) or at the goal;
                    truncation after ``max_cycles`` steps
Infos               ``frames (28, 2H, 2W, 3)`` every new frame (``(1, …)``, the last, with
                    ``chunk_frames="last"``); ``poses (28, 3)``; ``scenario``;
                    ``reward_terms``; ``collision``; ``reached_goal``
==================  ============================================================================

Example:
    >>> import shareverse_env
    >>> env = shareverse_env.parallel_env(num_agents=2, max_cycles=3)
    >>> obs, infos = env.reset(seed=0)
    >>> obs["agent_0"].shape
    (128, 192, 3)
    >>> actions = {a: env.action_space(a).sample() * 0 + [8.0, 0.0, 0.0] for a in env.agents}
    >>> obs, rewards, terms, truncs, infos = env.step(actions)
    >>> infos["agent_0"]["frames"].shape, infos["agent_0"]["poses"].shape
    ((28, 128, 192, 3), (28, 3))
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv

from shareverse_env.backends import (
    Backend,
    FirstFrames,
    WorldBackend,
    backend_class,
    default_backend_name,
)
from shareverse_env.core.geometry import CHUNK_FRAMES, CameraRig, check_finite_poses, plan_chunk
from shareverse_env.envs.rewards import RewardConfig, chunk_reward
from shareverse_env.world.collision import resolve_collisions
from shareverse_env.world.generator import generate_town
from shareverse_env.world.scenarios import (
    SCENARIOS,
    TRAVEL_RANGE,
    check_travel_range,
    make_scenario,
)
from shareverse_env.world.topdown import topdown_image
from shareverse_env.world.town import Town
from shareverse_env.world.vehicles import agent_colour
from shareverse_env.world.weather import WEATHERS

ACTION_LOW = np.array([-5.0, -3.0, -np.pi / 2], dtype=np.float32)
"""Lower bounds of (forward m, lateral m, yaw rad) over one chunk."""
ACTION_HIGH = np.array([28.0, 3.0, np.pi / 2], dtype=np.float32)
"""Upper bounds: 28 m per 2.8 s chunk is 10 m/s (36 km/h), a town speed limit."""
ACTION_FIELDS = ("forward", "lateral", "yaw")
CHUNK_FRAME_MODES = ("all", "last")
MAX_AGENTS = 32
"""Most cars an env takes: measured, every scenario places 32 in towns 0–2 of 4×4, 5×5 and 6×6
blocks (at 40 some fail); checked up front, so a config no town can host fails at once."""
ENV_RESET_OPTIONS = ("scenario", "weather", "town_seed", "start_poses")
"""The ``reset(options=...)`` keys every backend accepts (a backend may add its own)."""
TOLERATED_RESET_OPTIONS = ("options",)
"""Keys accepted and ignored: PettingZoo's API tests call ``reset(options={"options": 1})`` only
to check that the keyword exists."""


def check_seed(value: Any, name: str) -> None:
    """A ValueError naming ``name`` unless ``value`` is ``None`` or an integer ≥ 0.

    >>> check_seed(-1, "town_seed")
    Traceback (most recent call last):
    ValueError: town_seed must be None or an integer ≥ 0; got -1
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be None or an integer ≥ 0; got {value!r}")


"""Values of ``chunk_frames``: keep every frame of a chunk, or only its last."""


@dataclass(frozen=True)
class EnvConfig:
    """Every setting of the env, with its default. Keywords of :func:`parallel_env` fill it.

    Attributes:
        backend: ``"auto"`` (default: the generative model when trained weights are shipped or
            ``model`` is given, else the exact renderer), ``"world"`` (exact renderer),
            ``'shareverse'`` (the generative model), any name added with
            :func:`~shareverse_env.backends.register_backend`, or a
            :class:`~shareverse_env.backends.Backend` instance.
        model: for a backend that takes a model (``'shareverse'``): ``None`` (the shipped
            weights), a config name (``"tiny"``, ``"small"``: random weights), a pipeline folder
            or a pipeline object.
        backend_options: extra keywords of the backend (e.g. ``memory_source``,
            ``num_inference_steps``, ``device`` for the generative one).
        num_agents: cars in the shared world, 1 to :data:`MAX_AGENTS` (32).
        max_cycles: steps before truncation (each step is a 2.8 s chunk).
        scenario: one of :data:`~shareverse_env.world.scenarios.SCENARIOS`; ``None`` draws one per reset.
        weather: a preset name; ``None`` draws one per reset.
        town_seed: ``None`` draws a town per reset from the reset seed.
        town_blocks: size of the generated road grid, in blocks.
        view_hw: ``(H, W)`` of each camera view; multiples of 16. ``None``: the backend's
            :attr:`~shareverse_env.backends.Backend.default_view_hw` (``(64, 96)`` for the world
            backend, the model's own size for the generative one).
        invalid_action: ``"raise"`` (default) rejects out-of-bounds actions; ``"clip"`` clips them.
            Non-finite or malformed actions always raise.
        terminate_on_collision: end an agent's episode when it collides. When ``False`` the car
            stops where it hit and keeps receiving the penalty, which suits some training setups.
        minimap: add a top-down map of the town to :meth:`render`.
        reward: the reward weights.
        goal_distance: ``(lo, hi)`` metres of driving from start to goal, drawn per agent;
            ``60 <= lo <= hi``, and every goal lies ``lo``–``hi`` metres along its route
            (``(60, 60)`` gives exactly 60 m). A short range such as ``(60, 90)`` gives short
            episodes for reinforcement learning (goal a few chunks away). Routes never pass a
            junction twice, so a town has only so much road after a start (a default 4×4-block
            town reaches 1000 m, rarely 1600 m): a ``lo`` that no start can reach raises a
            one-line ``ValueError`` at reset, naming ``goal_distance`` and the longest route.
        chunk_frames: ``"all"`` (default) keeps every frame of a chunk in ``infos["frames"]`` and
            :meth:`render_chunk`; ``"last"`` keeps only the last one, the observation. Training
            rarely needs the 27 others, and a backend that renders frames independently (the
            world backend) then renders one frame per step instead of 28 (14–19× the steps/s,
            docs/benchmarks.md); a generative one still generates the whole chunk.
            Rewards, ends, poses and state are the same either way.
    """

    backend: str | Backend = "auto"
    model: Any = None
    backend_options: dict[str, Any] | None = None
    num_agents: int = 2
    max_cycles: int = 20
    scenario: str | None = None
    weather: str | None = None
    town_seed: int | None = None
    town_blocks: tuple[int, int] = (4, 4)
    view_hw: tuple[int, int] | None = None
    invalid_action: str = "raise"
    terminate_on_collision: bool = True
    minimap: bool = True
    reward: RewardConfig = field(default_factory=RewardConfig)
    goal_distance: tuple[float, float] = TRAVEL_RANGE
    chunk_frames: str = "all"

    def validate(self) -> None:
        if not isinstance(self.num_agents, int | np.integer) or self.num_agents < 1:
            raise ValueError(f"num_agents must be an integer ≥ 1; got {self.num_agents!r}")
        if self.num_agents > MAX_AGENTS:
            raise ValueError(
                f"num_agents={self.num_agents} is more than a town hosts: at most {MAX_AGENTS} "
                "cars (every scenario fits them in towns of 4×4 blocks or more; smaller towns "
                "host fewer)"
            )
        check_seed(self.town_seed, "town_seed")
        if not isinstance(self.max_cycles, int | np.integer) or self.max_cycles < 1:
            raise ValueError(f"max_cycles must be an integer ≥ 1; got {self.max_cycles!r}")
        if self.scenario is not None and self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; choose from {SCENARIOS}")
        if self.weather is not None and self.weather not in WEATHERS:
            raise ValueError(f"unknown weather {self.weather!r}; choose from {tuple(WEATHERS)}")
        if self.invalid_action not in ("raise", "clip"):
            raise ValueError(
                f"invalid_action must be 'raise' or 'clip'; got {self.invalid_action!r}"
            )
        check_travel_range(self.goal_distance, "goal_distance")
        if not isinstance(self.chunk_frames, str) or self.chunk_frames not in CHUNK_FRAME_MODES:
            raise ValueError(
                f"chunk_frames must be one of {CHUNK_FRAME_MODES}; got {self.chunk_frames!r}"
            )


@dataclass(frozen=True)
class StepPlan:
    """A validated, planned step (:meth:`ShareVerseParallelEnv.plan_step`): what the backend
    renders and what the rewards need.

    Attributes:
        actions: ``(N, 3)`` the actions as used (clipped), zeros for done agents.
        live: indices of the agents that act.
        poses: ``(N, 29, 3)`` every car's chunk; done cars stand still.
        collisions: per agent, the first collision of the chunk or ``None``.
        backend_poses: the poses to pass to ``backend.generate``: ``poses``, or with
            ``chunk_frames="last"`` on a backend that renders frames independently only the first
            (conditioning) and last poses ``(N, 2, 3)``.
        active: ``(N,) bool`` the agents whose views the backend must produce.
    """

    actions: np.ndarray
    live: np.ndarray
    poses: np.ndarray
    collisions: list[Any]
    backend_poses: np.ndarray
    active: np.ndarray


@functools.lru_cache(maxsize=4)
def _cached_town(seed: int, blocks: tuple[int, int]) -> Town:
    # Generating a town takes a moment; episodes in the same town reuse it.
    return generate_town(seed, blocks=blocks)


class ShareVerseParallelEnv(ParallelEnv):
    """The multi-agent driving env; see the module docstring for spaces, rewards and infos.

    Example:
        >>> env = ShareVerseParallelEnv(num_agents=1, scenario="following", weather="fog")
        >>> obs, infos = env.reset(seed=3)
        >>> env.agents, infos["agent_0"]["scenario"]["name"]
        (['agent_0'], 'following')
    """

    metadata: ClassVar[dict[str, Any]] = {
        "name": "shareverse_v0",
        "render_modes": ["rgb_array"],
        "render_fps": 10,
        "is_parallelizable": True,
    }

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(
                f"render_mode {render_mode!r} is not supported; use 'rgb_array' (frames as arrays) "
                "and shareverse_env.wrappers.RecordVideo to write MP4 files"
            )
        rig = kwargs.pop("rig", None)
        self.config = EnvConfig(**kwargs)
        self.config.validate()
        self.render_mode = render_mode
        self.max_cycles = int(self.config.max_cycles)
        self.backend: Backend = self._make_backend(rig)
        self.rig = self.backend.rig
        self.possible_agents = [f"agent_{k}" for k in range(self.config.num_agents)]
        self.agents: list[str] = []
        frame_shape = self.backend.frame_shape
        self._observation_spaces = {
            a: gymnasium.spaces.Box(0, 255, frame_shape, np.uint8) for a in self.possible_agents
        }
        self._action_spaces = {
            a: gymnasium.spaces.Box(ACTION_LOW, ACTION_HIGH, (3,), np.float32)
            for a in self.possible_agents
        }
        self.state_space = gymnasium.spaces.Box(
            -np.inf, np.inf, (self.config.num_agents, 8), np.float32
        )
        self._colours = np.array([agent_colour(k) for k in range(self.config.num_agents)])
        self.town: Town | None = None
        self._first_frame_renderer: WorldBackend | None = None
        self._town_blocks: tuple[int, int] | None = None
        self._reset_state()

    # ------------------------------------------------------------------ PettingZoo API

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._action_spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        """Start an episode.

        Args:
            seed: seeds the draw of town, scenario, weather and shifts (same seed, same episode).
            options: optional overrides: ``scenario`` (name), ``weather`` (name), ``town_seed``
                (int ≥ 0), ``start_poses`` (``(N, 3)`` world poses replacing the scenario's
                starts; routes and goals stay the scenario's), and the backend's own
                (:attr:`Backend.reset_options`, e.g. the generative backend's ``images``). Any
                other key is refused.
        """
        # Everything is checked before the seed generator moves: a refused reset changes nothing.
        check_seed(seed, "reset(seed=...)")
        options = self._checked_reset_options(options)
        cfg = self.config
        scenario_name = options.get("scenario", cfg.scenario)
        if scenario_name is not None and scenario_name not in SCENARIOS:
            raise ValueError(
                f"options['scenario']: unknown {scenario_name!r}; choose from {SCENARIOS}"
            )
        weather = options.get("weather", cfg.weather)
        if weather is not None and weather not in WEATHERS:
            raise ValueError(
                f"options['weather']: unknown {weather!r}; choose from {tuple(WEATHERS)}"
            )
        if "town_seed" in options:
            check_seed(options["town_seed"], "options['town_seed']")
        if seed is not None:
            self._seed_rng = np.random.default_rng(seed)
        elif not hasattr(self, "_seed_rng"):
            self._seed_rng = np.random.default_rng()
        rng = self._seed_rng
        if weather is None:
            weather = sorted(WEATHERS)[int(rng.integers(len(WEATHERS)))]
        town_seed = options.get("town_seed", cfg.town_seed)
        if town_seed is None:
            town_seed = int(rng.integers(2**31 - 1))
        town = self.town  # an env that stays in one town keeps it (and its renderer)
        blocks = tuple(cfg.town_blocks)
        if town is None or town.seed != int(town_seed) or self._town_blocks != blocks:
            town = _cached_town(int(town_seed), blocks)
            self._town_blocks = blocks
        scenario = make_scenario(
            town,
            scenario_name,
            cfg.num_agents,
            rng,
            travel_range=tuple(cfg.goal_distance),
            range_name="goal_distance",
        )
        starts = np.array([plan.start for plan in scenario.agents], dtype=np.float64)
        if "start_poses" in options:
            given = check_finite_poses(options["start_poses"], "options['start_poses']")
            if given.shape != starts.shape:
                raise ValueError(
                    f"options['start_poses'] must have shape {starts.shape} (one (x, y, yaw) per "
                    f"agent); got {given.shape}"
                )
            starts = given.copy()
        # The generative backend seeds its sampler from the episode's draw, so that the same
        # reset seed replays the same episode.
        options["noise_seed"] = int(rng.integers(2**31 - 1))
        first = self._render_first_frames(town, weather, starts)
        frames = self.backend.reset(town, weather, starts, options, first_frames=first)

        self._reset_state()
        self.town, self.weather, self.scenario = town, weather, scenario
        self._poses = starts
        self._alive = np.ones(cfg.num_agents, dtype=bool)
        self._prev_actions = np.zeros((cfg.num_agents, 3))
        self._progress = np.array(
            [
                plan.route.project(starts[k, :2][None])[0][0]
                for k, plan in enumerate(scenario.agents)
            ]
        )
        self._start_progress = self._progress.copy()
        self._last_frames = frames
        self._chunk_frames = frames[:, None]
        self._chunk_poses = starts[None].copy()
        self.agents = self.possible_agents[:]
        observations = {a: frames[k] for k, a in enumerate(self.agents)}
        infos = {
            a: {
                "frames": frames[k][None],
                "poses": starts[k][None].copy(),
                "scenario": scenario.to_info(k),
                "weather": weather,
                "town_seed": int(town_seed),
            }
            for k, a in enumerate(self.agents)
        }
        return observations, infos

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Advance every live agent by one chunk; see the module docstring for what comes back.

        ``step`` is three public parts, which a caller that batches the backends of several
        envs (:class:`~shareverse_env.envs.vector.ShareVerseVectorEnv`) runs itself:

        1. ``plan = env.plan_step(actions)``: validate and plan; changes nothing (so it may raise);
        2. ``frames = env.backend.generate(plan.backend_poses, plan.active)``: the pixels;
        3. ``env.finish_step(plan, frames)``: rewards, ends and bookkeeping; returns what ``step``
           returns.

        Example:
            >>> env = ShareVerseParallelEnv(backend="world", num_agents=1, max_cycles=2)
            >>> _ = env.reset(seed=0)
            >>> plan = env.plan_step({"agent_0": np.array([8.0, 0.0, 0.0])})
            >>> frames = env.backend.generate(plan.backend_poses, plan.active)
            >>> obs, rewards, terms, truncs, infos = env.finish_step(plan, frames)
            >>> frames.shape, obs["agent_0"].shape
            ((1, 28, 128, 192, 3), (128, 192, 3))
        """
        planned = self.plan_step(actions)
        frames = self.backend.generate(planned.backend_poses, planned.active)
        return self.finish_step(planned, frames)

    def plan_step(self, actions: dict[str, Any]) -> StepPlan:
        """Validate ``actions`` and plan every car's chunk (part 1 of :meth:`step`); changes
        nothing, so it may raise. Pass the plan to :meth:`finish_step` before planning again."""
        if self._poses is None:
            raise RuntimeError("step() called before reset(); call env.reset() first")
        if not self.agents:
            raise RuntimeError("step() called after every agent is done; call env.reset()")
        action_array = self._validate_actions(actions)  # raises before any state changes
        index = {a: k for k, a in enumerate(self.possible_agents)}
        live = np.array([index[a] for a in self.agents])

        plans = np.repeat(self._poses[:, None, :], CHUNK_FRAMES, axis=1)
        plans[live] = plan_chunk(self._poses[live], action_array[live])
        # Every car stops at its first collision, judged against where the others actually are.
        plans, collisions = resolve_collisions(self.town, plans, self._alive)
        # With chunk_frames="last", a backend that renders frames independently renders the last
        # frame alone; a generative one must produce the whole chunk to reach it (finish_step
        # then keeps the last frame).
        if self.config.chunk_frames == "last" and self.backend.renders_frames_independently:
            backend_poses = plans[:, [0, -1]]
        else:
            backend_poses = plans
        return StepPlan(action_array, live, plans, collisions, backend_poses, self._alive.copy())

    def finish_step(
        self, planned: StepPlan, frames: np.ndarray
    ) -> tuple[dict, dict, dict, dict, dict]:
        """Rewards, ends and bookkeeping of a planned step (part 3 of :meth:`step`), given the
        backend's ``frames`` ``(N, F, 2H, 2W, 3)`` for ``planned.backend_poses``; returns what
        :meth:`step` returns."""
        if self._poses is None or not self.agents:
            raise RuntimeError("finish_step() needs a plan_step() of the current episode")
        cfg = self.config
        if cfg.chunk_frames == "last" and frames.shape[1] != 1:
            frames = frames[:, -1:].copy()  # a copy: the rest of the chunk can be freed
        index = {a: k for k, a in enumerate(self.possible_agents)}
        action_array, live, plans = planned.actions, planned.live, planned.poses
        collisions = planned.collisions
        # Done agents keep showing their last frame (their car stands still in the world).
        for k in np.flatnonzero(~self._alive):
            frames[k] = self._last_frames[k]

        observations, rewards, terminations, truncations, infos = {}, {}, {}, {}, {}
        self._cycles += 1
        for k in live:
            agent = self.possible_agents[k]
            plan = self.scenario.agents[k]
            reward, terms, reached = chunk_reward(
                cfg.reward,
                plan.route,
                plan.goal,
                plans[k],
                action_array[k],
                self._prev_actions[k],
                collisions[k],
            )
            progress = float(plan.route.project(plans[k, -1, :2][None])[0][0])
            self._progress[k] = progress
            collided = collisions[k] is not None
            observations[agent] = frames[k, -1]
            rewards[agent] = float(reward)
            terminations[agent] = bool(reached or (collided and cfg.terminate_on_collision))
            truncations[agent] = bool(self._cycles >= self.max_cycles)
            infos[agent] = {
                "frames": frames[k],
                "poses": plans[k, 1:].copy(),
                "scenario": self.scenario.to_info(k),
                "reward_terms": terms,
                "collision": None if not collided else collisions[k].kind,
                "reached_goal": bool(reached),
            }

        self._poses = plans[:, -1].copy()
        self._prev_actions[live] = action_array[live]
        self._last_frames = frames[:, -1]
        self._chunk_frames = frames
        # The poses of the frames kept: the whole chunk, or its last pose only.
        self._chunk_poses = plans[:, -frames.shape[1] :].transpose(1, 0, 2).copy()
        for agent in list(self.agents):
            if terminations[agent] or truncations[agent]:
                self._alive[index[agent]] = False
        self.agents = [a for a in self.agents if not (terminations[a] or truncations[a])]
        return observations, rewards, terminations, truncations, infos

    def render(self) -> np.ndarray | None:
        """All agents' tiled views side by side (plus the minimap) at the latest frame."""
        if self.render_mode is None:
            gymnasium.logger.warn(
                "render() called without render_mode; pass render_mode='rgb_array'"
            )
            return None
        if self._poses is None:
            raise RuntimeError("render() called before reset()")
        return self._composite(self._last_frames[None], self._poses[None])[0]

    def render_chunk(self) -> np.ndarray:
        """``(F, H, W_total, 3)``: the :meth:`render` layout for every frame of the last chunk.

        After ``reset`` that is the single initial frame; after each ``step`` the 28 new frames
        (only the last with ``chunk_frames="last"``). :class:`shareverse_env.wrappers.RecordVideo`
        writes these.
        """
        if self._poses is None:
            raise RuntimeError("render_chunk() called before reset()")
        return self._composite(self._chunk_frames.transpose(1, 0, 2, 3, 4), self._chunk_poses)

    def state(self) -> np.ndarray:
        """Global state ``(N, 8) float32``, one row per possible agent.

        Columns: ``x, y`` (m), ``cos yaw, sin yaw``, goal ``x, y`` (m), route progress in
        ``[0, 1]`` (arc length covered over the route's length from the start), ``alive``
        (1 while the agent acts, 0 once it is done).
        """
        if self._poses is None:
            raise RuntimeError("state() called before reset()")
        out = np.zeros((self.config.num_agents, 8), dtype=np.float32)
        for k, plan in enumerate(self.scenario.agents):
            span = max(plan.goal_s - self._start_progress[k], 1e-6)
            out[k] = (
                self._poses[k, 0],
                self._poses[k, 1],
                np.cos(self._poses[k, 2]),
                np.sin(self._poses[k, 2]),
                plan.goal[0],
                plan.goal[1],
                np.clip((self._progress[k] - self._start_progress[k]) / span, 0.0, 1.0),
                float(self._alive[k]),
            )
        return out

    def close(self) -> None:
        self.backend.close()

    # ------------------------------------------------------------------ helpers

    def _make_backend(self, rig: CameraRig | None) -> Backend:
        cfg = self.config
        if not isinstance(cfg.backend, str):
            return cfg.backend
        options = dict(cfg.backend_options or {})
        name = default_backend_name(cfg.model) if cfg.backend == "auto" else cfg.backend
        cls = backend_class(name)
        if cls.takes_model:
            options["model"] = cfg.model
        elif cfg.model is not None:
            raise ValueError(
                f"model= is only used by backends that take a model; backend {name!r} does not"
            )
        view_hw = cls.default_view_hw if cfg.view_hw is None else tuple(cfg.view_hw)
        return cls(view_hw=view_hw, rig=rig, **options)

    def _render_first_frames(self, town: Town, weather: str, starts: np.ndarray) -> FirstFrames:
        """The episode's first frames with exact depth and sky, rendered from the env's town:
        by the backend itself when it is the town's renderer, else by a renderer of the env's
        own at the backend's view size and rig."""
        if isinstance(self.backend, WorldBackend):
            return self.backend.first_frames(town, weather, starts)
        if self._first_frame_renderer is None:
            self._first_frame_renderer = WorldBackend(self.backend.view_hw, self.backend.rig)
        return self._first_frame_renderer.first_frames(town, weather, starts)

    def _reset_state(self) -> None:
        self._poses: np.ndarray | None = None
        self._cycles = 0

    def _composite(self, frames: np.ndarray, poses: np.ndarray) -> np.ndarray:
        """``frames (F, N, h, w, 3)`` → ``(F, h, N·w [+ h], 3)`` side by side, minimap on the right."""
        tiles = np.concatenate(list(frames.transpose(1, 0, 2, 3, 4)), axis=2)
        if not self.config.minimap:
            return tiles
        height = tiles.shape[1]
        maps = np.stack(
            [
                topdown_image(
                    self.town,
                    size=height,
                    poses=p,
                    colours=self._colours,
                    routes=[plan.route.points for plan in self.scenario.agents],
                )
                for p in poses
            ]
        )
        return np.concatenate([tiles, maps], axis=2)

    def _checked_reset_options(self, options: dict[str, Any] | None) -> dict[str, Any]:
        """A copy of ``reset``'s ``options``, or a ValueError listing the known keys."""
        if options is None:
            return {}
        if not isinstance(options, dict):
            raise ValueError(f"reset options must be a dict or None; got {type(options).__name__}")
        known = (*ENV_RESET_OPTIONS, *type(self.backend).reset_options)
        unknown = [key for key in options if key not in (*known, *TOLERATED_RESET_OPTIONS)]
        if unknown:
            raise ValueError(
                f"reset options: unknown {', '.join(map(repr, unknown))} for backend "
                f"{type(self.backend).name!r}; known options: {', '.join(known)}"
            )
        return dict(options)

    def _validate_actions(self, actions: dict[str, Any]) -> np.ndarray:
        """``(N, 3)`` actions for every possible agent (zeros for the done ones), or raise."""
        if not isinstance(actions, dict):
            raise TypeError(
                f"actions must be a dict mapping each live agent to a (3,) array; got {type(actions).__name__}"
            )
        live = set(self.agents)
        unknown = [a for a in actions if a not in self.possible_agents]
        if unknown:
            raise KeyError(
                f"actions for unknown agents {unknown}; agents are {self.possible_agents}"
            )
        done = [a for a in actions if a not in live]
        if done:
            raise KeyError(
                f"actions for agents that are already done: {done}; live agents are {self.agents}"
            )
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise KeyError(f"actions missing for live agents {missing}; every live agent needs one")
        out = np.zeros((self.config.num_agents, 3))
        for k, agent in enumerate(self.possible_agents):
            if agent in actions:
                out[k] = self.validate_action(agent, actions[agent])
        return out

    def validate_action(self, agent: str, value: Any) -> np.ndarray:
        """``agent``'s action as a ``(3,) float64`` array (clipped when ``invalid_action`` is
        ``"clip"``), or a clear error naming the agent and the field; changes nothing.

        Example:
            >>> env = ShareVerseParallelEnv(backend="world", num_agents=1)
            >>> env.validate_action("agent_0", [8, 0, 0]).tolist()
            [8.0, 0.0, 0.0]
            >>> env.validate_action("agent_0", np.zeros(2))
            Traceback (most recent call last):
            ...
            ValueError: action of agent_0: expected shape (3,) = (forward m, lateral m, yaw rad); got shape (2,)
        """
        arr = np.asarray(value)
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
        ):
            raise TypeError(
                f"action of {agent}: expected a real-valued array of (forward, lateral, yaw); "
                f"got dtype {arr.dtype}"
            )
        if arr.shape != (3,):
            raise ValueError(
                f"action of {agent}: expected shape (3,) = (forward m, lateral m, yaw rad); "
                f"got shape {arr.shape}"
            )
        arr = arr.astype(np.float64)
        bad = [ACTION_FIELDS[i] for i in np.flatnonzero(~np.isfinite(arr))]
        if bad:
            raise ValueError(f"action of {agent}: non-finite {', '.join(bad)} in {arr.tolist()}")
        low, high = ACTION_LOW.astype(np.float64), ACTION_HIGH.astype(np.float64)
        outside = [
            f"{ACTION_FIELDS[i]}={arr[i]:.4g} not in [{low[i]:.4g}, {high[i]:.4g}]"
            for i in range(3)
            if not (low[i] - 1e-6 <= arr[i] <= high[i] + 1e-6)
        ]
        if outside and self.config.invalid_action == "raise":
            raise ValueError(
                f"action of {agent} out of bounds: {'; '.join(outside)} "
                "(pass invalid_action='clip' to clip instead)"
            )
        return np.clip(arr, low, high)
