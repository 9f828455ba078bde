"""Host seconds to draw one cached stage-1/2 training batch: the CPU work of a step besides the
network and the VAE.

On a GPU the transformer step of the `small` model takes a fraction of a second at batch 32, so
the loader's CPU time (reading chunk and memory latents from the cache, retrieving memory with
Eq. 3, reading the conditioning frames, building the raymaps) decides whether the GPU waits.
The trainer draws the next batch in a thread while the current step runs; this times that draw
alone, on one thread::

    OMP_NUM_THREADS=1 python benchmarks/loader_time.py --batch-sizes 8 32

Writes a small synthetic dataset and its latent cache with the `small` config's random VAE
(or uses ``--data DIR --latents CACHE [--init PIPELINE]``), then prints a Markdown table: median seconds per
batch over ``--repeats`` draws, the share of the raymaps in it, and milliseconds per example.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from latent_cache_speed import write_dataset
from shareverse_env.models.configs import get_spec
from shareverse_env.models.pipeline import ShareVersePipeline
from shareverse_env.models.training import TrainConfig, Trainer
from shareverse_env.models.training.latent_cache import build_latent_cache

from shareverse_env.data import SequenceDataset


def time_draws(trainer: Trainer, repeats: int) -> tuple[float, float]:
    """Median seconds of ``trainer._draw`` and of the raymaps part of it."""
    totals, rays = [], []
    for step in range(repeats):
        start = time.perf_counter()
        _, examples = trainer._draw(step)
        totals.append(time.perf_counter() - start)
        start = time.perf_counter()
        for e in examples:
            trainer.pipe.packed_raymaps(e.poses, e.memory_poses)
        rays.append(time.perf_counter() - start)
    return statistics.median(totals), statistics.median(rays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--stages", nargs="+", default=["stage1", "stage2"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--data", type=Path, default=None, help="a dataset (default: synthetic)")
    parser.add_argument("--latents", type=Path, default=None, help="its cache (with --data)")
    parser.add_argument(
        "--init", default="models/weights/small", help="the pipeline whose VAE made --latents"
    )
    args = parser.parse_args()
    pipe = ShareVersePipeline.from_config_name("small", seed=0)
    if args.data is None:
        work = Path(tempfile.mkdtemp(prefix="loader_time."))
        data_dir = write_dataset(work / "data", get_spec("small").view_hw, 4, 89)
        cache = work / "cache"
        build_latent_cache(data_dir, pipe, cache, progress=False)
    else:
        if args.latents is None:
            parser.error("--data needs --latents")
        data_dir, cache = args.data, args.latents
        pipe = ShareVersePipeline.from_pretrained(args.init)
    data = SequenceDataset(data_dir, "train", frames_only=True)
    print(f"torch threads: {torch.get_num_threads()}, data: {data_dir} ({len(data)} sequences)")
    rows = []
    for stage in args.stages:
        for batch in args.batch_sizes:
            cfg = TrainConfig(stage=stage, batch_size=batch, steps=args.repeats)
            run = Path(tempfile.mkdtemp(prefix="loader_time_run."))
            trainer = Trainer(pipe, data, run, cfg, progress=False, latents=cache)
            total, rays = time_draws(trainer, args.repeats)
            rows.append((stage, batch, total, rays))
    print("\n| stage | batch | draw s/batch | of which raymaps | ms per example |")
    print("|---|---:|---:|---:|---:|")
    for stage, batch, total, rays in rows:
        print(
            f"| `{stage}` | {batch} | {total:.3f} | {rays / total:.0%} | {1000 * total / batch:.1f} |"
        )


if __name__ == "__main__":
    main()
