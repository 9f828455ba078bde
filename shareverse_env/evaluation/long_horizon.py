"""The long-horizon protocol: the env driven by its own expert for many chunks, scored per chunk
against the exact renderer (docs/long_horizon.md).

The quality runner (:mod:`.quality`) replays the stored poses of short dataset sequences. Users
see something else: the env driven by a policy at town speed (the route-following expert drives
about 22 m per chunk and turns at junctions), for as long as the episode lasts. This protocol
runs that. Two envs are stepped side by side with the **same** actions: the env under test
(the generative default, ``parallel_env()``) and ``parallel_env(backend="world")``, the exact
renderer, with the same view size, camera rig, reset seed and reset options, so that town,
scenario, weather and start poses match. The expert acts on the env under test (it reads poses
and routes, never pixels) and its action dict is applied to both. After every reset and step the
poses of both envs are checked to be equal (:func:`check_same_world`).

Per chunk (1 … N) and car, every new frame of the chunk (``infos[agent]["frames"]``, the 28
frames after the conditioning frame) is scored against the true ones, per frame and then
averaged over the chunk, for each method:

- ``model``: the env under test;
- ``repeat``: the car's first true frame of the episode, repeated (a floor);
- ``blurred_repeat``: that frame blurred per camera view with the quality runner's σ
  (:func:`~.floors.blur_sigma`: 6 px in the first chunk, 16 after; a floor);
- ``previous_truth``: the previous chunk's last **true** frame, repeated: an oracle reference
  that knows the truth up to the chunk's start (no floor).

Metrics: PSNR (per frame, capped at :data:`~.metrics.PSNR_CAP_DB`), SSIM
(:func:`~.metrics.ssim_tiled`), LPIPS (:func:`~.lpips.lpips_tiled`, optional), detail
(:func:`~.metrics.detail_ratio_tiled`) and colour drift (:func:`~.metrics.colour_drift_tiled`).

A car that reaches its goal is terminated there (its last chunk is scored) and drops out; the
episode ends when every car has. Only live car-chunks are scored, and every table carries the
count ``n`` per chunk. With the env's default goals (140–220 m) the expert reaches them in chunks
7–11, so this protocol draws goals 480–600 m away by default (:data:`DEFAULT_GOAL_DISTANCE`):
past the 20th chunk at town speed. Collisions do not end an episode here
(``terminate_on_collision=False``: the car stops where it hit and keeps being scored).

This module knows neither the env nor the policies (the evaluation layer sits beside them);
the caller passes the env factory and the policy factory, as ``scripts/evaluate_long_horizon.py``
does. Here the renderer plays the model too, which scores what a perfect model would:

Example:
    >>> import shareverse_env
    >>> from shareverse_env.policies import make_policy
    >>> config = LongHorizonConfig(episodes=1, chunks=1, lpips=False,
    ...                            model_env={"backend": "world", "view_hw": (16, 16)})
    >>> result = run_long_horizon(config, shareverse_env.parallel_env,
    ...                           lambda env: make_policy("expert", env), progress=False)
    >>> result.live.shape, result.mean("model", "psnr").tolist(), result.n().tolist()
    ((1, 2, 1), [60.0], [2])
    >>> float(result.mean("model", "colour_drift")[0]), float(result.mean("model", "detail")[0])
    (0.0, 1.0)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from shareverse_env.core.files import atomic_file
from shareverse_env.core.geometry import NEW_FRAMES_PER_CHUNK
from shareverse_env.evaluation.floors import BLUR_SIGMAS, blur_sigma, blur_views
from shareverse_env.evaluation.metrics import (
    PSNR_CAP_DB,
    colour_drift_tiled,
    detail_ratio_tiled,
    psnr,
    ssim_tiled,
)
from shareverse_env.world.scenarios import SCENARIOS
from shareverse_env.world.weather import WEATHERS

DEFAULT_CHUNKS = 20
"""Chunks per episode (56 s of driving)."""

DEFAULT_EPISODES = len(SCENARIOS)
"""One episode per scenario."""

DEFAULT_TOWN_SEED = 10_000_000
"""Town seed of the first episode (episode ``i`` drives in town ``DEFAULT_TOWN_SEED + i``).
Training towns come from ``shareverse_env.cli.data.town_pool``, which draws seeds below
1,000,000, so these towns are held out from every dataset the project makes."""

DEFAULT_GOAL_DISTANCE: tuple[float, float] = (480.0, 600.0)
"""Metres of route from start to goal. The env's default (140–220 m) ends every car's episode at
its goal by chunk 7–11 under the expert; 480 m lies past the 20th chunk at town speed
(8 m/s × 2.8 s × 20 = 448 m), so every car is scored in every chunk unless it is held up."""

METHODS: tuple[str, ...] = ("model", "repeat", "blurred_repeat", "previous_truth")
"""What is scored, in report order: the env under test, two floors and the oracle reference."""

FLOORS: tuple[str, ...] = ("repeat", "blurred_repeat")
"""The trivial floors: made from the episode's first true frame alone (no knowledge of later
truth). ``previous_truth`` knows the truth up to each chunk's start and is a reference only."""

