"""``shareverse-train``: train the ShareVerse model stage by stage on a synthesized dataset.

    shareverse-train --data data/town --out runs/small --stage vae --steps 3000 --init small
    shareverse-train --data data/town --out runs/small --stage stage1 --steps 20000
    shareverse-train --data data/town --out runs/small --stage stage2 --steps 20000 --device cuda
    torchrun --nproc_per_node 8 -m shareverse_env.models.training.cli --data ... --stage stage1

Rerunning the same command resumes from the stage's last checkpoint (model, optimiser, EMA and
data position: batches are a function of the step). The run's current model is
``RUN/pipeline`` — ``parallel_env(backend="shareverse", model="RUN/pipeline")`` uses it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .config import STAGES, TrainConfig
from .trainer import Trainer, open_run_pipeline


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="shareverse-train", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (shareverse-data)")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--stage", choices=STAGES, required=True)
    parser.add_argument("--steps", type=int, required=True, help="total steps of this stage")
    parser.add_argument(
        "--init",
        default=None,
        help="model to start a new run from: a config name (tiny, small, cogvideox-5b-i2v), "
        "a pipeline folder, or cogvideox:PATH for a local CogVideoX-5B-I2V folder",
    )
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--lr", type=float, default=None, help="default: 2e-4 (vae), 1e-4")
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0)
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=0.0,
        help="stop this invocation after so many minutes (checkpointed; rerun to go on)",
    )
    parser.add_argument("--memory-source", choices=["all", "others", "own"], default="all")
    parser.add_argument("--split", default="train")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


@torch.no_grad()
def calibrate_scaling_factor(trainer: Trainer, batches: int = 8) -> float:
    """Set the VAE's scaling factor to 1 / std of its latents (unit-variance diffusion input)."""
    from ..vae import encode_video
    from .batches import draw_vae_clips, step_rng, to_video_tensor

    pipe = trainer.pipe
    trainer.ema.store(trainer.params)
    trainer.ema.copy_to(trainer.params)  # calibrate the weights that ship: the EMA ones
    values = []
    for k in range(batches):
        clips = draw_vae_clips(trainer.data, step_rng(trainer.config.seed, 10**9 + k), 2, 9)
        values.append(encode_video(pipe.vae, to_video_tensor(clips, pipe.device, pipe.dtype)))
    trainer.ema.restore(trainer.params)
    std = float(torch.cat([v.flatten() for v in values]).std())
    factor = 1.0 / max(std, 1e-6)
    pipe.vae.register_to_config(scaling_factor=factor)
    return factor


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from shareverse_env.data import SequenceDataset

    data = SequenceDataset(args.data, args.split, frames_only=True)
    if len(data) == 0:
        raise SystemExit(f"no complete sequences in {args.data}/{args.split}")
    pipe = open_run_pipeline(args.out, args.init)
    view_hw = tuple(data[0].frames.shape[-3:-1])
    if view_hw != pipe.frame_shape[:2]:
        raise SystemExit(
            f"the dataset's tiled frames are {view_hw[0]}x{view_hw[1]} but the model generates "
            f"{pipe.frame_shape[0]}x{pipe.frame_shape[1]}: synthesize with --view-hw "
            f"{pipe.view_hw[0]} {pipe.view_hw[1]} or pick the matching config"
        )
    lr = args.lr if args.lr is not None else (2e-4 if args.stage == "vae" else 1e-4)
    config = TrainConfig(
        stage=args.stage,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=lr,
        warmup_steps=args.warmup_steps,
        ema_decay=args.ema_decay,
        seed=args.seed,
        device=args.device,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing,
        checkpoint_minutes=args.checkpoint_minutes,
        checkpoint_every=args.checkpoint_every,
        max_minutes=args.max_minutes,
        memory_source=args.memory_source,
    )
    trainer = Trainer(pipe, data, args.out, config, progress=not args.no_progress)
    row = trainer.run()
    if args.stage == "vae" and trainer.rank == 0:
        factor = calibrate_scaling_factor(trainer)
        trainer.save()
        print(f"VAE scaling factor set to {factor:.4f}")
    if trainer.rank == 0:
        print(
            f"{args.stage}: step {trainer.step}/{args.steps}, last loss {row.get('loss', float('nan')):.4f}; "
            f"model at {args.out / 'pipeline'}"
        )
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
