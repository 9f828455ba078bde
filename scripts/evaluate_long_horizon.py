#!/usr/bin/env python
"""The long-horizon protocol: the default env driven by its expert for 20 chunks, against the
exact renderer driven with the same actions (see docs/long_horizon.md).

One episode per scenario by default (6), weathers cycled, in held-out towns, goals far enough
that the cars drive every chunk; every chunk's new frames are scored per car for the model and
the floors (the first true frame repeated, blurred, and the previous chunk's last true frame as
an oracle reference). Writes into ``--out``:

- ``results.csv``: ``chunk, method, metric, mean, n``;
- ``summary.md``: the command, the step times, the headline and the per-chunk tables;
- ``curves.png``: one panel per metric, one line per method over the chunks;
- ``filmstrip.png``: one car of the first episode, generated over true frames;
- ``values.npz`` and ``run.json``: every car-chunk value, to re-aggregate (``--report-only``
  rebuilds the tables and figures from them).

LPIPS is scored by default and needs ``shareverse_env.evaluation.lpips`` and its weights;
``--no-lpips`` skips it.

Example::

    python scripts/evaluate_long_horizon.py --out outputs/long_horizon --no-lpips
    python scripts/evaluate_long_horizon.py --episodes 1 --chunks 3 --no-lpips \\
        --backend-options '{"scene_cache": false}' --out outputs/long_horizon_nocache
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

import shareverse_env
from shareverse_env.evaluation.long_horizon import (
    DEFAULT_CHUNKS,
    DEFAULT_EPISODES,
    DEFAULT_GOAL_DISTANCE,
    DEFAULT_TOWN_SEED,
    LongHorizonConfig,
    LongHorizonResult,
    LPIPSFunction,
    load_lpips,
    run_long_horizon,
)
from shareverse_env.evaluation.long_horizon_report import headline_table, write_outputs
from shareverse_env.policies import make_policy


def _goal_distance(values: list[str]) -> tuple[float, float] | None:
    if values == ["env"]:
        return None
    if len(values) != 2:
        raise argparse.ArgumentTypeError("--goal-distance takes LO HI (metres) or 'env'")
    return float(values[0]), float(values[1])


def _lpips_or_exit() -> LPIPSFunction:
    """LPIPS, loaded and tried once before any env is built, or a one-line exit."""
    try:
        from shareverse_env.evaluation.lpips import LPIPSUnavailableError
    except ImportError as err:
        raise SystemExit(f"error: LPIPS is unavailable ({err}); pass --no-lpips") from err
    try:
        return load_lpips()
    except LPIPSUnavailableError as err:
        raise SystemExit(f"error: {err}; or pass --no-lpips to skip LPIPS") from err


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--episodes", type=int, default=DEFAULT_EPISODES)
    parser.add_argument("--chunks", type=int, default=DEFAULT_CHUNKS, help="chunks per episode")
    parser.add_argument("--seed", type=int, default=0, help="reset seed of the first episode")
    parser.add_argument(
        "--town-seed",
        type=int,
        default=DEFAULT_TOWN_SEED,
        help="town of the first episode (episode i: town-seed + i); training towns lie below 1e6",
    )
    parser.add_argument(
        "--goal-distance",
        nargs="+",
        default=[str(v) for v in DEFAULT_GOAL_DISTANCE],
        metavar="LO HI",
        help="metres from start to goal (default %(default)s); 'env' keeps the env's default "
        "(140-220 m: the cars reach their goals and drop out around chunk 10)",
    )
    parser.add_argument("--agents", type=int, default=2, help="cars per episode")
    parser.add_argument(
        "--backend-options",
        type=json.loads,
        default=None,
        metavar="JSON",
        help="backend_options of the env under test, e.g. '{\"scene_cache\": false}'",
    )
    parser.add_argument(
        "--weights", default=None, help="a pipeline folder to run instead of the shipped model"
    )
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    parser.add_argument(
        "--lpips-every",
        type=int,
        default=4,
        help="LPIPS scores every k-th frame of a chunk, ending on the last (default %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild the CSV, summary.md and the figures from --out's values.npz and run.json",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if args.report_only:
        result = LongHorizonResult.load(out)
        write_outputs(result, out)
        print(headline_table(result))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    model_env: dict = {}
    if args.backend_options is not None:
        model_env["backend_options"] = args.backend_options
    if args.weights is not None:
        model_env["model"] = args.weights
    config = LongHorizonConfig(
        episodes=args.episodes,
        chunks=args.chunks,
        seed=args.seed,
        town_seed=args.town_seed,
        goal_distance=_goal_distance(args.goal_distance),
        num_agents=args.agents,
        lpips=not args.no_lpips,
        lpips_every=args.lpips_every,
        model_env=model_env,
    )
    lpips_fn = None if args.no_lpips else _lpips_or_exit()
    result = run_long_horizon(
        config,
        shareverse_env.parallel_env,
        lambda env: make_policy("expert", env),
        progress=not args.no_progress,
        lpips_fn=lpips_fn,
    )
    argv_used = sys.argv[1:] if argv is None else argv
    command = "python " + shlex.join(["scripts/evaluate_long_horizon.py", *argv_used])
    written = write_outputs(result, out, command)
    print(headline_table(result))
    steps = result.median_step_seconds()
    print(
        f"\nmedian step: model {steps['model']:.2f} s, world {steps['world']:.2f} s; "
        f"{result.seconds:.0f} s in all; wrote {', '.join(p.name for p in written)} into {out}/"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
