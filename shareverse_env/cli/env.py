"""``shareverse-env``: drive the env from the command line and see what it is made of.

Commands:

* ``shareverse-env rollout`` runs episodes with a policy (``random``, ``expert``, ``still`` or a
  trained checkpoint), prints one line per episode and optionally records them to MP4.
* ``shareverse-env info`` prints the spaces, the config, the backend and the model weights in use.

Run ``shareverse-env --help`` or ``shareverse-env rollout --help`` for the examples.

Example:
    >>> main(["rollout", "--backend", "world", "--agents", "1", "--chunks", "1",
    ...       "--policy", "still"])  # doctest: +ELLIPSIS
    episode 1/1 (seed 0, ...): agent_0 return -0.05 goal no collision - | 29 frames in ... s
    0
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from shareverse_env import __version__, parallel_env
from shareverse_env.backends import (
    backend_class,
    backend_names,
    default_backend_name,
    shipped_weights_folder,
)
from shareverse_env.core.geometry import NEW_FRAMES_PER_CHUNK, VIEW_NAMES
from shareverse_env.envs.parallel import ACTION_FIELDS
from shareverse_env.policies.actor_critic import load_policy, read_policy_sidecar
from shareverse_env.world.scenarios import SCENARIOS
from shareverse_env.world.weather import WEATHERS
from shareverse_env.wrappers import wrap_for_policy

POLICY_NAMES = ("random", "expert", "still")

_MAIN_EPILOG = """\
examples:
  shareverse-env info                                   # spaces, config, model weights in use
  shareverse-env rollout --out episode.mp4              # 2 cars, random actions, shipped model
  shareverse-env rollout --backend world --policy expert --chunks 8 --out expert.mp4
  shareverse-env rollout --policy runs/ppo/policy.safetensors --episodes 5

Backends: "auto" (default) is the shipped generative ShareVerse model with its scene cache
(seconds per chunk: docs/benchmarks.md, "The main job"); "world" is the exact renderer of the
procedural town (~0.25 s per chunk);
"shareverse" with --model picks a model explicitly (e.g. --model tiny: random weights, fast,
for trying things out).
"""

_ROLLOUT_EPILOG = """\
examples:
  shareverse-env rollout --backend world --policy expert --chunks 8 --out expert.mp4
      the route-following expert drives both cars for 8 chunks (22.4 s) through the exact
      renderer; expert.mp4 shows every frame: the cars' camera tiles and a minimap
  shareverse-env rollout --agents 3 --scenario crossing --weather fog --out fog.mp4
      three cars in the shipped generative model, random actions
  shareverse-env rollout --backend world --policy runs/ppo/policy.safetensors --episodes 20
      evaluate a checkpoint from examples/train_ppo.py (20 episodes, seeds 0..19), no video
  shareverse-env rollout --backend shareverse --model tiny --chunks 2
      the generative pipeline with a tiny random model: noise frames, real mechanics

Each episode prints one line: every agent's return, whether it reached its goal, its first
collision (car, obstacle, off_road; "-" for none), the frames of the episode and the seconds
it took. Episode k uses seed --seed + k; with several episodes, --out NAME.mp4 writes
NAME-0.mp4, NAME-1.mp4, ...
"""


# ------------------------------------------------------------------------- argument types


def _int_at_least(lowest: int):
    """An argparse type: an integer ``≥ lowest``, with an error that says so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer ≥ {lowest}; got {text!r}"
            ) from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be ≥ {lowest}; got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_seed = _int_at_least(0)


def _mp4_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() != ".mp4" or not path.stem:
        raise argparse.ArgumentTypeError(f"must be a file name ending in .mp4; got {text!r}")
    return path


