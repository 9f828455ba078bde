"""``shareverse-train collect-rollouts``: record the env's own expert-driven episodes for training.

The default env is driven by its expert (town speed, default goals, every scenario and weather
in turn) beside the exact renderer stepped with the same actions. Every chunk in which every
car is still driving is recorded as the generative backend gave it to the model — the generated
conditioning frame, the memory it retrieved, the scene cache rendered into the planned cameras
— with the latents of the true frames as the target (:mod:`shareverse_env.models.training.
rollout_store`). ``shareverse-train --rollouts ROOT`` then trains on them.

    shareverse-train collect-rollouts --out data/rollouts_v4 --episodes 24 --chunks 12

Episode ``i`` uses town ``pool[i % len(pool)]`` of the training towns (``--town-seed`` /
``--towns``, default: the training split of ``shareverse-data generate --seed 0 --towns 48``),
scenario ``SCENARIOS[i % 6]`` and weather ``WEATHERS[i // 6 % 4]``; the same command resumes
after the last finished episode.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from shareverse_env.cli.data import town_pool
from shareverse_env.core.cache_guide import CacheGuide
from shareverse_env.envs.parallel import ShareVerseParallelEnv
from shareverse_env.models.cache_input import cache_states
from shareverse_env.models.training.batches import to_video_tensor
from shareverse_env.models.training.rollout_store import (
    RolloutChunk,
    new_manifest,
    read_manifest,
    write_episode,
    write_manifest,
)
from shareverse_env.models.vae import encode_video
from shareverse_env.policies import make_policy
from shareverse_env.world.scenarios import SCENARIOS
from shareverse_env.world.weather import WEATHERS


class _RequestRecorder:
    """Wraps a pipeline's ``generate_batch`` on the instance and keeps the last call's requests."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.original = pipe.generate_batch
        self.requests: list[Any] = []
        pipe.generate_batch = self._generate_batch

    def _generate_batch(self, requests: list[Any], *args: Any, **kwargs: Any) -> Any:
        self.requests = list(requests)
        return self.original(requests, *args, **kwargs)

    def close(self) -> None:
        self.pipe.generate_batch = self.original


def _frames(infos: dict[str, Any], agents: list[str]) -> np.ndarray:
    return np.stack([np.asarray(infos[a]["frames"]) for a in agents])


def _poses(infos: dict[str, Any], agents: list[str]) -> np.ndarray:
    return np.stack([np.asarray(infos[a]["poses"], dtype=np.float64) for a in agents])


@torch.no_grad()
def record_chunk(pipe: Any, request: Any, true_frames: np.ndarray, chunk: int) -> RolloutChunk:
    """One chunk of every car: the request the model got and the truth's latents.

    ``true_frames`` ``(A, 29, 2H, 2W, 3)``: the true frame the chunk starts at and its 28 new
    frames, at the request's poses.
    """
    video = to_video_tensor(true_frames, pipe.device, pipe.dtype)
    latents = encode_video(pipe.vae, video).float().cpu()
    scale = pipe.scaling_factor
    return RolloutChunk(
        conditioning=np.asarray(request.images, dtype=np.uint8),
        poses=np.asarray(request.poses, dtype=np.float64),
        latents=latents,
        memory_latents=(request.memory.latents.float() / scale).cpu(),
        memory_poses=np.asarray(request.memory.poses, dtype=np.float64),
        cache_states=cache_states(request.cache, pipe.encode_frames).float().cpu(),
        chunk=chunk,
    )


