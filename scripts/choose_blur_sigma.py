#!/usr/bin/env python
"""Choose the σ of the ``repeat_blur`` floor on a training split (see docs/quality.md).

For each candidate σ, blurs every sequence's first frame per camera view, repeats it over the new
frames of every whole chunk and prints the mean PSNR against the truth; the best σ is the one
recorded as ``shareverse_env.evaluation.floors.BLUR_SIGMA``::

    python scripts/choose_blur_sigma.py --data data/eval --split train
"""

from __future__ import annotations

import argparse

from shareverse_env.data import SequenceDataset
from shareverse_env.evaluation.floors import BLUR_SIGMA, BLUR_SIGMA_CANDIDATES, choose_blur_sigma


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/eval", help="dataset folder")
    parser.add_argument("--split", default="train", help="a split of training towns")
    parser.add_argument(
        "--sigmas", type=float, nargs="+", default=[0.0, *BLUR_SIGMA_CANDIDATES], help="candidates"
    )
    args = parser.parse_args(argv)
    dataset = SequenceDataset(args.data, args.split)
    if len(dataset) == 0:
        parser.error(f"{args.data}: split {args.split!r} has no complete sequences")
    best, means = choose_blur_sigma((dataset[i].frames for i in range(len(dataset))), args.sigmas)
    print(f"{len(dataset)} sequences of {args.data} split {args.split}, all whole chunks")
    print("| σ (px) | PSNR (dB) |\n|---:|---:|")
    for sigma, value in means.items():
        print(f"| {sigma:g}{' (best)' if sigma == best else ''} | {value:.3f} |")
    print(f"\nbest σ = {best:g}; recorded BLUR_SIGMA = {BLUR_SIGMA:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
