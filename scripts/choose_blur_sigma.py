#!/usr/bin/env python
"""Choose the σ of the ``repeat_blur`` floor on a training split (see docs/quality.md).

For each candidate σ, blurs every sequence's first frame per camera view, repeats it over the
new frames of every whole chunk and prints the mean chunk PSNR against the truth, for the first
chunk and for the later ones; the best pair is the one recorded as
``shareverse_env.evaluation.floors.BLUR_SIGMAS``::

    python scripts/choose_blur_sigma.py --data data/eval_long --split train
"""

from __future__ import annotations

import argparse

from shareverse_env.data import SequenceDataset
from shareverse_env.evaluation.floors import (
    BLUR_SIGMA_CANDIDATES,
    BLUR_SIGMAS,
    choose_blur_sigmas,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/eval_long", help="dataset folder")
    parser.add_argument("--split", default="train", help="a split of training towns")
    parser.add_argument(
        "--sigmas", type=float, nargs="+", default=[0.0, *BLUR_SIGMA_CANDIDATES], help="candidates"
    )
    args = parser.parse_args(argv)
    dataset = SequenceDataset(args.data, args.split)
    if len(dataset) == 0:
        parser.error(f"{args.data}: split {args.split!r} has no complete sequences")
    frames = (dataset[i].frames for i in range(len(dataset)))
    (first, later), means = choose_blur_sigmas(frames, args.sigmas)
    print(f"{len(dataset)} sequences of {args.data} split {args.split}; chunk PSNR (dB)")
    print("| σ (px) | first chunk | later chunks |\n|---:|---:|---:|")
    for sigma, (a, b) in means.items():
        marks = "".join(
            m
            for m, hit in ((" (best first)", sigma == first), (" (best later)", sigma == later))
            if hit
        )
        print(f"| {sigma:g}{marks} | {a:.3f} | {b:.3f} |")
    print(f"\nbest σ = ({first:g}, {later:g}); recorded BLUR_SIGMAS = {BLUR_SIGMAS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
