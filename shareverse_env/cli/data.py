"""``shareverse-data``: generate, inspect and check datasets.

Usage::

    shareverse-data generate --out DIR --sequences 200 --val-fraction 0.1 --workers 4 --seed 0
    shareverse-data info DIR
    shareverse-data check DIR

``generate`` is deterministic in its settings (not in ``--workers``) and resumable: rerunning
it skips complete sequences and rebuilds the rest. See ``docs/dataset.md``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from shareverse_env.data.format import (
    DATASET_JSON,
    SPLITS,
    dataset_info,
    is_complete,
    read_dataset_info,
    remove_stale_tmp,
    sequence_dir,
    write_dataset_info,
    write_sequence,
)
from shareverse_env.data.reader import list_sequences, verify_sequence
from shareverse_env.world.scenarios import SCENARIOS
from shareverse_env.world.weather import WEATHERS

# --------------------------------------------------------------------------------------------
# The plan: which sequence gets which town, scenario, weather and seed
# --------------------------------------------------------------------------------------------


def town_pool(seed: int, towns: int, val_fraction: float) -> dict[str, list[int]]:
    """Disjoint town seeds per split: ``towns`` seeds from ``seed``, the last
    ``ceil(towns * val_fraction)`` for validation (at least one town is kept for training)."""
    if towns < 1:
        raise ValueError(f"--towns must be ≥ 1; got {towns}")
    pool = np.random.default_rng([seed, 0x70]).choice(1_000_000, size=towns, replace=False)
    pool = [int(v) for v in pool]
    n_val = math.ceil(towns * val_fraction) if val_fraction > 0 else 0
    if n_val >= towns:
        if towns < 2:
            raise ValueError("a validation split needs --towns ≥ 2 (towns are never shared)")
        n_val = towns - 1
    return {"train": pool[: towns - n_val], "val": pool[towns - n_val :]}


def split_sizes(sequences: int, val_fraction: float) -> dict[str, int]:
    """Sequences per split: ``round(sequences * val_fraction)`` for validation (≥ 1 if > 0)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--val-fraction must lie in [0, 1); got {val_fraction}")
    n_val = round(sequences * val_fraction)
    if val_fraction > 0 and sequences > 1:
        n_val = max(n_val, 1)
    return {"train": sequences - n_val, "val": n_val}


def combination(seed: int, split: str, index: int) -> tuple[str, str]:
    """Scenario and weather of sequence ``index``: every block of 6 × 5 indices holds every
    (scenario, weather) pair once, in an order shuffled by ``seed``, ``split`` and the block."""
    weathers = sorted(WEATHERS)
    pairs = list(itertools.product(SCENARIOS, weathers))
    block, offset = divmod(index, len(pairs))
    order = np.random.default_rng([seed, SPLITS.index(split), block]).permutation(len(pairs))
    return pairs[int(order[offset])]


def sequence_seed(seed: int, split: str, index: int) -> int:
    """Seed of one sequence, from the dataset seed, the split and the index."""
    return int(np.random.default_rng([seed, 0x5E, SPLITS.index(split), index]).integers(2**31 - 1))