METRICS: tuple[str, ...] = ("psnr", "ssim", "lpips", "detail", "colour_drift")
"""Scores per car-chunk, each the mean over the chunk's new frames."""

METRIC_LABELS: dict[str, str] = {
    "psnr": "PSNR (dB) ↑",
    "ssim": "SSIM ↑",
    "lpips": "LPIPS ↓",
    "detail": "detail (1 = truth's)",
    "colour_drift": "colour drift (grey levels) ↓",
}

FILMSTRIP_CHUNKS: tuple[int, ...] = (1, 4, 8, 12, 16, 20)
"""The chunks whose last frame the filmstrip and the headline tables show."""

LPIPSFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``lpips(generated, truth) -> (...)`` per tiled uint8 frame ``(..., 2H, 2W, 3)``."""


class WorldMismatchError(RuntimeError):
    """The env under test and the renderer no longer show the same world (poses, agents, town,
    scenario or weather differ): the comparison would be meaningless."""


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode of the protocol: reset seed, town, scenario and weather.

    Example:
        >>> EpisodeSpec(0, seed=0, town_seed=10_000_000, scenario="crossing",
        ...             weather="fog").reset_options()
        {'town_seed': 10000000, 'scenario': 'crossing', 'weather': 'fog'}
    """

    index: int
    seed: int
    town_seed: int
    scenario: str
    weather: str

    def reset_options(self) -> dict[str, Any]:
        """``reset(options=...)`` of this episode (the same for both envs)."""
        return {"town_seed": self.town_seed, "scenario": self.scenario, "weather": self.weather}


def episode_specs(
    episodes: int = DEFAULT_EPISODES, seed: int = 0, town_seed: int = DEFAULT_TOWN_SEED
) -> list[EpisodeSpec]:
    """The protocol's episodes: scenarios and weathers cycled, one held-out town each.

    Episode ``i`` gets reset seed ``seed + i``, town ``town_seed + i``, scenario
    ``SCENARIOS[i % 6]`` and weather ``sorted(WEATHERS)[i % 5]``.

    Example:
        >>> [(s.scenario, s.weather, s.town_seed) for s in episode_specs(2)]
        [('head_on', 'clear_morning', 10000000), ('following', 'clear_noon', 10000001)]
    """
    if episodes < 1:
        raise ValueError(f"episodes must be ≥ 1; got {episodes}")
    weathers = sorted(WEATHERS)
    return [
        EpisodeSpec(
            index=i,
            seed=seed + i,
            town_seed=town_seed + i,
            scenario=SCENARIOS[i % len(SCENARIOS)],
            weather=weathers[i % len(weathers)],
        )
        for i in range(episodes)
    ]


