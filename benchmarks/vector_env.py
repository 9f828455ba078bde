"""Frames per second of B batched worlds (one pipeline call per chunk) versus B separate envs.

    OMP_NUM_THREADS=1 python benchmarks/vector_env.py           # tiny, B = 1 2 4, 3 chunks
    OMP_NUM_THREADS=1 python benchmarks/vector_env.py --configs small --chunks 1

Both sides run the same generative model (random weights of the named config; speed does not
depend on their values) with 2 agents per world. "batched" is a
:class:`~shareverse_env.envs.vector.ShareVerseVectorEnv` of B envs: every step generates all B worlds'
chunks in one ``generate_batch`` call (one DiT forward per denoising step; the VAE runs world by
world). "separate" is B :class:`ShareVerseParallelEnv` stepped one
after the other (sharing the loaded model). Each config runs in its own process. A warm-up step
precedes the timed ones; the two sides alternate ``--repeats`` times and the fastest repeat of
each is kept, because the development machine is shared and slow outliers are other people's
work. Frames are tiled frames generated per wall-clock second (B × agents × 28 per step).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

FRAMES_PER_STEP = 28
ENV_KWARGS = {
    "backend": "shareverse",
    "num_agents": 2,
    "max_cycles": 100,
    "scenario": "following",
    "weather": "clear_noon",
    "town_seed": 0,
    "terminate_on_collision": False,
}
DRIVE = np.array([4.0, 0.0, 0.0], dtype=np.float32)  # slow: no goal (and no reset) while timed


def measure(
    config: str, sizes: list[int], chunks: int, repeats: int, threads: int
) -> list[dict[str, float]]:
    import torch
    from shareverse_env.models.loading import load_model

    import shareverse_env
    from shareverse_env.envs.vector import ShareVerseVectorEnv

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    pipe = load_model(config, seed=0)
    kwargs = {**ENV_KWARGS, "model": pipe}
    rows = []
    for size in sizes:
        vector = ShareVerseVectorEnv(size, **kwargs)
        separate = [shareverse_env.parallel_env(**kwargs) for _ in range(size)]
        agents = len(vector.possible_agents)
        batched_actions = np.broadcast_to(DRIVE, (size, agents, 3)).copy()

        def run_batched(steps: int, vector=vector, actions=batched_actions) -> float:
            vector.reset(seed=0)
            vector.step(actions)  # warm-up
            start = time.perf_counter()
            for _ in range(steps):
                vector.step(actions)
            return time.perf_counter() - start

        def run_separate(steps: int, envs=separate) -> float:
            for i, env in enumerate(envs):
                env.reset(seed=i)
            for env in envs:
                env.step({a: DRIVE for a in env.agents})  # warm-up
            start = time.perf_counter()
            for _ in range(steps):
                for env in envs:
                    env.step({a: DRIVE for a in env.agents})
            return time.perf_counter() - start

        best_batched = best_separate = float("inf")
        for _ in range(repeats):
            best_batched = min(best_batched, run_batched(chunks))
            best_separate = min(best_separate, run_separate(chunks))
        frames = size * agents * FRAMES_PER_STEP * chunks
        rows.append(
            {
                "config": config,
                "envs": size,
                "batched_s_per_step": best_batched / chunks,
                "separate_s_per_step": best_separate / chunks,
                "batched_fps": frames / best_batched,
                "separate_fps": frames / best_separate,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["tiny"])
    parser.add_argument("--envs", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--chunks", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 suits a shared 2-core CPU)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        rows = measure(args.worker, args.envs, args.chunks, args.repeats, args.threads)
        print(json.dumps(rows))
        return
    print(
        "| config | B | batched s/step | separate s/step | batched frames/s "
        "| separate frames/s | speed-up |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for config in args.configs:
        command = [sys.executable, __file__, "--worker", config, "--chunks", str(args.chunks)]
        command += ["--repeats", str(args.repeats), "--threads", str(args.threads)]
        command += ["--envs", *map(str, args.envs)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        for row in json.loads(out.strip().splitlines()[-1]):
            print(
                f"| {row['config']} | {row['envs']} | {row['batched_s_per_step']:.3f} "
                f"| {row['separate_s_per_step']:.3f} | {row['batched_fps']:.1f} "
                f"| {row['separate_fps']:.1f} "
                f"| {row['batched_fps'] / row['separate_fps']:.2f}× |"
            )


if __name__ == "__main__":
    main()
