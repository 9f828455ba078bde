"""Speed and size of the spatial memory cache (paper Sec. 3.4, Eq. 3) against its size.

    python benchmarks/memory_retrieval.py                       # 100, 1k, 10k, 100k entries
    python benchmarks/memory_retrieval.py --sizes 1000 1000000  # other cache sizes

Fills a :class:`~shareverse_env.memory.SpatialMemory` with ``size`` frames of float16 payloads
of shape ``(16, 8, 12)`` (a latent frame) from four agents scattered over a 1 km square, then
prints, per cache size, the median over ``--repeats`` of:

* retrieve: one :meth:`~SpatialMemory.retrieve` of 4 queries over all agents' frames;
* add (grow): one add of 28 frames (one agent's chunk) to an unbounded cache of that size;
* add (full): the same add to a cache at its capacity of that size (evicting 28 frames);
* the storage allocated by the unbounded cache (``SpatialMemory.nbytes``) in MiB, filled in one
  add and so without slack (a cache grown add by add holds up to twice that until it is full).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from shareverse_env.core.geometry import MEMORY_FRAMES, NEW_FRAMES_PER_CHUNK
from shareverse_env.memory import SpatialMemory

ENTRY_SHAPE = (16, 8, 12)
AGENTS = 4


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def random_frames(
    rng: np.random.Generator, count: int
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    payload = torch.randn((count, *ENTRY_SHAPE), dtype=torch.float16)
    poses = rng.uniform([0, 0, -np.pi], [1000, 1000, np.pi], (count, 3))
    return payload, poses, rng.integers(0, AGENTS, count)


def filled(size: int, capacity: int | None, rng: np.random.Generator) -> SpatialMemory:
    memory = SpatialMemory(capacity=capacity, storage_dtype=torch.float16)
    payload, poses, agents = random_frames(rng, size)
    memory.add(payload, poses, agents, np.arange(size) // AGENTS)
    return memory


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per measurement")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    chunk = NEW_FRAMES_PER_CHUNK
    print(
        f"payload {ENTRY_SHAPE} float16, {AGENTS} agents, {MEMORY_FRAMES} queries (source all), "
        f"add = {chunk} frames; median of {args.repeats}; torch threads {torch.get_num_threads()}"
    )
    print(
        f"{'entries':>8} {'retrieve ms':>12} {'add (grow) ms':>14} {'add (full) ms':>14} "
        f"{'storage MiB':>12}"
    )
    for size in args.sizes:
        grow = filled(size, None, rng)
        full = filled(size, size, rng)
        storage_mib = grow.nbytes / 2**20  # before the timed adds grow it further
        queries = rng.uniform(0, 1000, (MEMORY_FRAMES, 2))
        grow.retrieve(0, queries)  # warm-up
        retrieve_ms = median_ms(lambda m=grow, q=queries: m.retrieve(0, q), args.repeats)
        payload, poses, agents = random_frames(rng, chunk)
        frames = np.arange(chunk)
        add_args = (payload, poses, agents, frames)
        # The unbounded cache grows by `chunk` per call (and occasionally doubles its storage).
        grow_ms = median_ms(lambda m=grow, a=add_args: m.add(*a), args.repeats)
        full_ms = median_ms(lambda m=full, a=add_args: m.add(*a), args.repeats)
        print(
            f"{size:>8} {retrieve_ms:>12.3f} {grow_ms:>14.3f} {full_ms:>14.3f} {storage_mib:>12.1f}"
        )


if __name__ == "__main__":
    main()
