"""Probes of what makes the model drift over long episodes, against the exact renderer.

Each probe rolls the trained model out over every sequence of a split, as the quality
evaluation's model variants do, but changes the conditioning frame of every chunk:

- ``own`` (the env's loop): its own last frame, optionally with pixel noise of standard
  deviation ``--noise`` (in [-1, 1] units, as the training's conditioning noise);
- ``true``: the true frame at the chunk's start (teacher forcing), optionally blurred with a
  Gaussian of ``--blur`` pixels, to ask whether the generated frames' blur alone explains the
  drift.

Prints PSNR per chunk (dB, per frame capped at 60, as the quality runner) as a Markdown table::

    python scripts/drift_probes.py --data data/eval_long --probes own own:noise=0.05 \\
        own:noise=0.15 true true:blur=2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from shareverse_env.models.loading import load_model
from tqdm import tqdm

from shareverse_env.backends.generative import ShareVerseBackend
from shareverse_env.core.geometry import CHUNK_FRAMES, NEW_FRAMES_PER_CHUNK
from shareverse_env.data import SequenceDataset
from shareverse_env.evaluation.floors import gaussian_blur
from shareverse_env.evaluation.metrics import psnr
from shareverse_env.evaluation.quality import PSNR_CAP_DB


def add_pixel_noise(frames: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 frames plus Gaussian noise of ``sigma`` in [-1, 1] units (127.5 grey levels)."""
    if sigma <= 0:
        return frames
    noisy = frames + rng.normal(0.0, sigma * 127.5, frames.shape)
    return np.clip(noisy, 0, 255).round().astype(np.uint8)


def parse_probe(text: str) -> tuple[str, float, float]:
    """``own``, ``own:noise=S``, ``true`` or ``true:blur=S`` → (source, noise, blur)."""
    source, _, option = text.partition(":")
    if source not in ("own", "true"):
        raise argparse.ArgumentTypeError(f"probe {text!r}: the source must be 'own' or 'true'")
    noise = blur = 0.0
    if option:
        key, _, value = option.partition("=")
        if (source, key) not in (("own", "noise"), ("true", "blur")):
            raise argparse.ArgumentTypeError(
                f"probe {text!r}: 'own' takes noise=S, 'true' takes blur=S"
            )
        noise, blur = (float(value), 0.0) if key == "noise" else (0.0, float(value))
    return source, noise, blur


def run_probe(
    pipe,
    data: SequenceDataset,
    chunks: int,
    source: str,
    noise: float,
    blur: float,
    seed: int = 0,
) -> np.ndarray:
    """PSNR ``(sequences, agents, chunks)`` of one probe; sequence ``i`` samples with noise seed
    ``seed + i``, as in the quality runner, so ``own`` reproduces its ``trained`` variant."""
    new = NEW_FRAMES_PER_CHUNK
    scores = []
    for index in tqdm(range(len(data)), desc=f"{source} noise={noise} blur={blur}", leave=False):
        seq = data[index]
        backend = ShareVerseBackend(model=pipe, seed=seed + index)
        weather = seq.meta.get("weather", "clear_noon")
        options = {"images": seq.frames[:, 0], "noise_seed": seed + index}
        backend.reset(None, weather, seq.poses[:, 0], options)
        rng = np.random.default_rng(index)
        active = np.ones(seq.num_agents, dtype=bool)
        per_chunk = []
        for k in range(chunks):
            if source == "true":
                backend.condition_on(gaussian_blur(seq.frames[:, new * k], blur))
            elif noise > 0:
                backend.condition_on(add_pixel_noise(backend.conditioning_frames, noise, rng))
            out = backend.generate(seq.poses[:, new * k : new * k + CHUNK_FRAMES], active)
            truth = seq.frames[:, new * k + 1 : new * k + CHUNK_FRAMES]
            per_chunk.append(psnr(out, truth, max_db=PSNR_CAP_DB).mean(axis=1))  # (agents,)
        scores.append(np.stack(per_chunk, axis=-1))
    return np.stack(scores)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/eval_long")
    parser.add_argument("--split", default="val")
    parser.add_argument("--model", default=None, help="pipeline folder (default: shipped)")
    parser.add_argument("--probes", nargs="+", type=parse_probe, default=[parse_probe("own")])
    parser.add_argument("--sequences", type=int, default=None, help="first N sequences (all)")
    parser.add_argument("--chunks", type=int, default=None, help="chunks per sequence (all)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed of sequence 0")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = SequenceDataset(args.data, args.split, frames_only=True)
    if args.sequences is not None:
        data.ids = data.ids[: args.sequences]
    chunks = args.chunks or (data.info["num_frames"] - 1) // NEW_FRAMES_PER_CHUNK
    pipe = load_model(args.model)
    rows = []
    for source, noise, blur in args.probes:
        start = time.perf_counter()
        scores = run_probe(pipe, data, chunks, source, noise, blur, args.seed)
        label = (
            f"{source}" + (f", noise {noise}" if noise else "") + (f", blur {blur}" if blur else "")
        )
        rows.append((label, scores))
        print(f"{label}: {scores.mean():.2f} dB ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"\n{args.data} ({args.split}): {len(data)} sequences, {chunks} chunks, PSNR in dB\n")
    print("| conditioning frame | all | " + " | ".join(f"chunk {k}" for k in range(chunks)) + " |")
    print("|---|---:|" + "---:|" * chunks)
    for label, scores in rows:
        cells = " | ".join(f"{v:.2f}" for v in scores.mean(axis=(0, 1)))
        print(f"| {label} | {scores.mean():.2f} | {cells} |")


if __name__ == "__main__":
    main()