def make_jobs(root: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Every sequence of the dataset as a job description (independent of the worker count)."""
    towns = town_pool(settings["seed"], settings["towns"], settings["val_fraction"])
    sizes = split_sizes(settings["sequences"], settings["val_fraction"])
    jobs = []
    for split in SPLITS:
        pool = towns[split]
        for index in range(sizes[split]):
            scenario, weather = combination(settings["seed"], split, index)
            # Rotate the pool so that sequence i tries town i first, then the next ones.
            start = index % len(pool)
            jobs.append(
                {
                    "root": str(root),
                    "split": split,
                    "index": index,
                    "seed": sequence_seed(settings["seed"], split, index),
                    "towns": pool[start:] + pool[:start],
                    "scenario": scenario,
                    "weather": weather,
                    "num_agents": settings["num_agents"],
                    "num_frames": settings["frames"],
                    "view_hw": tuple(settings["view_hw"]),
                    "town_blocks": tuple(settings["town_blocks"]),
                }
            )
    return jobs


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Synthesise and write one sequence, trying the split's towns in turn until one hosts it."""
    from shareverse_env.data.synthesis import synthesize_sequence

    errors = []
    for town_seed in job["towns"]:
        try:
            data = synthesize_sequence(
                job["seed"],
                town_seed,
                job["scenario"],
                job["weather"],
                job["num_agents"],
                job["num_frames"],
                job["view_hw"],
                town_blocks=job["town_blocks"],
            )
        except ValueError as err:
            errors.append(f"town {town_seed}: {err}")
            continue
        data.meta["split"], data.meta["index"] = job["split"], job["index"]
        folder = write_sequence(job["root"], job["split"], job["index"], data)
        size = sum(p.stat().st_size for p in folder.iterdir())
        return {"ok": True, "bytes": size, "frames": data.num_agents * data.num_frames}
    return {"ok": False, "error": "; ".join(errors[:3])}


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "seed": int(args.seed),
        "sequences": int(args.sequences),
        "val_fraction": float(args.val_fraction),
        "towns": int(args.towns),
        "num_agents": int(args.num_agents),
        "frames": int(args.frames),
        "view_hw": [int(v) for v in args.view_hw],
        "town_blocks": [int(v) for v in args.town_blocks],
    }