@dataclass(frozen=True)
class LongHorizonConfig:
    """Settings of one protocol run.

    Attributes:
        episodes: episodes (scenarios and weathers cycled, :func:`episode_specs`).
        chunks: chunks per episode (``max_cycles``).
        seed: reset seed of the first episode.
        town_seed: town of the first episode (held out from training, see
            :data:`DEFAULT_TOWN_SEED`).
        goal_distance: ``(lo, hi)`` metres to each car's goal; ``None`` keeps the env's default
            (cars then drop out at their goals around chunk 10).
        num_agents: cars per episode.
        lpips: score LPIPS (needs :mod:`.lpips` and its weights).
        lpips_every: LPIPS scores every k-th frame of a chunk, ending on the last
            (:func:`lpips_frames`; 4: 7 of the 28 frames), to keep a 20-chunk run near 20
            minutes on a CPU; 1 scores every frame.
        model_env: keywords of the env under test, on top of the protocol's own
            (``terminate_on_collision=False``, ``max_cycles``, ``goal_distance``); ``{}`` is
            the default generative env. ``backend_options`` and ``model`` (a pipeline
            folder) go here.

    Example:
        >>> LongHorizonConfig().env_keywords()["terminate_on_collision"]
        False
    """

    episodes: int = DEFAULT_EPISODES
    chunks: int = DEFAULT_CHUNKS
    seed: int = 0
    town_seed: int = DEFAULT_TOWN_SEED
    goal_distance: tuple[float, float] | None = DEFAULT_GOAL_DISTANCE
    num_agents: int = 2
    lpips: bool = True
    lpips_every: int = 4
    model_env: Mapping[str, Any] = field(default_factory=dict)

    def env_keywords(self) -> dict[str, Any]:
        """The keywords both envs share: what the protocol fixes."""
        out: dict[str, Any] = {
            "terminate_on_collision": False,
            "max_cycles": int(self.chunks),
            "num_agents": int(self.num_agents),
        }
        if self.goal_distance is not None:
            out["goal_distance"] = tuple(float(v) for v in self.goal_distance)
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict of the settings (model keywords as strings where not JSON)."""
        out = asdict(self)
        out["model_env"] = json.loads(json.dumps(dict(self.model_env), default=str))
        return out


def make_env_pair(config: LongHorizonConfig, env_factory: Callable[..., Any]) -> tuple[Any, Any]:
    """``(env under test, renderer env)``: the renderer at the same view size and camera rig.

    ``env_factory`` is :func:`shareverse_env.parallel_env` (or anything with its keywords).
    """
    shared = config.env_keywords()
    model_env = env_factory(**{**dict(config.model_env), **shared})
    raw = getattr(model_env, "unwrapped", model_env)
    world_env = env_factory(
        backend="world", view_hw=tuple(raw.backend.view_hw), rig=raw.rig, **shared
    )
    return model_env, world_env


def check_same_world(
    model_infos: Mapping[str, Mapping[str, Any]],
    world_infos: Mapping[str, Mapping[str, Any]],
    model_env: Any,
    world_env: Any,
    where: str,
) -> None:
    """Raise :class:`WorldMismatchError` unless both envs hold the same cars at the same poses.

    Compares the live agents, every agent's frame poses (``infos[agent]["poses"]``, exactly:
    both envs plan the same chunk from the same pose and action), the global
    :meth:`~shareverse_env.envs.parallel.ShareVerseParallelEnv.state` and, where the infos carry
    them, town, weather and scenario.
    """
    if list(model_env.agents) != list(world_env.agents) or set(model_infos) != set(world_infos):
        raise WorldMismatchError(
            f"{where}: live agents differ: {model_env.agents} (model) vs {world_env.agents} (world)"
        )
    for agent in model_infos:
        a, b = model_infos[agent], world_infos[agent]
        if not np.array_equal(a["poses"], b["poses"]):
            worst = float(np.abs(np.asarray(a["poses"]) - np.asarray(b["poses"])).max())
            raise WorldMismatchError(f"{where}: poses of {agent} differ by up to {worst:.4g}")
        for key in ("town_seed", "weather", "scenario"):
            if key in a and a.get(key) != b.get(key):
                raise WorldMismatchError(f"{where}: {key} of {agent} differs")
    raw_model = getattr(model_env, "unwrapped", model_env)
    raw_world = getattr(world_env, "unwrapped", world_env)
    if not np.array_equal(raw_model.state(), raw_world.state()):
        raise WorldMismatchError(f"{where}: the envs' state() differ")


def floor_frames(
    method: str, first: np.ndarray, previous_last: np.ndarray, chunk: int
) -> np.ndarray:
    """A floor's or reference's frames ``(28, 2H, 2W, 3)`` for chunk ``chunk`` (1-based).

    Args:
        method: ``"repeat"``, ``"blurred_repeat"`` or ``"previous_truth"``.
        first: the car's first true frame of the episode ``(2H, 2W, 3)``.
        previous_last: the last true frame of chunk ``chunk - 1`` (``first`` for chunk 1).
        chunk: the chunk, 1-based (the blur's σ depends on it).

    Example:
        >>> first = np.zeros((32, 32, 3), np.uint8); last = first + 7
        >>> floor_frames("previous_truth", first, last, 2).shape, int(floor_frames(
        ...     "previous_truth", first, last, 2)[5].max())
        ((28, 32, 32, 3), 7)
    """
    if method == "repeat":
        frame = first
    elif method == "blurred_repeat":
        frame = blur_views(first, blur_sigma(chunk - 1))
    elif method == "previous_truth":
        frame = previous_last
    else:
        raise ValueError(f"unknown floor {method!r}; floors are {METHODS[1:]}")
    return np.repeat(np.asarray(frame)[None], NEW_FRAMES_PER_CHUNK, axis=0)


def frame_scores(
    generated: np.ndarray,
    truth: np.ndarray,
    lpips_fn: LPIPSFunction | None = None,
    max_db: float | None = PSNR_CAP_DB,
) -> dict[str, np.ndarray]:
    """Every metric of :data:`METRICS` per frame of tiled uint8 ``(..., 2H, 2W, 3)`` frames.

    LPIPS is ``nan`` without ``lpips_fn``. PSNR is capped at ``max_db`` (``None``: uncapped).

    Example:
        >>> frames = np.full((2, 32, 32, 3), 90, np.uint8); frames[:, ::2] = 120
        >>> scores = frame_scores(frames, frames, max_db=None)
        >>> scores["psnr"].tolist(), scores["colour_drift"].tolist(), scores["detail"].tolist()
        ([inf, inf], [0.0, 0.0], [1.0, 1.0])
    """
    out = {
        "psnr": psnr(generated, truth, max_db=max_db),
        "ssim": ssim_tiled(generated, truth),
        "detail": detail_ratio_tiled(generated, truth),
        "colour_drift": colour_drift_tiled(generated, truth),
    }
    if lpips_fn is None:
        out["lpips"] = np.full(np.shape(out["psnr"]), np.nan)
    else:
        out["lpips"] = np.asarray(lpips_fn(generated, truth), dtype=np.float64)
    return {m: np.asarray(out[m], dtype=np.float64) for m in METRICS}


def lpips_frames(count: int, every: int) -> np.ndarray:
    """Indices of the frames of a ``count``-frame chunk that LPIPS scores: every ``every``-th,
    ending on the last frame (LPIPS costs about 60 ms per tiled frame on a CPU, the other
    metrics together 20 ms).

    Example:
        >>> lpips_frames(28, 4).tolist(), lpips_frames(3, 1).tolist()
        ([3, 7, 11, 15, 19, 23, 27], [0, 1, 2])
    """
    if every < 1:
        raise ValueError(f"lpips_every must be ≥ 1; got {every}")
    return np.arange(count)[::-1][::every][::-1].copy()


def score_chunk(
    frames: Mapping[str, np.ndarray],
    truth: np.ndarray,
    lpips_fn: LPIPSFunction | None = None,
    lpips_every: int = 1,
) -> dict[str, dict[str, float]]:
    """``{method: {metric: mean over the chunk's frames}}`` of one car's chunk.

    ``frames`` maps each method to its ``(F, 2H, 2W, 3)`` frames, ``truth`` the true ones. The
    methods are scored in one batch (LPIPS runs once for all of them, on the frames of
    :func:`lpips_frames`; ``nan`` without ``lpips_fn``).

    Example:
        >>> truth = np.full((4, 32, 32, 3), 100, np.uint8)
        >>> scores = score_chunk({"same": truth, "brighter": truth + 10}, truth)
        >>> scores["same"]["psnr"], round(scores["brighter"]["psnr"], 2)
        (60.0, 28.13)
        >>> scores["brighter"]["colour_drift"], bool(np.isnan(scores["same"]["lpips"]))
        (10.0, True)
    """
    names = list(frames)
    count = len(truth)
    stacked = np.concatenate([frames[m] for m in names])
    scores = frame_scores(stacked, np.concatenate([truth] * len(names)))
    out = {
        m: {metric: float(np.mean(v[i * count : (i + 1) * count])) for metric, v in scores.items()}
        for i, m in enumerate(names)
    }
    if lpips_fn is not None:
        pick = lpips_frames(count, lpips_every)
        sub = np.concatenate([frames[m][pick] for m in names])
        d = np.asarray(lpips_fn(sub, np.concatenate([truth[pick]] * len(names))), np.float64)
        for i, m in enumerate(names):
            out[m]["lpips"] = float(np.mean(d[i * len(pick) : (i + 1) * len(pick)]))
    return out


@dataclass
class LongHorizonResult:
    """Every car-chunk's scores of one run, and what the report needs.

    Attributes:
        config: the run's settings.
        specs: the episodes.
        agents: the agent names (second axis of every array).
        values: ``{method: {metric: (E, A, C) float}}``, ``nan`` where the car was not live.
        live: ``(E, A, C) bool``: the car drove (and was scored in) that chunk.
        step_seconds: ``{"model": [...], "world": [...]}`` wall-clock seconds per ``env.step``.
        filmstrip: the filmstrip car's last frame of every chunk it drove:
            ``{"generated": (K, 2H, 2W, 3), "truth": (K, ...), "chunks": (K,)}``, plus
            ``"first"``, the episode's first true frame ``(1, 2H, 2W, 3)``.
        filmstrip_car: ``(episode, agent)`` of that car.
        seconds: wall-clock seconds of the whole run.
    """

    config: LongHorizonConfig
    specs: list[EpisodeSpec]
    agents: list[str]
    values: dict[str, dict[str, np.ndarray]]
    live: np.ndarray
    step_seconds: dict[str, list[float]]
    filmstrip: dict[str, np.ndarray]
    filmstrip_car: tuple[int, str] = (0, "agent_0")
    seconds: float = 0.0
    command: str | None = None

    @property
    def chunks(self) -> np.ndarray:
        """The chunk numbers ``1 … C``."""
        return np.arange(1, self.live.shape[2] + 1)

    def n(self, method: str = "model", metric: str = "psnr") -> np.ndarray:
        """``(C,)`` how many car-episodes have a finite value per chunk."""
        return np.isfinite(self.values[method][metric]).sum(axis=(0, 1))

    def mean(self, method: str, metric: str) -> np.ndarray:
        """``(C,)`` the mean over car-episodes per chunk (``nan`` where none was scored)."""
        v = self.values[method][metric]
        finite = np.isfinite(v)
        total = np.where(finite, v, 0.0).sum(axis=(0, 1))
        count = finite.sum(axis=(0, 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    def median_step_seconds(self) -> dict[str, float]:
        """Median wall-clock seconds of one ``env.step``, per env (``nan`` if none ran)."""
        return {k: float(np.median(v)) if v else float("nan") for k, v in self.step_seconds.items()}

    def has_metric(self, metric: str) -> bool:
        """Whether any value of ``metric`` was scored (LPIPS may have been skipped)."""
        return bool(np.isfinite(self.values["model"][metric]).any())

    def rows(self) -> list[dict[str, Any]]:
        """``results.csv``'s rows: ``chunk, method, metric, mean, n``."""
        out = []
        for method in self.values:
            for metric in METRICS:
                means, counts = self.mean(method, metric), self.n(method, metric)
                for c, mean, n in zip(self.chunks, means, counts, strict=True):
                    out.append(
                        {"chunk": int(c), "method": method, "metric": metric,
                         "mean": float(mean), "n": int(n)}
                    )  # fmt: skip
        return out

    # -------------------------------------------------------------- the raw values on disk

    def save(self, folder: str | Path) -> tuple[Path, Path]:
        """Write ``values.npz`` (every car-chunk value, the live mask, step times, filmstrip
        frames) and ``run.json`` (settings, episodes, medians); :meth:`load` reads them back."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"live": self.live}
        for method, metrics in self.values.items():
            for metric, v in metrics.items():
                arrays[f"values.{method}.{metric}"] = v
        for env, seconds in self.step_seconds.items():
            arrays[f"step_seconds.{env}"] = np.asarray(seconds, dtype=np.float64)
        for key, v in self.filmstrip.items():
            arrays[f"filmstrip.{key}"] = v
        npz, meta = folder / "values.npz", folder / "run.json"
        with atomic_file(npz) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        info = {
            "config": self.config.to_json(),
            "episodes": [asdict(s) for s in self.specs],
            "agents": self.agents,
            "filmstrip_car": list(self.filmstrip_car),
            "seconds": self.seconds,
            "command": self.command,
            "median_step_seconds": self.median_step_seconds(),
        }
        with atomic_file(meta) as tmp:
            tmp.write_text(json.dumps(info, indent=2) + "\n")
        return npz, meta

    @classmethod
    def load(cls, folder: str | Path) -> LongHorizonResult:
        """The result that :meth:`save` wrote into ``folder`` (arrays read without pickle)."""
        folder = Path(folder)
        info = json.loads((folder / "run.json").read_text())
        values: dict[str, dict[str, np.ndarray]] = {}
        step_seconds: dict[str, list[float]] = {}
        filmstrip: dict[str, np.ndarray] = {}
        with np.load(folder / "values.npz", allow_pickle=False) as data:
            live = data["live"]
            for key in data.files:
                kind, _, rest = key.partition(".")
                if kind == "values":
                    method, metric = rest.split(".")
                    values.setdefault(method, {})[metric] = data[key]
                elif kind == "step_seconds":
                    step_seconds[rest] = data[key].tolist()
                elif kind == "filmstrip":
                    filmstrip[rest] = data[key]
        raw = info["config"]
        goal = raw.get("goal_distance")
        config = LongHorizonConfig(
            **{**raw, "goal_distance": None if goal is None else tuple(goal)}
        )
        return cls(
            config=config,
            specs=[EpisodeSpec(**s) for s in info["episodes"]],
            agents=list(info["agents"]),
            values=values,
            live=live,
            step_seconds=step_seconds,
            filmstrip=filmstrip,
            filmstrip_car=(int(info["filmstrip_car"][0]), str(info["filmstrip_car"][1])),
            seconds=float(info.get("seconds", 0.0)),
            command=info.get("command"),
        )


def load_lpips() -> LPIPSFunction:
    """:func:`~.lpips.lpips_tiled`, imported only when asked for (it needs JAX and weights), and
    tried once on two blank frames, so that missing weights fail before any chunk is generated.

    Raises:
        LPIPSUnavailableError: its weights cannot be had (an ``ImportError`` when the module
            itself is missing).
    """
    from shareverse_env.evaluation.lpips import lpips_tiled

    blank = np.zeros((1, 64, 64, 3), np.uint8)
    lpips_tiled(blank, blank)
    return lpips_tiled


class _Episode:
    """One car-episode's bookkeeping: first frame, blurred floors, the last true frame."""

    def __init__(self, first: Mapping[str, np.ndarray]) -> None:
        self.first = {a: np.asarray(f) for a, f in first.items()}
        # Both σ once per episode: the floor is the same frame in every later chunk.
        self.blurred = {
            a: {s: blur_views(f, s) for s in BLUR_SIGMAS} for a, f in self.first.items()
        }
        self.previous_last = dict(self.first)

    def method_frames(self, agent: str, chunk: int, model: np.ndarray) -> dict[str, np.ndarray]:
        def repeated(frame: np.ndarray) -> np.ndarray:
            return np.repeat(frame[None], len(model), axis=0)

        return {
            "model": model,
            "repeat": repeated(self.first[agent]),
            "blurred_repeat": repeated(self.blurred[agent][blur_sigma(chunk - 1)]),
            "previous_truth": repeated(self.previous_last[agent]),
        }


def run_long_horizon(
    config: LongHorizonConfig,
    env_factory: Callable[..., Any],
    policy_factory: Callable[[Any], Callable[[Any], dict[str, np.ndarray]]],
    *,
    progress: bool = True,
    lpips_fn: LPIPSFunction | None = None,
    envs: tuple[Any, Any] | None = None,
) -> LongHorizonResult:
    """Run the protocol (see the module docstring) and return every car-chunk's scores.

    Args:
        config: the settings.
        env_factory: builds an env from :func:`shareverse_env.parallel_env`'s keywords.
        policy_factory: the policy for an env, called once per episode after its reset
            (``lambda env: make_policy("expert", env)``); it acts on the env under test.
        progress: show a tqdm bar (one step per chunk).
        lpips_fn: the LPIPS function; ``None`` with ``config.lpips`` loads
            :func:`~.lpips.lpips_tiled` (before any env is built, so a missing install fails
            at once).
        envs: a ready ``(env under test, renderer env)`` pair (:func:`make_env_pair`), to reuse.

    Raises:
        WorldMismatchError: the two envs stopped showing the same world.
    """
    if lpips_fn is None and config.lpips:
        lpips_fn = load_lpips()
    if not config.lpips:
        lpips_fn = None
    specs = episode_specs(config.episodes, config.seed, config.town_seed)
    model_env, world_env = envs if envs is not None else make_env_pair(config, env_factory)
    agents = list(model_env.possible_agents)
    shape = (len(specs), len(agents), int(config.chunks))
    values = {m: {metric: np.full(shape, np.nan) for metric in METRICS} for m in METHODS}
    live = np.zeros(shape, dtype=bool)
    steps: dict[str, list[float]] = {"model": [], "world": []}
    film_car = (0, agents[0])
    film: dict[str, list[np.ndarray]] = {"generated": [], "truth": [], "chunks": []}
    first_film = None
    start = time.perf_counter()
    bar = tqdm(total=len(specs) * config.chunks, desc="long horizon", unit="chunk",
               disable=not progress)  # fmt: skip
    try:
        for e, spec in enumerate(specs):
            obs, model_infos = model_env.reset(seed=spec.seed, options=spec.reset_options())
            truth_obs, world_infos = world_env.reset(seed=spec.seed, options=spec.reset_options())
            check_same_world(model_infos, world_infos, model_env, world_env, f"episode {e} reset")
            episode = _Episode(truth_obs)
            if e == film_car[0]:
                first_film = np.asarray(truth_obs[film_car[1]])[None]
            policy = policy_factory(model_env)
            for chunk in range(1, config.chunks + 1):
                if not model_env.agents:
                    break  # every car reached its goal
                actions = policy(obs)
                t0 = time.perf_counter()
                obs, _, _, _, model_infos = model_env.step(actions)
                t1 = time.perf_counter()
                _, _, _, _, world_infos = world_env.step(actions)
                steps["model"].append(t1 - t0)
                steps["world"].append(time.perf_counter() - t1)
                check_same_world(
                    model_infos, world_infos, model_env, world_env, f"episode {e} chunk {chunk}"
                )
                for agent in model_infos:  # the cars that drove this chunk
                    k = agents.index(agent)
                    generated = np.asarray(model_infos[agent]["frames"])
                    truth = np.asarray(world_infos[agent]["frames"])
                    frames = episode.method_frames(agent, chunk, generated)
                    for method, scores in score_chunk(
                        frames, truth, lpips_fn, config.lpips_every
                    ).items():
                        for metric, v in scores.items():
                            values[method][metric][e, k, chunk - 1] = v
                    live[e, k, chunk - 1] = True
                    episode.previous_last[agent] = truth[-1]
                    if (e, agent) == film_car:
                        film["generated"].append(generated[-1])
                        film["truth"].append(truth[-1])
                        film["chunks"].append(np.int64(chunk))
                bar.update(1)
            bar.update(config.chunks - int(live[e].any(axis=0).sum()))  # chunks never driven
    finally:
        bar.close()
    filmstrip = {k: np.stack(v) for k, v in film.items() if v}
    if first_film is not None:
        filmstrip["first"] = first_film
    return LongHorizonResult(
        config=config,
        specs=specs,
        agents=agents,
        values=values,
        live=live,
        step_seconds=steps,
        filmstrip=filmstrip,
        filmstrip_car=film_car,
        seconds=time.perf_counter() - start,
    )


def best_floor(result: LongHorizonResult, metric: str) -> tuple[np.ndarray, list[str]]:
    """``((C,) value, [floor per chunk])``: the best floor of each chunk on ``metric``.

    Highest PSNR and SSIM, lowest LPIPS and colour drift, detail closest to 1 (in ratio).
    """
    means = np.stack([result.mean(f, metric) for f in FLOORS])  # (F, C)
    if metric in ("psnr", "ssim"):
        key = np.where(np.isnan(means), -np.inf, means)
    elif metric == "detail":
        with np.errstate(divide="ignore", invalid="ignore"):
            key = -np.abs(np.log(means))
        key = np.where(np.isnan(key), -np.inf, key)
    else:
        key = np.where(np.isnan(means), -np.inf, -means)
    pick = key.argmax(axis=0)
    return means[pick, np.arange(means.shape[1])], [FLOORS[i] for i in pick]


def present_chunks(
    result: LongHorizonResult, wanted: Sequence[int] = FILMSTRIP_CHUNKS
) -> list[int]:
    """The chunks of ``wanted`` that the run has, and its last chunk (a run may be shorter or
    longer than 20 chunks)."""
    last = int(result.live.shape[2])
    return sorted({c for c in wanted if 1 <= c <= last} | {last})
