"""Synthesis of synchronised multi-agent driving sequences in the procedural town (paper Sec. 3.5).

One sequence is one scenario (:data:`~shareverse_env.world.scenarios.SCENARIOS`) in one town and
weather. Every agent is a route-following "expert": it drives along its scenario route at a
speed drawn from :data:`SPEED_RANGE` that changes smoothly over the sequence, may wait a moment
before it starts, and weaves a few decimetres about the lane centre. A car that starts behind
another on the same lane is never faster than it. Draws whose trajectories collide (with each
other, with an obstacle, or leaving the road) within the sequence plus :data:`LOOKAHEAD_FRAMES`
are rejected and redrawn from the next seed of a fixed sequence; after :data:`MAX_ATTEMPTS`
the draw that stays collision-free longest is kept if it covers the sequence, else an error is
raised. Every frame of every agent is then rendered with all other agents' cars in view.

Example:
    >>> data = synthesize_sequence(0, 3, "head_on", "clear_noon", num_frames=5, view_hw=(32, 48),
    ...                            town_blocks=(2, 2))
    >>> data.frames.shape, data.depth.shape, data.poses.shape
    ((2, 5, 64, 96, 3), (2, 5, 64, 96), (2, 5, 3))
    >>> data.meta["scenario"], data.meta["weather"]
    ('head_on', 'clear_noon')
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from shareverse_env.core.geometry import FPS, CameraRig, wrap_angle
from shareverse_env.world.scenarios import SCENARIOS, AgentPlan, Scenario, make_scenario
from shareverse_env.world.collision import first_collisions
from shareverse_env.world.generator import generate_town
from shareverse_env.world.renderer import Renderer
from shareverse_env.world.town import Town
from shareverse_env.world.vehicles import agent_colour
from shareverse_env.world.weather import WEATHERS
from shareverse_env.data.format import SequenceData, rig_info

SPEED_RANGE = (3.0, 9.0)
"""Cruise speeds in m/s (about 11–32 km/h: town traffic)."""

SPEED_CHANGE = 2.0
"""The end speed differs from the start speed by up to ± this (m/s), blended smoothly."""

DELAY_PROBABILITY = 0.3
"""Chance that an agent waits before it starts."""

MAX_DELAY = 1.0
"""Longest start delay, seconds."""

LATERAL_AMPLITUDE = 0.25
"""Largest sideways offset from the lane centre, metres (a sine along the route)."""

LATERAL_WAVELENGTH = (30.0, 60.0)
"""Wavelength range of the sideways weave, metres of route."""

LOOKAHEAD_FRAMES = 10
"""Frames past the end that must also be collision-free (no sequence ends just before a crash)."""

MAX_ATTEMPTS = 8
"""Draws tried before giving up on collision-free trajectories."""

MAX_RENDER_DISTANCE = 250.0
"""Boxes farther than this are not drawn (the renderer's default)."""


@dataclass(frozen=True)
class DriveProfile:
    """How one agent drives its route: speeds, start delay, weave, and whom it follows.

    Attributes:
        v0, v1: speed at the start and at the end of the horizon (m/s), blended by a smoothstep.
        delay: seconds standing still before starting.
        lateral_amplitude, lateral_wavelength, lateral_phase: ``offset(s) = A sin(2π s / λ + φ)``
            metres left of the lane centre at arc length ``s``.
        leader: the agent directly ahead on this agent's lane at the start, or ``None``.

    Example:
        >>> from shareverse_env.world.routes import Route
        >>> route = Route.from_points(np.array([[0.0, 0.0], [100.0, 0.0]]))
        >>> poses = DriveProfile(5.0, 5.0, 0.0, 0.0, 40.0, 0.0).poses(route, 11)
        >>> poses[-1].round(3).tolist()
        [5.0, 0.0, 0.0]
    """

    v0: float
    v1: float
    delay: float
    lateral_amplitude: float
    lateral_wavelength: float
    lateral_phase: float
    leader: int | None = None

    def arc_length(self, num_frames: int, fps: int = FPS) -> np.ndarray:
        """``(num_frames,)`` distance driven along the route at each frame (not clipped)."""
        t = np.arange(num_frames) / fps
        duration = max((num_frames - 1) / fps - self.delay, 1e-6)
        moving = np.clip(t - self.delay, 0.0, None)
        tau = np.clip(moving / duration, 0.0, 1.0)
        # v(τ) = v0 + (v1 - v0)(3τ² - 2τ³); its integral over time is below.
        return self.v0 * moving + (self.v1 - self.v0) * duration * (tau**3 - tau**4 / 2)

    def distance(self, num_frames: int, fps: int = FPS) -> float:
        """Total distance driven over ``num_frames`` frames."""
        duration = max((num_frames - 1) / fps - self.delay, 0.0)
        return duration * (self.v0 + self.v1) / 2

    def poses(self, route: Any, num_frames: int, fps: int = FPS) -> np.ndarray:
        """``(num_frames, 3)`` poses along ``route`` (the car stops at the route's end)."""
        s = np.clip(self.arc_length(num_frames, fps), 0.0, route.length)
        base = route.pose_at(s)
        k = 2 * np.pi / self.lateral_wavelength
        offset = self.lateral_amplitude * np.sin(k * s + self.lateral_phase)
        slope = self.lateral_amplitude * k * np.cos(k * s + self.lateral_phase)
        normal = np.stack([-np.sin(base[:, 2]), np.cos(base[:, 2])], axis=-1)
        out = base.copy()
        out[:, :2] += offset[:, None] * normal
        out[:, 2] = wrap_angle(base[:, 2] + np.arctan(slope))
        return out


# --------------------------------------------------------------------------------------------
# Drawing trajectories
# --------------------------------------------------------------------------------------------


def lane_leaders(plans: tuple[AgentPlan, ...], tolerance: float = 0.5) -> list[int | None]:
    """For each agent, the nearest other agent whose start lies ahead on its route (same lane)."""
    leaders: list[int | None] = []
    for j, pj in enumerate(plans):
        best, best_s = None, np.inf
        for i, pi in enumerate(plans):
            if i == j:
                continue
            s, lateral = pj.route.project(pi.start[:2])
            heading = pj.route.pose_at(s)[2]
            aligned = np.cos(heading - pi.start[2]) > 0.9
            if abs(float(lateral)) < tolerance and 0.5 < float(s) < best_s and aligned:
                best, best_s = i, float(s)
        leaders.append(best)
    return leaders


def _drive_order(leaders: list[int | None]) -> list[int]:
    """Agents ordered so that each leader comes before its followers (cycles broken by index)."""
    order: list[int] = []
    pending = list(range(len(leaders)))
    while pending:
        ready = [k for k in pending if leaders[k] is None or leaders[k] in order]
        nxt = ready[0] if ready else pending[0]
        order.append(nxt)
        pending.remove(nxt)
    return order


def draw_profiles(
    scenario: Scenario, horizon: int, rng: np.random.Generator, fps: int = FPS
) -> list[DriveProfile]:
    """One :class:`DriveProfile` per agent; followers never outpace or outstart their leaders.

    Speeds are scaled down where needed so that no car runs past the end of its route within
    ``horizon`` frames.
    """
    plans = scenario.agents
    leaders = lane_leaders(plans)
    profiles: dict[int, DriveProfile] = {}
    lo, hi = SPEED_RANGE
    for k in _drive_order(leaders):
        v0 = rng.uniform(lo, hi)
        v1 = float(np.clip(v0 + rng.uniform(-SPEED_CHANGE, SPEED_CHANGE), lo, hi))
        delay = rng.uniform(0.0, MAX_DELAY) if rng.random() < DELAY_PROBABILITY else 0.0
        amp = rng.uniform(0.0, LATERAL_AMPLITUDE)
        wavelength = rng.uniform(*LATERAL_WAVELENGTH)
        phase = rng.uniform(0.0, 2 * np.pi)
        lead = profiles.get(leaders[k]) if leaders[k] is not None else None
        if lead is not None:
            v0, v1, delay = min(v0, lead.v0), min(v1, lead.v1), max(delay, lead.delay)
        profile = DriveProfile(float(v0), v1, float(delay), amp, wavelength, phase, leaders[k])
        room = plans[k].route.length - 0.5
        travel = profile.distance(horizon, fps)
        if travel > room:
            scale = room / travel
            profile = DriveProfile(
                float(v0 * scale), v1 * scale, float(delay), amp, wavelength, phase, leaders[k]
            )
        profiles[k] = profile
    return [profiles[k] for k in range(len(plans))]


def _earliest_collision(town: Town, poses: np.ndarray) -> tuple[int, str | None]:
    """First frame at which any agent collides (``len`` when none) and the collision's kind."""
    hits = [h for h in first_collisions(town, poses) if h is not None]
    if not hits:
        return poses.shape[1], None
    first = min(hits, key=lambda h: h.frame)
    return first.frame, first.kind


@dataclass
class _Draw:
    scenario: Scenario
    profiles: list[DriveProfile]
    poses: np.ndarray  # (A, horizon, 3)
    attempt: int
    clear_frames: int
    kind: str | None


def _draw(
    town: Town, seed: int, attempt: int, scenario: str | None, num_agents: int, horizon: int
) -> _Draw:
    rng = np.random.default_rng([seed, attempt])
    plan = make_scenario(town, scenario, num_agents, int(rng.integers(2**31 - 1)))
    profiles = draw_profiles(plan, horizon, rng)
    poses = np.stack(
        [p.poses(a.route, horizon) for p, a in zip(profiles, plan.agents, strict=True)]
    )
    clear, kind = _earliest_collision(town, poses)
    return _Draw(plan, profiles, poses, attempt, clear, kind)


def expert_trajectories(
    town: Town,
    seed: int,
    scenario: str | None,
    num_agents: int,
    num_frames: int,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    lookahead: int = LOOKAHEAD_FRAMES,
) -> _Draw:
    """Collision-free route-following trajectories: the first good draw of ``max_attempts``.

    Raises:
        ValueError: when no draw stays collision-free for ``num_frames`` frames.
    """
    horizon = num_frames + lookahead
    best: _Draw | None = None
    for attempt in range(max_attempts):
        draw = _draw(town, seed, attempt, scenario, num_agents, horizon)
        if draw.clear_frames >= horizon:
            return draw
        if best is None or draw.clear_frames > best.clear_frames:
            best = draw
    assert best is not None
    if best.clear_frames >= num_frames:
        return best  # collides only in the look-ahead beyond the sequence
    raise ValueError(
        f"no collision-free trajectories for scenario {scenario!r} in town {town.seed} with seed "
        f"{seed} after {max_attempts} draws: the best stays clear for {best.clear_frames} of "
        f"{num_frames} frames (then a {best.kind!r} collision)"
    )


# --------------------------------------------------------------------------------------------
# Towns, renderers and the sequence
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=2)
def cached_town(town_seed: int, blocks: tuple[int, int]) -> Town:
    """:func:`generate_town` with a small per-process cache (consecutive sequences share towns)."""
    return generate_town(int(town_seed), tuple(blocks))


