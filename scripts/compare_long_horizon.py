"""Compare the `model` rows of several long-horizon runs on the episodes and chunks they share.

    python scripts/compare_long_horizon.py RUN_A RUN_B [RUN_C ...] [--chunks 1 4 8 12]

Each RUN is an ``--out`` folder of ``scripts/evaluate_long_horizon.py`` (its ``values.npz``).
Runs of different lengths are compared on their common first episodes and chunks, with the
floors of the first run (the floors depend only on the truth, so they agree across runs of the
same episodes). Prints one markdown table per metric and each run's median step time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

METRICS = ("psnr", "ssim", "lpips", "detail", "colour_drift")
FLOORS = ("blurred_repeat", "repeat")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8, 10, 12, 16, 20])
    args = parser.parse_args()
    data = [np.load(run / "values.npz") for run in args.runs]
    episodes = min(d["live"].shape[0] for d in data)
    length = min(d["live"].shape[2] for d in data)
    chunks = [c for c in args.chunks if 1 <= c <= length]
    print(f"episodes 0–{episodes - 1}, chunks {chunks}\n")
    for metric in METRICS:
        key = f"values.model.{metric}"
        if not all(key in d for d in data):
            continue
        print(f"**{metric}**\n")
        print("| run | " + " | ".join(f"chunk {c}" for c in chunks) + " |")
        print("|---|" + "---:|" * len(chunks))
        rows = [(run.name, d, "model") for run, d in zip(args.runs, data, strict=True)]
        rows += [(f"`{floor}`", data[0], floor) for floor in FLOORS]
        for name, d, method in rows:
            values = d[f"values.{method}.{metric}"][:episodes, :, :length]
            live = d["live"][:episodes, :, :length]
            cells = [np.nanmean(np.where(live, values, np.nan)[:, :, c - 1]) for c in chunks]
            print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
        print()
    for run, d in zip(args.runs, data, strict=True):
        print(f"{run.name}: median model step {np.median(d['step_seconds.model']):.2f} s")


if __name__ == "__main__":
    main()
