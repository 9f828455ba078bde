"""One figure with the loss curves of every stage of a run folder (from ``RUN/log_<stage>.csv``).

python scripts/plot_training.py runs/gpu1 docs/figures/training_small.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

STAGES = ("vae", "decoder", "stage1", "stage2")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    logs = [(s, args.run / f"log_{s}.csv") for s in STAGES if (args.run / f"log_{s}.csv").is_file()]
    if not logs:
        raise SystemExit(f"no log_<stage>.csv in {args.run}")
    fig, axes = plt.subplots(1, len(logs), figsize=(4 * len(logs), 3), dpi=110)
    for ax, (stage, path) in zip(np.atleast_1d(axes), logs, strict=True):
        with path.open() as f:
            rows = list(csv.DictReader(f))
        steps = np.array([int(r["step"]) for r in rows])
        loss = np.array([float(r["loss"]) for r in rows])
        ax.plot(steps, loss, lw=0.5, alpha=0.35)
        window = max(1, len(loss) // 25)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, lw=1.6, label=f"mean of {window}")
        ax.set_yscale("log")
        ax.set_title(f"{stage} ({len(rows)} steps)")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    np.atleast_1d(axes)[0].set_ylabel("loss")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
