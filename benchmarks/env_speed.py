"""Env steps per second on the ground-truth backend, and where the time goes.

    python benchmarks/env_speed.py            # 1, 2, 4 agents, 10 steps after a warm-up step
    python benchmarks/env_speed.py --agents 1 2 4 --steps 10
    python benchmarks/env_speed.py --agents 2 --chunk-frames all last

Prints a table: agents, ``chunk_frames`` (``all`` renders the 28 frames of every chunk, ``last``
only its last one), steps/s, speed-up over ``all`` at the same number of agents, tiled frames/s
(frames kept: agents × 28 or agents × 1 per step), the share of a step spent in the backend
(rendering), reset time, and peak resident memory of the process. The modes of one agent
count run one after the other in the same process, so their ratio is the figure to read.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

import shareverse_env
from shareverse_env.core.geometry import NEW_FRAMES_PER_CHUNK


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(agents: int, steps: int, seed: int, chunk_frames: str = "all") -> dict[str, float]:
    env = shareverse_env.parallel_env(
        backend="world",
        num_agents=agents,
        max_cycles=steps + 1,
        terminate_on_collision=False,
        scenario="following",
        chunk_frames=chunk_frames,
    )
    t0 = time.perf_counter()
    env.reset(seed=seed)
    reset_s = time.perf_counter() - t0
    drive = np.array([8.0, 0.0, 0.0], dtype=np.float32)
    env.step({a: drive for a in env.agents})  # warm-up
    backend_time = 0.0
    generate = env.backend.generate

    def timed_generate(*args, **kwargs):
        nonlocal backend_time
        t = time.perf_counter()
        out = generate(*args, **kwargs)
        backend_time += time.perf_counter() - t
        return out

    env.backend.generate = timed_generate
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step({a: drive for a in env.agents})
    elapsed = time.perf_counter() - t0
    env.close()
    kept = NEW_FRAMES_PER_CHUNK if chunk_frames == "all" else 1
    return {
        "agents": agents,
        "chunk_frames": chunk_frames,
        "steps_per_s": steps / elapsed,
        "frames_per_s": steps * agents * kept / elapsed,
        "backend_share": backend_time / elapsed,
        "reset_s": reset_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--chunk-frames",
        nargs="+",
        choices=["all", "last"],
        default=["all", "last"],
        help="the env's chunk_frames modes to measure (default: both)",
    )
    args = parser.parse_args()
    print(
        f"{'agents':>6} {'chunk':>6} {'steps/s':>8} {'speed-up':>9} {'frames/s':>9} "
        f"{'render %':>9} {'reset s':>8}"
    )
    for n in args.agents:
        base = None
        for mode in args.chunk_frames:
            r = measure(n, args.steps, args.seed, mode)
            if mode == "all":
                base = r["steps_per_s"]
            ratio = f"{r['steps_per_s'] / base:>8.1f}x" if base else f"{'-':>9}"
            print(
                f"{r['agents']:>6} {mode:>6} {r['steps_per_s']:>8.2f} {ratio} "
                f"{r['frames_per_s']:>9.1f} {100 * r['backend_share']:>8.0f}% {r['reset_s']:>8.2f}"
            )
    print(f"peak RSS: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
