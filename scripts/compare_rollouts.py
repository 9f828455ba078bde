"""Side-by-side rollouts of several variants and the truth on one dataset sequence: MP4 + PNG.

    python scripts/compare_rollouts.py --data data/eval --sequence 0 --chunks 3
    python scripts/compare_rollouts.py --data data/eval_long --chunks 10 --out docs/figures/cache_long

Every variant (:mod:`shareverse_env.evaluation.variants`) runs the sequence's true plans from its
true first frames, as in the quality evaluation. The MP4 (10 fps) shows, for every agent one row,
the variants' tiled frames side by side and the truth last; the PNG grid shows a few frames per
chunk in the same layout, each column labelled with its frame index.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from tqdm import tqdm

from shareverse_env.core.geometry import NEW_FRAMES_PER_CHUNK
from shareverse_env.data import SequenceDataset
from shareverse_env.evaluation.quality import dataset_rig, rollout
from shareverse_env.evaluation.report import sample_columns
from shareverse_env.evaluation.variants import VARIANTS, build_pipelines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("data/eval"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--sequence", type=int, default=0, help="index into the split")
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument(
        "--variants", nargs="+", default=["trained", "trained_cache"], choices=list(VARIANTS)
    )
    parser.add_argument("--model", default=None, help="pipeline folder (default: shipped)")
    parser.add_argument(
        "--cache-model", default=None, help="pipeline with a scene-cache input (cache_conditioned)"
    )
    parser.add_argument("--out", type=Path, default=Path("docs/figures/cache_compare"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args()


def label_strip(text: str, width: int, height: int = 12) -> np.ndarray:
    """A black strip with ``text`` in white (matplotlib's Agg canvas, no font files needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    fig.patch.set_facecolor("black")
    fig.text(0.01, 0.5, text, color="white", fontsize=7, va="center")
    fig.canvas.draw()
    strip = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return strip


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = SequenceDataset(args.data, args.split)
    data = dataset[args.sequence]
    rig = dataset_rig(dataset)
    available = (data.frames.shape[1] - 1) // NEW_FRAMES_PER_CHUNK
    chunks = min(args.chunks, available)
    pipelines = build_pipelines(
        args.model, args.variants, seed=args.seed, cache_model=args.cache_model
    )
    rows: dict[str, np.ndarray] = {}
    for name in tqdm(args.variants, desc="variants"):
        out = list(
            rollout(
                VARIANTS[name],
                data,
                chunks,
                pipelines.get(name),
                noise_seed=args.seed + args.sequence,
                rig=rig,
            )
        )
        rows[name] = np.concatenate(out, axis=1)  # (A, T, 2H, 2W, 3)
    used = 1 + chunks * NEW_FRAMES_PER_CHUNK
    rows["truth"] = data.frames[:, 1:used]
    names = list(rows)
    # (A, T, 2H, (V+1)·2W, 3): per agent, the variants then the truth, left to right.
    strip = np.concatenate([rows[n] for n in names], axis=3)
    width = strip.shape[3]
    labels = label_strip("   |   ".join(names), width)
    agents = [
        np.concatenate([np.broadcast_to(labels, (strip.shape[1], *labels.shape)), strip[a]], 1)
        for a in range(strip.shape[0])
    ]
    video = np.concatenate(agents, axis=1)  # agents stacked vertically
    args.out.parent.mkdir(parents=True, exist_ok=True)
    mp4 = args.out.with_suffix(".mp4")
    iio.imwrite(mp4, video, fps=10, codec="libx264", macro_block_size=1)
    columns = sample_columns(chunks, per_chunk=2)
    # Grid: one column per picked frame; rows agent by agent, the variants then the truth.
    cells = [
        np.concatenate([rows[n][a, columns] for n in names], axis=1) for a in range(len(strip))
    ]
    grid = np.concatenate(np.concatenate(cells, axis=1), axis=1)  # (rows·2H, cols·2W, 3)
    png = args.out.with_suffix(".png")
    iio.imwrite(png, grid)
    print(f"wrote {mp4} and {png}: frames {[c + 1 for c in columns]}; rows per agent: {names}")


if __name__ == "__main__":
    main()