@lru_cache(maxsize=2)
def _cached_renderer(
    town_seed: int, blocks: tuple[int, int], weather: str, view_hw: tuple[int, int]
) -> Renderer:
    town = cached_town(town_seed, blocks)
    return Renderer(
        town, weather, rig=CameraRig(), view_hw=view_hw, max_distance=MAX_RENDER_DISTANCE
    )


def sequence_renderer(
    meta: dict[str, Any], view_hw: tuple[int, int] | None = None, rig: CameraRig | None = None
) -> Renderer:
    """The exact renderer of a synthesized sequence's town and weather, from its metadata.

    It renders what :func:`synthesize_sequence` rendered: the same poses give the same frames.
    ``view_hw`` defaults to the metadata's; a ``rig`` other than the default raises (the
    synthesis renders with the default rig).

    Raises:
        KeyError: the metadata has no ``town_seed``/``town_blocks``/``weather`` (a sequence not
            made by this synthesis).
    """
    if rig is not None and rig != CameraRig():
        raise ValueError(f"sequences are rendered with the default CameraRig, not {rig}")
    hw = tuple(int(v) for v in (view_hw if view_hw is not None else meta["view_hw"]))
    missing = [k for k in ("town_seed", "town_blocks", "weather") if k not in meta]
    if missing:
        raise KeyError(f"sequence metadata lacks {missing}")
    return _cached_renderer(
        int(meta["town_seed"]), tuple(int(b) for b in meta["town_blocks"]), meta["weather"], hw
    )


