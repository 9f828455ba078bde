"""Paired comparison of two variants from two evaluation runs on the same episodes.

``evaluate_quality.py`` compares the variants of one run. A model trained later is best
compared with the numbers already measured for an earlier one, on the same data, split, seed
and chunks (the runner is deterministic), without running the earlier model again:

    python scripts/compare_results.py outputs/quality_v2/results.json:cache_conditioned \
        outputs/quality_cc2/results.json:trained_cache --metrics psnr ssim psnr_holes detail

Prints one row per metric: both means, the paired difference ± its standard error, the chunks
won and the verdict of ``shareverse_env.evaluation.report.compare``.
"""

from __future__ import annotations

import argparse
from dataclasses import fields, replace

from shareverse_env.evaluation.quality import ChunkScore, QualityResult
from shareverse_env.evaluation.report import compare

SAME_EPISODES = ("data", "split", "sequences", "seed", "chunk_frames", "num_inference_steps")
"""Settings two runs must share for their rows to pair up."""

NOT_METRICS = ("sequence", "scenario", "weather", "agent", "chunk", "variant", "frames")
"""Fields of a row that name it rather than score it."""


def _load(spec: str, label: str) -> tuple[QualityResult, dict]:
    path, sep, variant = spec.rpartition(":")
    if not sep or not path or not variant:
        raise SystemExit(f"{spec!r}: expected RESULTS.json:VARIANT")
    result = QualityResult.from_json(path)
    rows = [replace(r, variant=label) for r in result.rows if r.variant == variant]
    if not rows:
        raise SystemExit(f"{path} has no rows of variant {variant!r} (it has {result.variants})")
    return QualityResult(rows=rows, config=result.config), result.config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", help="RESULTS.json:VARIANT")
    parser.add_argument("second", help="RESULTS.json:VARIANT")
    parser.add_argument("--metrics", nargs="+", default=["psnr", "ssim", "psnr_holes", "detail"])
    args = parser.parse_args(argv)
    first, first_config = _load(args.first, "first")
    second, second_config = _load(args.second, "second")
    differ = [k for k in SAME_EPISODES if first_config.get(k) != second_config.get(k)]
    if differ:
        details = ", ".join(f"{k}: {first_config.get(k)} vs {second_config.get(k)}" for k in differ)
        raise SystemExit(f"the two runs did not score the same episodes ({details})")
    merged = QualityResult(rows=first.rows + second.rows, config=first_config)
    known = [f.name for f in fields(ChunkScore)]
    unknown = [m for m in args.metrics if m not in known or m in NOT_METRICS]
    if unknown:
        scores = [k for k in known if k not in NOT_METRICS]
        raise SystemExit(f"unknown metric(s) {unknown}; a row's scores are {scores}")
    print(f"first = {args.first}\nsecond = {args.second}\n")
    print("| metric | first | second | first − second | chunks won | verdict |")
    print("|---|---:|---:|---|---:|---|")
    for metric in args.metrics:
        c = compare(merged, "first", "second", metric)
        print(
            f"| {metric} | {c['mean_first']:.4f} | {c['mean_second']:.4f} | "
            f"{c['diff']:+.4f} ± {c['se']:.4f} | {c['wins']}/{c['n']} | {c['verdict']} |"
        )


if __name__ == "__main__":
    main()
