"""Time and memory per chunk over a long episode of the default env (shipped model, scene cache).

    python benchmarks/scene_cache_episode.py                       # 200 chunks, defaults
    python benchmarks/scene_cache_episode.py --chunks 40 --no-scene-cache
    python benchmarks/scene_cache_episode.py --backend-option memory_capacity=512
    python benchmarks/scene_cache_episode.py --chunks 1000 --free-drive --model tiny

Two agents drive the ``head_on`` scenario with gentle random actions (collisions do not end the
episode). With ``--free-drive`` the backend is driven directly (``backend.generate`` on the
planned chunks, exactly what ``env.step`` calls), so no goal or road ends the episode and it
lasts ``--chunks`` chunks. Printed: for windows of chunks, the mean wall time of a step, of the
scene cache's part of it, the buffers in the cache, the frames and MiB in the spatial memory and
the process's resident memory at the window's end; then the peak resident memory. Flat columns
mean the cost does not grow with the episode.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from tqdm import tqdm

import shareverse_env
from shareverse_env.core.geometry import plan_chunk


def rss_mb() -> float:
    """Current resident set size of this process, MiB (Linux ``/proc``)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--window", type=int, default=20, help="chunks per printed row")
    parser.add_argument("--no-scene-cache", action="store_true")
    parser.add_argument("--model", default=None, help="model= of the env (default: shipped)")
    parser.add_argument(
        "--free-drive", action="store_true", help="drive the backend directly (no goals)"
    )
    parser.add_argument(
        "--backend-option", action="append", default=[], help="KEY=VALUE, repeatable"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    options = dict(kv.split("=", 1) for kv in args.backend_option)
    options = {k: parse_value(v) for k, v in options.items()}
    if args.no_scene_cache:
        options["scene_cache"] = False
    env = shareverse_env.parallel_env(
        model=args.model,
        max_cycles=args.chunks,
        terminate_on_collision=False,
        backend_options=options,
    )
    rng = np.random.default_rng(args.seed)
    env.reset(seed=args.seed)
    backend = env.backend
    poses = env.state()[:, :2]
    poses = np.concatenate([poses, np.arctan2(env.state()[:, 3], env.state()[:, 2])[:, None]], 1)
    active = np.ones(len(env.possible_agents), dtype=bool)
    rows, step_times, cache_times = [], [], []
    for chunk in tqdm(range(args.chunks), desc="chunks", unit="chunk"):
        if not env.agents and not args.free_drive:
            break
        actions = {
            a: np.array(
                [rng.uniform(5.0, 10.0), rng.uniform(-0.3, 0.3), rng.uniform(-0.1, 0.1)],
                dtype=np.float32,
            )
            for a in env.possible_agents
        }
        start = time.perf_counter()
        if args.free_drive:
            chunk_poses = plan_chunk(poses, np.stack([actions[a] for a in env.possible_agents]))
            backend.generate(chunk_poses, active)
            poses = chunk_poses[:, -1]
        else:
            env.step(actions)
        step_times.append(time.perf_counter() - start)
        cache_times.append(backend.last_timings.get("scene_cache", 0.0))
        if (chunk + 1) % args.window == 0 or chunk + 1 == args.chunks:
            scene = getattr(backend, "scene", None)
            rows.append(
                (
                    chunk + 1,
                    float(np.mean(step_times[-args.window :])),
                    float(np.mean(cache_times[-args.window :])),
                    len(scene.cache) if scene is not None else 0,
                    len(backend.memory),
                    backend.memory.nbytes / 2**20,
                    rss_mb(),
                )
            )
    capacity = backend.memory.capacity
    print(f"\nmodel {args.model or 'shipped'}; backend options: {options or 'defaults'}; ")
    print(f"memory capacity {capacity}; {'free drive' if args.free_drive else 'env.step'}")
    print(
        "| chunks | step s | scene cache s | cache buffers | memory frames | memory MiB | RSS MiB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, step, cache, buffers, frames, mib, rss in rows:
        print(f"| {n} | {step:.2f} | {cache:.2f} | {buffers} | {frames} | {mib:.1f} | {rss:.0f} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB; mean step {np.mean(step_times):.2f} s")


if __name__ == "__main__":
    main()