def _check_args(num_agents: int, num_frames: int, view_hw: tuple[int, int], weather, scenario):
    if num_agents < 1:
        raise ValueError(f"num_agents must be ≥ 1; got {num_agents}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be ≥ 2; got {num_frames}")
    height, width = view_hw
    if height <= 0 or width <= 0 or height % 16 or width % 16:
        raise ValueError(f"view_hw must be positive multiples of 16; got {view_hw}")
    if weather is not None and weather not in WEATHERS:
        raise ValueError(f"unknown weather {weather!r}; choose from {sorted(WEATHERS)}")
    if scenario is not None and scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {SCENARIOS}")


def synthesize_sequence(
    seed: int,
    town_seed: int,
    scenario: str | None,
    weather: str | None,
    num_agents: int = 2,
    num_frames: int = 89,
    view_hw: tuple[int, int] = (64, 96),
    *,
    town_blocks: tuple[int, int] = (4, 4),
) -> SequenceData:
    """Synthesise one sequence; the result depends only on the arguments.

    Args:
        seed: seed of the scenario layout, the driving profiles and (when ``None``) the
            scenario and weather.
        town_seed: seed of :func:`~shareverse_env.world.generator.generate_town`.
        scenario: one of :data:`~shareverse_env.world.scenarios.SCENARIOS`, or ``None`` to draw one.
        weather: a preset of :data:`~shareverse_env.world.weather.WEATHERS`, or ``None`` to draw.
        num_agents: cars in the scene (agents ≥ 2 repeat the two roles; see ``scenarios``).
        num_frames: frames per agent, at :data:`~shareverse_env.core.geometry.FPS`.
        view_hw: ``(H, W)`` of each of the four views (multiples of 16).
        town_blocks: ``(bx, by)`` blocks of the town.

    Returns:
        :class:`~.format.SequenceData` with ``frames (A, F, 2H, 2W, 3)`` uint8,
        ``depth (A, F, 2H, 2W)`` float32 metres (``inf`` on sky), ``poses (A, F, 3)`` float64.

    Raises:
        ValueError: bad arguments, a town that cannot host the scenario, or no collision-free
            draw (see :func:`expert_trajectories`).
    """
    view_hw = (int(view_hw[0]), int(view_hw[1]))
    blocks = (int(town_blocks[0]), int(town_blocks[1]))
    _check_args(num_agents, num_frames, view_hw, weather, scenario)
    if weather is None:
        names = sorted(WEATHERS)
        weather = names[int(np.random.default_rng([seed, 0x57]).integers(len(names)))]
    town = cached_town(int(town_seed), blocks)
    draw = expert_trajectories(town, int(seed), scenario, int(num_agents), int(num_frames))
    poses = np.ascontiguousarray(draw.poses[:, :num_frames])
    renderer = _cached_renderer(int(town_seed), blocks, weather, view_hw)
    colours = np.array([agent_colour(k) for k in range(num_agents)], dtype=np.float32)
    result = renderer.render_agents(poses, colours)
    meta = _meta(draw, seed, town_seed, blocks, weather, num_frames, view_hw, renderer.rig)
    return SequenceData(frames=result.rgb, depth=result.depth, poses=poses, meta=meta)


def _meta(
    draw: _Draw,
    seed: int,
    town_seed: int,
    blocks: tuple[int, int],
    weather: str,
    num_frames: int,
    view_hw: tuple[int, int],
    rig: CameraRig,
) -> dict[str, Any]:
    num_agents = len(draw.scenario)
    return {
        "scenario": draw.scenario.name,
        "scenario_seed": int(draw.scenario.seed),
        "weather": weather,
        "town_seed": int(town_seed),
        "town_blocks": list(blocks),
        "seed": int(seed),
        "attempt": int(draw.attempt),
        "num_agents": num_agents,
        "num_frames": int(num_frames),
        "fps": FPS,
        "view_hw": list(view_hw),
        "rig": rig_info(rig),
        "agents": [f"agent_{k}" for k in range(num_agents)],
        "colours": [list(agent_colour(k)) for k in range(num_agents)],
        "agent_info": [draw.scenario.to_info(k) for k in range(num_agents)],
        "drive": [
            {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(p).items()}
            for p in draw.profiles
        ],
    }