def _add_env_arguments(parser: argparse.ArgumentParser, agents_default: int = 2) -> None:
    group = parser.add_argument_group("env")
    group.add_argument(
        "--backend",
        choices=("auto", *backend_names()),  # registered backends included
        default="auto",
        help="auto (default): the shipped generative model when installed, else the exact "
        "renderer; world: the exact renderer; shareverse: the generative model (see --model)",
    )
    group.add_argument(
        "--model",
        default=None,
        metavar="NAME|FOLDER",
        help="generative backends only: a config name (tiny, small: random weights) or a "
        "trained pipeline folder; default: the shipped weights",
    )
    group.add_argument(
        "--agents",
        type=_positive_int,
        default=agents_default,
        metavar="N",
        help=f"cars in the shared world (default {agents_default})",
    )
    group.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default=None,
        help="interaction mode; default: drawn per episode",
    )
    group.add_argument(
        "--weather",
        choices=sorted(WEATHERS),
        default=None,
        help="weather preset; default: drawn per episode",
    )
    group.add_argument(
        "--goal-distance",
        type=float,
        nargs=2,
        default=None,
        metavar=("MIN", "MAX"),
        help="metres of driving from start to goal (60 <= MIN <= MAX; a MIN beyond the town's "
        "longest route is refused); default 140 220 (examples/train_ppo.py trains with 60 90)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``shareverse-env`` argument parser (sub-commands ``rollout`` and ``info``)."""
    parser = argparse.ArgumentParser(
        prog="shareverse-env",
        description="Drive the ShareVerse multi-agent driving env from the command line.",
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    rollout = commands.add_parser(
        "rollout",
        help="run episodes with a policy, print a summary per episode, optionally record MP4",
        description="Run episodes with a policy; print one summary line per episode.",
        epilog=_ROLLOUT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_env_arguments(rollout)
    run = rollout.add_argument_group("rollout")
    run.add_argument(
        "--policy",
        default="random",
        metavar="random|expert|still|PATH",
        help="random: uniform actions; expert: the route-following expert; still: stand still; "
        "PATH: a checkpoint (.safetensors) from examples/train_ppo.py (default: random)",
    )
    run.add_argument(
        "--chunks",
        type=_positive_int,
        default=6,
        metavar="N",
        help="steps per episode, 2.8 s (28 frames) each; an agent may finish earlier at its "
        "goal or in a collision (default 6)",
    )
    run.add_argument(
        "--episodes", type=_positive_int, default=1, metavar="N", help="episodes (default 1)"
    )
    run.add_argument(
        "--out",
        type=_mp4_path,
        default=None,
        metavar="FILE.mp4",
        help="record every frame (all cars' views side by side, plus a minimap) to this MP4",
    )
    run.add_argument(
        "--seed", type=_seed, default=0, help="seed of episode 0; episode k uses seed + k"
    )

    info = commands.add_parser(
        "info",
        help="print the spaces, config, backend and the model weights in use",
        description="Print the spaces, config, backend and the model weights in use.",
        epilog="examples:\n  shareverse-env info\n  shareverse-env info --backend world "
        "--agents 3\n  shareverse-env info --policy runs/ppo/policy.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_env_arguments(info)
    info.add_argument(
        "--policy",
        default=None,
        metavar="PATH",
        help="also describe this checkpoint and whether it fits the env's spaces",
    )
    return parser


# ------------------------------------------------------------------------- shared helpers


def _make_env(parser: argparse.ArgumentParser, args: argparse.Namespace, **kwargs: Any) -> Any:
    """The env of the flags; bad combinations become a one-line usage error."""
    if (
        args.model is not None
        and args.backend != "auto"
        and not backend_class(args.backend).takes_model
    ):
        parser.error(f"--model is only used by backends that take a model, not {args.backend}")
    options: dict[str, Any] = {
        "backend": args.backend,
        "num_agents": args.agents,
        "scenario": args.scenario,
        "weather": args.weather,
        **kwargs,
    }
    if args.goal_distance is not None:
        options["goal_distance"] = tuple(args.goal_distance)
    if args.model is not None:
        options["model"] = args.model
    try:
        return parallel_env(**options)
    except (ValueError, FileNotFoundError, OSError) as err:
        parser.error(f"cannot build the env: {err}")


def _check_policy_path(parser: argparse.ArgumentParser, text: str) -> Path:
    path = Path(text)
    if path.suffix not in (".safetensors", ".json"):
        parser.error(
            f"--policy must be one of {', '.join(POLICY_NAMES)} or the path of a checkpoint "
            f"(.safetensors); got {text!r}"
        )
    if not path.is_file():
        parser.error(f"--policy: no checkpoint file {path}")
    return path


def _make_policy(parser: argparse.ArgumentParser, name: str, env: Any, seed: int) -> Any:
    from shareverse_env.policies import make_policy

    if name in POLICY_NAMES:
        return make_policy(name, env, seed=seed)
    path = _check_policy_path(parser, name)
    try:
        return load_policy(path, env)
    except (ValueError, FileNotFoundError) as err:
        parser.error(f"--policy: {err}")


def _wrap_for_checkpoint(parser: argparse.ArgumentParser, name: str, env: Any) -> Any:
    """``env`` in the observation wrappers checkpoint ``name`` was trained behind (if any)."""
    if name in POLICY_NAMES:
        return env
    try:
        return wrap_for_policy(env, _check_policy_path(parser, name))
    except (ValueError, FileNotFoundError) as err:
        parser.error(f"--policy: {err}")


def _format_bytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"


# ------------------------------------------------------------------------- rollout


def _episode_paths(out: Path, episodes: int) -> list[Path]:
    if episodes == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{k}{out.suffix}") for k in range(episodes)]


def rollout(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run ``args.episodes`` episodes; one summary line each."""
    from shareverse_env.policies import reset_policy

    if args.policy not in POLICY_NAMES:
        _check_policy_path(parser, args.policy)  # fail before the (slow) model load
    env = _make_env(parser, args, max_cycles=args.chunks)
    env = _wrap_for_checkpoint(parser, args.policy, env)
    policy = _make_policy(parser, args.policy, env, args.seed)
    recorder = None
    if args.out is not None:
        from shareverse_env.wrappers import RecordVideo

        # A hidden prefix: the finished file is renamed to the name the user asked for.
        recorder = RecordVideo(
            env,
            args.out.parent,
            episode_trigger=lambda _: True,
            name_prefix=f".{args.out.stem}.recording",
        )
        env = recorder
    targets = _episode_paths(args.out, args.episodes) if args.out is not None else []
    try:
        for k in range(args.episodes):
            seed = args.seed + k
            start = time.perf_counter()
            reset_policy(policy, seed)
            observations, infos = env.reset(seed=seed)
            agents = list(env.possible_agents)
            scenario = infos[agents[0]]["scenario"]["name"]
            weather = infos[agents[0]]["weather"]
            returns = dict.fromkeys(agents, 0.0)
            reached = dict.fromkeys(agents, False)
            collision: dict[str, str | None] = dict.fromkeys(agents)
            steps = 0
            bar = tqdm(
                total=args.chunks,
                desc=f"episode {k + 1}/{args.episodes}",
                unit="chunk",
                leave=False,
                dynamic_ncols=True,
            )
            with bar:
                while env.agents:
                    observations, rewards, _, _, infos = env.step(policy(observations))
                    steps += 1
                    bar.update()
                    for agent, reward in rewards.items():
                        returns[agent] += float(reward)
                        reached[agent] |= bool(infos[agent].get("reached_goal", False))
                        collision[agent] = collision[agent] or infos[agent].get("collision")
            frames = 1 + NEW_FRAMES_PER_CHUNK * steps
            written = ""
            if recorder is not None:
                produced = recorder.recorded[-1]
                produced.replace(targets[k])
                written = f" -> {targets[k]}"
            seconds = time.perf_counter() - start
            per_agent = " | ".join(
                f"{a} return {returns[a]:+.2f} goal {'yes' if reached[a] else 'no'} "
                f"collision {collision[a] or '-'}"
                for a in agents
            )
            print(
                f"episode {k + 1}/{args.episodes} (seed {seed}, {scenario}, {weather}): "
                f"{per_agent} | {frames} frames in {seconds:.1f} s{written}",
                flush=True,
            )
    finally:
        env.close()
    return 0


# ------------------------------------------------------------------------- info


def _weights_lines(env: Any, args: argparse.Namespace) -> list[str]:
    backend = env.unwrapped.backend
    if not type(backend).takes_model:
        what = (
            "the exact renderer of the procedural town" if backend.name == "world" else "no model"
        )
        return [f"weights: none ({what})"]
    pipe = getattr(backend, "pipeline", None)
    params = ""
    if pipe is not None:
        count = sum(p.numel() for p in pipe.transformer.parameters())
        count += sum(p.numel() for p in pipe.vae.parameters())
        params = f", {count / 1e6:.1f} M parameters"
    if args.model is None or Path(str(args.model)).is_dir():
        folder = shipped_weights_folder() if args.model is None else Path(args.model)
        label = "shipped weights" if args.model is None else "pipeline folder"
        lines = [f"model: {label} at {folder.resolve()}{params}"]
        files = sorted(folder.rglob("*.safetensors")) if folder is not None else []
        lines += [f"  {f.relative_to(folder)}  {_format_bytes(f.stat().st_size)}" for f in files]
        return lines
    return [f"model: config {args.model!r} with random weights (no files){params}"]


def _policy_lines(parser: argparse.ArgumentParser, text: str, env: Any) -> list[str]:
    from shareverse_env.policies.actor_critic import ActorCriticConfig, check_compatible

    path = _check_policy_path(parser, text)
    try:
        data = read_policy_sidecar(path)
        config = ActorCriticConfig(**data["config"])
    except (ValueError, TypeError, FileNotFoundError) as err:
        parser.error(f"--policy: {err}")
    weights = path.with_suffix(".safetensors")
    lines = [
        f"policy: {weights.resolve()} ({_format_bytes(weights.stat().st_size)})",
        f"  image {config.obs_shape} uint8, channels {config.channels}, hidden {config.hidden}",
    ]
    if config.vectors:
        lines.append("  vectors: " + ", ".join(f"{k} ({n})" for k, n in config.vectors))
    for spec in data.get("observation_wrappers", []):
        lines.append(f"  observation wrapper: {spec}")
    try:
        env = wrap_for_policy(env, path)
        check_compatible(config, env, source="the checkpoint")
        lines.append("  fits this env's spaces: yes")
    except ValueError as err:
        lines.append(f"  fits this env's spaces: no — {err}")
    return lines


def info(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Print what the env of the flags is made of."""
    env = _make_env(parser, args)
    try:
        raw = env.unwrapped
        agent = env.possible_agents[0]
        obs_space, act_space = env.observation_space(agent), env.action_space(agent)
        view_h, view_w = raw.backend.view_hw
        resolved = args.backend
        if args.backend == "auto":
            resolved = f"{raw.backend.name} (auto: {default_backend_name(args.model)})"
        fields = ", ".join(
            f"{name} in [{lo:.4g}, {hi:.4g}]"
            for name, lo, hi in zip(ACTION_FIELDS, act_space.low, act_space.high, strict=True)
        )
        lines = [
            f"shareverse_env {__version__}",
            f"backend: {resolved}",
            *_weights_lines(env, args),
            f"agents: {', '.join(env.possible_agents)}",
            f"observation space (each agent): {obs_space}",
            f"  the chunk's last frame: views {VIEW_NAMES} of {view_h}×{view_w} tiled "
            "[[front, rear], [left, right]]",
            f"action space (each agent): {act_space}",
            f"  pose delta over one 2.8 s chunk: {fields} (m, m, rad)",
            f"state space: {raw.state_space}",
            f"step: {NEW_FRAMES_PER_CHUNK} new frames per agent at "
            f"{raw.metadata['render_fps']} fps; infos hold 'frames', 'poses', 'scenario', "
            "'reward_terms', 'collision', 'reached_goal'",
            "config:",
        ]
        config = raw.config
        for name in config.__dataclass_fields__:
            value = getattr(config, name)
            note = ""
            if value is None and name in ("scenario", "weather", "town_seed"):
                note = "  (drawn per reset)"
            lines.append(f"  {name}: {value!r}{note}")
        if args.policy is not None:
            lines += _policy_lines(parser, args.policy, env)
        print("\n".join(lines))
    finally:
        env.close()
    return 0


# ------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``shareverse-env`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Usage errors exit with code 2 and a one-line message (``argparse``'s ``parser.error``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    np.set_printoptions(precision=4, suppress=True)
    try:
        if args.command == "rollout":
            return rollout(parser, args)
        return info(parser, args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
