"""Time and memory per chunk over a long episode of the default env (shipped model, scene cache).

    python benchmarks/scene_cache_episode.py                       # 200 chunks, defaults
    python benchmarks/scene_cache_episode.py --chunks 40 --no-scene-cache
    python benchmarks/scene_cache_episode.py --backend-option memory_capacity=512

Two agents drive the ``head_on`` scenario with gentle random actions (collisions do not end the
episode). Printed: for windows of chunks, the mean wall time of a step, of the scene cache's
part of it, the buffers in the cache and the process's resident memory at the window's end;
then the peak resident memory. Flat columns mean the cost does not grow with the episode.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from tqdm import tqdm

import shareverse_env


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
        max_cycles=args.chunks, terminate_on_collision=False, backend_options=options
    )
    rng = np.random.default_rng(args.seed)
    env.reset(seed=args.seed)
    backend = env.backend
    rows, step_times, cache_times = [], [], []
    for chunk in tqdm(range(args.chunks), desc="chunks", unit="chunk"):
        if not env.agents:
            break
        actions = {
            a: np.array(
                [rng.uniform(5.0, 10.0), rng.uniform(-0.3, 0.3), rng.uniform(-0.1, 0.1)],
                dtype=np.float32,
            )
            for a in env.agents
        }
        start = time.perf_counter()
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
                    rss_mb(),
                )
            )
    print(f"\nbackend options: {options or 'defaults'}")
    print("| chunks | step s | scene cache s | cache buffers | memory frames | RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, step, cache, buffers, frames, rss in rows:
        print(f"| {n} | {step:.2f} | {cache:.2f} | {buffers} | {frames} | {rss:.0f} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB; mean step {np.mean(step_times):.2f} s")


if __name__ == "__main__":
    main()
