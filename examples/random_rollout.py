"""Roll out random (but gentle) driving in the shared town and record it to MP4.

Every chunk of every agent is written: all agents' 2×2 camera tiles side by side and a top-down
minimap on the right, at 10 fps.

    python examples/random_rollout.py                      # 6 chunks, 2 agents → outputs/random_rollout.mp4
    python examples/random_rollout.py --agents 3 --chunks 10 --scenario crossing --weather sunset
    python examples/random_rollout.py --backend shareverse --model tiny   # the generative backend
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from shareverse_env.wrappers import RecordVideo
from tqdm import tqdm

import shareverse_env
from shareverse_env.backends import backend_names
from shareverse_env.world.scenarios import SCENARIOS
from shareverse_env.world.weather import WEATHERS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/random_rollout.mp4"))
    parser.add_argument("--chunks", type=int, default=6, help="env steps (2.8 s each)")
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--scenario", choices=SCENARIOS, default="head_on")
    parser.add_argument("--weather", choices=sorted(WEATHERS), default="clear_noon")
    parser.add_argument(
        "--backend",
        choices=["auto", *backend_names()],
        default="auto",
        help="auto: the shipped trained model when installed, else the exact renderer",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="for --backend shareverse: a config name (tiny, small: random weights) or a "
        "pipeline folder; default: the shipped weights",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def gentle_random_action(rng: np.random.Generator) -> np.ndarray:
    """Mostly forward with small wiggles: random, but the cars stay in view of each other."""
    return np.array([rng.uniform(5.0, 12.0), rng.uniform(-0.3, 0.3), rng.uniform(-0.08, 0.08)])


def main() -> None:
    args = parse_args()
    if args.out.suffix != ".mp4":
        raise SystemExit(f"--out must end in .mp4; got {args.out}")
    env = shareverse_env.parallel_env(
        backend=args.backend,
        model=args.model,
        num_agents=args.agents,
        max_cycles=args.chunks,
        scenario=args.scenario,
        weather=args.weather,
        terminate_on_collision=False,  # keep recording through bumps
    )
    env = RecordVideo(
        env, args.out.parent, episode_trigger=lambda _: True, name_prefix=args.out.stem
    )
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    env.reset(seed=args.seed)
    total = dict.fromkeys(env.possible_agents, 0.0)
    for _ in tqdm(range(args.chunks), desc="chunks", unit="chunk"):
        if not env.agents:
            break
        actions = {a: gentle_random_action(rng).astype(np.float32) for a in env.agents}
        _, rewards, *_ = env.step(actions)
        for agent, r in rewards.items():
            total[agent] += r
    frames = env.frames_written
    env.close()
    produced = env.recorded[-1]
    target = args.out
    produced.replace(target)
    elapsed = time.perf_counter() - start
    summary = ", ".join(f"{a}: {r:+.2f}" for a, r in total.items())
    print(f"wrote {target} ({frames} frames, {elapsed:.1f} s); returns {summary}")


if __name__ == "__main__":
    main()
