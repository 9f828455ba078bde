"""Seconds per training step with and without the latent cache (stage 1 and 2, batch 1).

Writes a small synthetic dataset (coloured noise; a step's cost does not depend on content) at
each config's resolution, builds its latent cache with the config's random VAE, then times
``Trainer.train_step`` with the VAE encoding on the fly and reading the cache::

    OMP_NUM_THREADS=1 python benchmarks/latent_cache_speed.py --configs tiny small --steps 10

Prints a Markdown table: median seconds per step over the steps after the first two.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from shareverse_env.models.configs import get_spec
from shareverse_env.models.pipeline import ShareVersePipeline
from shareverse_env.models.training import TrainConfig, Trainer
from shareverse_env.models.training.latent_cache import build_latent_cache

from shareverse_env.data import SequenceDataset
from shareverse_env.data.format import (
    SequenceData,
    dataset_info,
    write_dataset_info,
    write_sequence,
)


def write_dataset(root: Path, view_hw: tuple[int, int], sequences: int, frames: int) -> Path:
    rng = np.random.default_rng(0)
    h2, w2 = 2 * view_hw[0], 2 * view_hw[1]
    write_dataset_info(
        root,
        dataset_info(
            num_agents=2,
            num_frames=frames,
            view_hw=view_hw,
            splits={"train": {"sequences": sequences}},
            generator={"synthetic": "noise"},
        ),
    )
    for index in range(sequences):
        base = rng.integers(0, 255, (2, 1, h2, w2, 3))
        drift = np.arange(frames)[None, :, None, None, None] * 3
        poses = np.zeros((2, frames, 3))
        poses[:, :, 0] = np.arange(frames)[None] * 0.5
        poses[:, :, 1] = np.arange(2)[:, None] * 4.0
        video = ((base + drift) % 255).astype(np.uint8)
        depth = np.full((2, frames, h2, w2), 10.0, np.float32)
        write_sequence(root, "train", index, SequenceData(video, depth, poses, {}))
    return root


def time_steps(
    config: str, data: Path, run: Path, stage: str, steps: int, cache: Path | None
) -> float:
    pipe = ShareVersePipeline.from_config_name(config, seed=0)
    cfg = TrainConfig(stage=stage, steps=steps, warmup_steps=0, checkpoint_minutes=1e9)
    dataset = SequenceDataset(data, "train", frames_only=True)
    trainer = Trainer(pipe, dataset, run, cfg, progress=False, latents=cache)
    seconds = [trainer.train_step()["seconds"] for _ in range(steps)]
    return statistics.median(seconds[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "small"])
    parser.add_argument("--stages", nargs="+", default=["stage1", "stage2"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sequences", type=int, default=2)
    parser.add_argument("--frames", type=int, default=41)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="latent_cache_speed."))
    print(f"torch threads: {torch.get_num_threads()}, scratch: {work}")
    rows = []
    for config in args.configs:
        data = write_dataset(
            work / config / "data", get_spec(config).view_hw, args.sequences, args.frames
        )
        started = time.perf_counter()
        pipe = ShareVersePipeline.from_config_name(config, seed=0)
        report = build_latent_cache(data, pipe, work / config / "cache", progress=False)
        build = (time.perf_counter() - started) / len(report.encoded)
        print(f"{config}: cache built, {build:.1f} s per sequence of {args.frames} frames")
        for stage in args.stages:
            fly = time_steps(config, data, work / config / f"fly_{stage}", stage, args.steps, None)
            hit = time_steps(
                config,
                data,
                work / config / f"hit_{stage}",
                stage,
                args.steps,
                work / config / "cache",
            )
            rows.append((config, stage, fly, hit, build))
            print(f"{config} {stage}: {fly:.3f} s/step on the fly, {hit:.3f} s/step cached")
    print(
        "\n| config | stage | on the fly s/step | cached s/step | speed-up | cache build s/sequence |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for config, stage, fly, hit, build in rows:
        print(
            f"| `{config}` | `{stage}` | {fly:.3f} | {hit:.3f} | {fly / hit:.2f}× | {build:.1f} |"
        )


if __name__ == "__main__":
    main()