def collect_episode(
    env: ShareVerseParallelEnv,
    truth: ShareVerseParallelEnv,
    seed: int,
    options: dict[str, Any],
    chunks: int,
) -> tuple[list[RolloutChunk], dict[str, Any]]:
    """Drive one episode with the expert on ``env`` and ``truth``; the recorded chunks and a
    summary (chunks driven, chunks kept, seconds per generative step)."""
    obs, infos = env.reset(seed=seed, options=options)
    _, truth_infos = truth.reset(seed=seed, options=options)
    agents = list(env.possible_agents)
    policy = make_policy("expert", env)
    recorder = _RequestRecorder(env.backend.pipeline)
    last_true = _frames(truth_infos, agents)[:, -1]
    kept: list[RolloutChunk] = []
    step_seconds = []
    try:
        for k in range(chunks):
            if not env.agents:
                break
            actions = policy(obs)
            recorder.requests = []
            started = time.perf_counter()
            obs, _, _, _, infos = env.step(actions)
            step_seconds.append(time.perf_counter() - started)
            _, _, _, _, truth_infos = truth.step(actions)
            live = [a for a in agents if a in infos and "frames" in infos[a]]
            if len(live) == len(agents):
                if not np.allclose(_poses(infos, agents), _poses(truth_infos, agents)):
                    raise RuntimeError(f"the truth's poses left the model's at chunk {k}")
                new_true = _frames(truth_infos, agents)
                request = recorder.requests[0] if recorder.requests else None
                if (
                    request is not None
                    and len(request.images) == len(agents)
                    and request.memory is not None
                    and isinstance(request.cache, CacheGuide)
                ):
                    true29 = np.concatenate([last_true[:, None], new_true], axis=1)
                    kept.append(record_chunk(env.backend.pipeline, request, true29, k))
                last_true = new_true[:, -1]
            else:
                break  # a car is done: later chunks have fewer cars than the model's batch
    finally:
        recorder.close()
    summary = {
        "chunks_driven": len(step_seconds),
        "chunks_kept": len(kept),
        "median_step_s": float(np.median(step_seconds)) if step_seconds else float("nan"),
    }
    return kept, summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="shareverse-train collect-rollouts",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="rollout store folder")
    parser.add_argument("--episodes", type=int, required=True, help="total episodes in the store")
    parser.add_argument("--chunks", type=int, default=12, help="chunks per episode at most")
    parser.add_argument("--model", default=None, help="pipeline folder (default: shipped)")
    parser.add_argument("--seed", type=int, default=0, help="reset seed of episode 0")
    parser.add_argument("--town-seed", type=int, default=0, help="dataset seed of the towns")
    parser.add_argument("--towns", type=int, default=48, help="towns of that dataset")
    parser.add_argument(
        "--backend-options", default="{}", help="JSON backend_options of the generative env"
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.chunks < 1:
        parser.error("--episodes and --chunks must be ≥ 1")
    return args


def main(argv: list[str] | None = None) -> None:
    import json

    import shareverse_env

    args = parse_args(argv)
    backend_options = json.loads(args.backend_options)
    kwargs: dict[str, Any] = {"terminate_on_collision": False, "max_cycles": args.chunks}
    env_kwargs = dict(kwargs, backend_options=backend_options)
    if args.model is not None:
        env_kwargs["model"] = args.model
    env = shareverse_env.parallel_env(**env_kwargs)
    # The truth at the model's own view size (a model's frames fix it).
    view_hw = tuple(env.unwrapped.backend.view_hw)
    truth = shareverse_env.parallel_env(backend="world", view_hw=view_hw, **kwargs)
    pipe = env.unwrapped.backend.pipeline
    pool = town_pool(args.town_seed, args.towns, 0.1)["train"]
    settings = {
        "chunks": args.chunks,
        "seed": args.seed,
        "town_seed": args.town_seed,
        "towns": args.towns,
        "backend_options": backend_options,
    }
    manifest = read_manifest(args.out) or new_manifest(pipe, args.model or "shipped", settings)
    if manifest["settings"] != settings:
        raise SystemExit(
            f"{args.out} was collected with {manifest['settings']}; this call asks {settings}"
        )
    done = len(manifest["episodes"])
    bar = tqdm(total=args.episodes, initial=done, desc="rollout episodes", disable=args.no_progress)
    weathers = sorted(WEATHERS)
    for i in range(done, args.episodes):
        options = {
            "scenario": SCENARIOS[i % len(SCENARIOS)],
            "weather": weathers[i // len(SCENARIOS) % len(weathers)],
        }
        kept: list[RolloutChunk] = []
        summary: dict[str, Any] = {}
        for attempt in range(len(pool)):  # the first town that hosts the scenario
            options["town_seed"] = pool[(i + attempt) % len(pool)]
            try:
                kept, summary = collect_episode(
                    env.unwrapped, truth.unwrapped, args.seed + i, options, args.chunks
                )
                break
            except ValueError as err:
                if "scenario" not in str(err):
                    raise
        entry = {"index": i, "options": dict(options), "seed": args.seed + i, **summary}
        if kept:
            entry["file"] = write_episode(args.out, i, kept).name
            entry["chunks"] = len(kept)
        else:
            entry["file"], entry["chunks"] = None, 0
        manifest["episodes"].append(entry)
        write_manifest(args.out, manifest)
        bar.update()
        bar.set_postfix(kept=sum(e["chunks"] for e in manifest["episodes"]))
    bar.close()
    env.close()
    truth.close()
