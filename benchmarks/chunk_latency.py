"""Seconds per chunk of the ShareVerse sampler on this machine, stage by stage.

    python benchmarks/chunk_latency.py                      # tiny and small, 2 agents
    python benchmarks/chunk_latency.py --configs small --agents 2 --chunks 3 --steps 8

Each config runs in its own process (so that peak memory is its own) with random weights:
speed does not depend on the weights' values. A chunk is generated with 4 memory frames per
agent, as in an episode. Prints per-stage seconds (encode: conditioning frames and raymaps;
memory: the clean memory stream, once per chunk; denoise; decode; archive: encoding every new
frame as a memory latent), new frames per second, the denoiser's achieved GFLOP/s (FLOPs
counted with torch's FlopCounterMode on one forward) against the fp32 matmul peak measured in
the same process, and peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

STAGES = ("encode", "memory", "denoise", "decode", "archive")


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def measure(config: str, agents: int, chunks: int, steps: int | None) -> dict[str, float]:
    from shareverse_env.models.pipeline import MemoryInput, ShareVersePipeline

    from shareverse_env.core.geometry import plan_chunk

    pipe = ShareVersePipeline.from_config_name(config, seed=0)
    steps = steps or pipe.num_inference_steps
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (agents, *pipe.frame_shape), dtype=np.uint8)
    starts = np.stack([np.array([0.0, 4.0 * a, 0.0]) for a in range(agents)])
    poses = plan_chunk(starts, np.tile([8.0, 0.0, 0.0], (agents, 1)))
    channels = pipe.vae.config.latent_channels
    memory = MemoryInput(
        torch.randn(agents, 4, channels, *pipe.latent_hw), poses[:, [0, 8, 16, 24]].copy()
    )
    # Denoiser FLOPs of one forward (the sampler runs one per step).
    model_in = torch.randn(1, agents, 8, 2 * channels, *pipe.latent_hw)
    rays, mem_rays = pipe.chunk_raymaps(poses, memory.poses)
    with torch.no_grad():
        context = pipe.transformer.encode_memory(
            torch.cat([memory.latents, memory.latents], 2)[None], mem_rays[None]
        )
        counter = FlopCounterMode(display=False)
        with counter:
            pipe.transformer(
                model_in, torch.tensor([500]), raymaps=rays[None], memory_context=context
            )
    flops_per_forward = counter.get_total_flops()
    generator = torch.Generator().manual_seed(0)
    pipe(images, poses, memory, generator=generator, num_inference_steps=steps, progress=False)
    totals = dict.fromkeys(STAGES, 0.0)
    for _ in range(chunks):
        out = pipe(
            images, poses, memory, generator=generator, num_inference_steps=steps, progress=False
        )
        for stage in STAGES:
            totals[stage] += out.timings[stage]
    per_chunk = {stage: totals[stage] / chunks for stage in STAGES}
    total = sum(per_chunk.values())
    return {
        "config": config,
        "params_m": sum(p.numel() for p in pipe.transformer.parameters()) / 1e6,
        "vae_params_m": sum(p.numel() for p in pipe.vae.parameters()) / 1e6,
        "steps": steps,
        **per_chunk,
        "total": total,
        "frames_per_s": agents * 28 / total,
        "gflops": flops_per_forward * steps / per_chunk["denoise"] / 1e9,
        "peak_gflops": matmul_peak_gflops(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "small"])
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="default: the config's own")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = measure(args.worker, args.agents, args.chunks, args.steps)
        print(json.dumps(result))
        return
    rows = []
    for config in args.configs:
        cmd = [sys.executable, __file__, "--worker", config, "--agents", str(args.agents)]
        cmd += ["--chunks", str(args.chunks)]
        if args.steps:
            cmd += ["--steps", str(args.steps)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(
        f"{args.agents} agents, mean of {args.chunks} chunks after a warm-up chunk; seconds per chunk"
    )
    header = (
        f"{'config':>7} {'DiT M':>6} {'VAE M':>6} {'steps':>5} "
        + " ".join(f"{s:>8}" for s in STAGES)
        + f" {'total':>7} {'frames/s':>8} {'GFLOP/s':>8} {'peak':>6} {'RSS MiB':>8}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['config']:>7} {r['params_m']:6.1f} {r['vae_params_m']:6.2f} {r['steps']:5d} "
            + " ".join(f"{r[s]:8.3f}" for s in STAGES)
            + f" {r['total']:7.2f} {r['frames_per_s']:8.1f} {r['gflops']:8.1f}"
            f" {r['peak_gflops']:6.0f} {r['peak_rss_mib']:8.0f}"
        )


if __name__ == "__main__":
    main()