def _check_existing(root: Path, settings: dict[str, Any]) -> None:
    if not (root / DATASET_JSON).is_file():
        return
    old = read_dataset_info(root).get("generator", {})
    diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
    if diff:
        lines = ", ".join(f"{k}: existing {a!r} vs requested {b!r}" for k, (a, b) in diff.items())
        raise ValueError(
            f"{root / DATASET_JSON} was generated with different settings ({lines}); "
            "use another --out folder or the same settings to resume"
        )


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _run_jobs(jobs: list[dict[str, Any]], workers: int, progress: bool) -> list[dict[str, Any]]:
    from tqdm import tqdm

    results = []
    bar = tqdm(total=len(jobs), unit="seq", disable=not progress, file=sys.stderr)
    if workers <= 1:
        for job in jobs:
            results.append({**run_job(job), "job": job})
            bar.update()
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            futures = {pool.submit(run_job, job): job for job in jobs}
            for fut in as_completed(futures):
                results.append({**fut.result(), "job": futures[fut]})
                bar.update()
    bar.close()
    return results


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate (or resume) a dataset; returns the exit code."""
    root = Path(args.out)
    settings = _settings(args)
    if settings["sequences"] < 1:
        raise ValueError("--sequences must be ≥ 1")
    _check_existing(root, settings)
    towns = town_pool(settings["seed"], settings["towns"], settings["val_fraction"])
    sizes = split_sizes(settings["sequences"], settings["val_fraction"])
    if sizes["val"] and not towns["val"]:
        raise ValueError("a validation split needs --val-fraction > 0 and --towns ≥ 2")
    splits = {s: {"town_seeds": towns[s], "sequences": sizes[s]} for s in SPLITS}
    info = dataset_info(
        num_agents=settings["num_agents"],
        num_frames=settings["frames"],
        view_hw=tuple(settings["view_hw"]),
        splits=splits,
        generator=settings,
    )
    write_dataset_info(root, info)
    stale = remove_stale_tmp(root)
    jobs = make_jobs(root, settings)
    todo = [j for j in jobs if not is_complete(sequence_dir(root, j["split"], j["index"]))]
    t0 = time.perf_counter()
    results = _run_jobs(todo, args.workers, progress=not args.quiet)
    wall = time.perf_counter() - t0
    failed = [r for r in results if not r["ok"]]
    written = len(results) - len(failed)
    frames = sum(r.get("frames", 0) for r in results)
    rate = written / wall * 60 if wall > 0 else 0.0
    print(
        f"wrote {written} sequences ({frames} agent-frames), skipped {len(jobs) - len(todo)} "
        f"complete, removed {len(stale)} stale .tmp, failed {len(failed)}; "
        f"{_disk_bytes(root) / 1e6:.1f} MB on disk in {root}; "
        f"wall {wall:.1f} s ({rate:.1f} sequences/min, {args.workers} worker(s))"
    )
    for r in failed:
        job = r["job"]
        print(f"FAILED {job['split']}/{job['index']:06d}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


# --------------------------------------------------------------------------------------------
# info and check
# --------------------------------------------------------------------------------------------


def _split_names(root: Path, info: dict[str, Any]) -> list[str]:
    names = list(info.get("splits", {}))
    extra = [p.name for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    return names + [n for n in extra if n not in names]


def cmd_info(args: argparse.Namespace) -> int:
    """Print the dataset summary and the complete sequences per split."""
    root = Path(args.dir)
    info = read_dataset_info(root)
    h, w = info["view_hw"]
    print(f"{root}: {info['format']} v{info['version']}")
    print(
        f"  {info['num_agents']} agents × {info['num_frames']} frames at {info['fps']} fps; "
        f"views {h}×{w}, tiled {2 * h}×{2 * w} ({', '.join(info['views'])})"
    )
    print(f"  generator: {info.get('generator', {})}")
    for split in _split_names(root, info):
        want = info.get("splits", {}).get(split, {})
        done = len(list_sequences(root, split))
        present = len(list_sequences(root, split, complete=False))
        towns = want.get("town_seeds", [])
        print(
            f"  {split}: {done} complete of {want.get('sequences', '?')} planned"
            f" ({present - done} incomplete), {len(towns)} towns {towns}"
        )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Read back every sequence; exit code 1 listing the bad or missing ones."""
    root = Path(args.dir)
    info = read_dataset_info(root)
    bad: list[str] = []
    checked = 0
    for split in _split_names(root, info):
        present = list_sequences(root, split, complete=False)
        for sid in present:
            checked += 1
            problem = verify_sequence(root, split, sid)
            if problem is not None:
                bad.append(f"{split}/{sid}: {problem}")
        planned = int(info.get("splits", {}).get(split, {}).get("sequences", 0))
        missing = sorted({f"{i:06d}" for i in range(planned)} - set(present))
        bad.extend(f"{split}/{sid}: missing" for sid in missing)
    if bad:
        print(f"{len(bad)} bad sequence(s) of {checked} checked in {root}:")
        for line in bad:
            print(f"  {line}")
        return 1
    print(f"all {checked} sequences in {root} read back with the expected shapes")
    return 0


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``shareverse-data``."""
    parser = argparse.ArgumentParser(
        prog="shareverse-data", description="Generate, inspect and check ShareVerse datasets."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="synthesise a dataset (resumable)")
    gen.add_argument("--out", required=True, help="dataset folder")
    gen.add_argument("--sequences", type=int, required=True, help="sequences in all splits")
    gen.add_argument("--val-fraction", type=float, default=0.1, help="share of validation")
    gen.add_argument("--workers", type=int, default=1, help="processes (1: inline)")
    gen.add_argument("--seed", type=int, default=0, help="dataset seed")
    gen.add_argument("--num-agents", type=int, default=2)
    gen.add_argument("--frames", type=int, default=89, help="frames per sequence (10 fps)")
    gen.add_argument("--view-hw", type=int, nargs=2, default=[64, 96], metavar=("H", "W"))
    gen.add_argument("--town-blocks", type=int, nargs=2, default=[4, 4], metavar=("BX", "BY"))
    gen.add_argument("--towns", type=int, default=20, help="town seeds in the pool")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=cmd_generate)
    info = sub.add_parser("info", help="print the dataset summary")
    info.add_argument("dir")
    info.set_defaults(func=cmd_info)
    check = sub.add_parser("check", help="verify every sequence reads back")
    check.add_argument("dir")
    check.set_defaults(func=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (also used as the process's)."""
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        code = 2
    return code


if __name__ == "__main__":
    sys.exit(main())
