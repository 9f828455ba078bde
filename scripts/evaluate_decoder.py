#!/usr/bin/env python
"""The VAE's reconstruction of true clips, for one or more decoders: the latent space's ceiling.

Every frame the generative env shows that the scene cache does not cover is decoded by the VAE,
so the decoder bounds what any transformer can show there: a decoder that blurs the truth's own
latents blurs everything the model invents. This script encodes true clips of a dataset split
(the posterior mean, as inference does), decodes them with each decoder and scores the frames
against the truth: PSNR, SSIM, LPIPS (AlexNet, the evaluation's; and VGG16, the backbone the
perceptual decoder term trains with) and detail (the luma-gradient energy against the truth's).

Each ``--decoder`` is a pipeline folder, or ``FOLDER+CHECKPOINT``: a decoder-stage checkpoint
(``RUN/checkpoints/decoder``) whose EMA weights are loaded over the folder's VAE.

    python scripts/evaluate_decoder.py --data data/eval --decoder models/weights/small \\
        --decoder models/weights/small+runs/dec/checkpoints/decoder

Prints one table (the mean over clips, and each decoder's paired difference from the first).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import imageio.v3 as imageio
import numpy as np
import torch
from safetensors.torch import load_file
from shareverse_env.models.loading import load_pipeline
from shareverse_env.models.vae import decode_chunk, encode_video
from tqdm import tqdm

from shareverse_env.data.reader import SequenceDataset
from shareverse_env.evaluation.lpips import lpips_tiled
from shareverse_env.evaluation.metrics import detail_ratio_tiled, psnr, ssim_tiled

METRICS = ("psnr", "ssim", "lpips_alex", "lpips_vgg", "detail")


def load_vae(spec: str) -> torch.nn.Module:
    """The VAE of ``FOLDER`` or ``FOLDER+CHECKPOINT`` (EMA weights over the folder's)."""
    folder, _, checkpoint = spec.partition("+")
    vae = load_pipeline(folder, dtype=torch.float32).vae
    if checkpoint:
        ema = load_file(str(Path(checkpoint) / "ema.safetensors"))
        missing = set(ema) - set(vae.state_dict())
        if missing:
            raise ValueError(f"{checkpoint}: EMA keys not in the VAE: {sorted(missing)[:3]}")
        vae.load_state_dict(ema, strict=False)
    return vae.eval()


def clips(data: str, split: str, count: int, frames: int, seed: int) -> list[np.ndarray]:
    """``count`` uint8 clips ``(frames, 2H, 2W, 3)`` of single agents, drawn reproducibly."""
    dataset = SequenceDataset(data, split)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        seq = dataset[i % len(dataset)]
        agent = int(rng.integers(seq.frames.shape[0]))
        start = int(rng.integers(seq.frames.shape[1] - frames + 1))
        out.append(np.asarray(seq.frames[agent, start : start + frames]))
    return out


def reconstruct(vae: torch.nn.Module, clip: np.ndarray) -> np.ndarray:
    """Encode (posterior mean) and decode one uint8 clip."""
    video = torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
    with torch.no_grad():
        recon = decode_chunk(vae, encode_video(vae, video))
    frames = ((recon[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round()
    return frames.to(torch.uint8).numpy()


def scores(recon: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """The clip's mean of every metric."""
    return {
        "psnr": float(np.mean(psnr(recon, truth))),
        "ssim": float(np.mean(ssim_tiled(recon, truth))),
        "lpips_alex": float(np.mean(lpips_tiled(recon, truth, "alex"))),
        "lpips_vgg": float(np.mean(lpips_tiled(recon, truth, "vgg"))),
        "detail": float(np.mean(detail_ratio_tiled(recon, truth))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--decoder", action="append", required=True, help="FOLDER[+CHECKPOINT]")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--frames", type=int, default=9, help="1 + 4k frames a clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--figure", default=None, help="PNG: the first clip's last frame, truth then decoders"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    truth = clips(args.data, args.split, args.clips, args.frames, args.seed)
    table, shown = {}, [truth[0][-1]]
    for spec in args.decoder:
        vae = load_vae(spec)
        rows = []
        for i, clip in enumerate(tqdm(truth, desc=spec, leave=False)):
            recon = reconstruct(vae, clip)
            rows.append(scores(recon, clip))
            if i == 0:
                shown.append(recon[-1])
        table[spec] = {m: np.array([r[m] for r in rows]) for m in METRICS}
    if args.figure:
        gap = np.full((shown[0].shape[0], 4, 3), 255, np.uint8)
        row = [part for frame in shown for part in (frame, gap)][:-1]
        imageio.imwrite(args.figure, np.concatenate(row, axis=1))
    print(
        f"{args.clips} clips of {args.frames} frames, {args.data} ({args.split}), seed {args.seed}"
    )
    print("| decoder | " + " | ".join(METRICS) + " |")
    print("|---|" + "---:|" * len(METRICS))
    first = table[args.decoder[0]]
    for spec, values in table.items():
        cells = [f"{values[m].mean():.4f}" for m in METRICS]
        print(f"| {spec} | " + " | ".join(cells) + " |")
        if spec != args.decoder[0]:
            diffs = []
            for m in METRICS:
                d = values[m] - first[m]
                diffs.append(f"{d.mean():+.4f} ± {d.std(ddof=1) / np.sqrt(len(d)):.4f}")
            print("| − first, paired | " + " | ".join(diffs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
