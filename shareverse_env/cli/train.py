"""``shareverse-train``: train the ShareVerse model stage by stage on a synthesized dataset.

    shareverse-train --data data/town --out runs/small --stage vae --steps 3000 --init small
    shareverse-train --data data/town --out runs/small --stage decoder --steps 1000  # encoder frozen
    shareverse-train --data data/town --out runs/small --stage stage1 --steps 20000
    shareverse-train --data data/town --out runs/small --stage stage2 --steps 20000 --device cuda
    torchrun --nproc_per_node 8 -m shareverse_env.cli.train --data ... --stage stage1
    torchrun --nproc_per_node 8 -m shareverse_env.cli.train --data ... --parallel fsdp

With a latent cache (the frozen VAE's encodings, computed once; build it after the VAE stage):

    shareverse-train encode --data data/town --init runs/small --out data/town_latents
    shareverse-train depth --data data/town --out runs/depth --steps 4000  # monocular DepthNet

The cache-conditioned fine-tune (a scene-cache input added to a trained model):

    shareverse-train encode-cache --data data/town --init runs/small --out data/town_cache
    shareverse-train --data data/town --out runs/cache --stage stage2 --steps 4000 \
        --init runs/small/pipeline --cache-input --latents data/town_latents \
        --cache-inputs data/town_cache --max-minutes 60
    shareverse-train --data data/town --out runs/small --stage stage1 --steps 20000 --latents data/town_latents

Rerunning the same command resumes from the stage's last checkpoint (model, optimiser, EMA and
data position: batches are a function of the step). The run's current model is
``RUN/pipeline`` — ``parallel_env(backend="shareverse", model="RUN/pipeline")`` uses it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from shareverse_env.models.training.config import PARALLEL, STAGES, VAE_STAGES, TrainConfig
from shareverse_env.models.training.trainer import (
    Trainer,
    finish_distributed,
    open_run_pipeline,
    with_cache_input,
)
from shareverse_env.scene.cache import MAX_FOOTPRINT


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="shareverse-train", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--data",
        type=Path,
        nargs="+",
        default=None,
        help="dataset folder (shareverse-data); several train on their union (one --latents and "
        "--cache-inputs folder per dataset, in the same order); optional with --rollouts and "
        "--rollout-share 1",
    )
    parser.add_argument(
        "--rollouts",
        type=Path,
        default=None,
        help="rollout store (shareverse-train collect-rollouts): chunks of the env's own "
        "episodes, the truth as target",
    )
    parser.add_argument(
        "--rollout-share",
        type=float,
        default=0.5,
        help="share of each batch drawn from --rollouts (1: rollouts only, no --data needed)",
    )
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
    parser.add_argument(
        "--parallel",
        choices=PARALLEL,
        default="ddp",
        help="with several processes (torchrun): ddp replicates the trained module, fsdp "
        "shards it (parameters, gradients, optimiser state) for models too big for one GPU",
    )
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0)
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=0.0,
        help="stop this invocation after so many minutes (checkpointed; rerun to go on)",
    )
    parser.add_argument("--memory-source", choices=["all", "others", "own"], default="all")
    parser.add_argument(
        "--vae-gradient-weight",
        type=float,
        default=0.0,
        help="vae/decoder stages: weight of a gradient-difference term next to L1, for sharper "
        "reconstructions (0: L1 alone)",
    )
    parser.add_argument(
        "--vae-perceptual-weight",
        type=float,
        default=0.0,
        help="vae/decoder stages: weight of an LPIPS term next to L1 (0: none; needs the "
        "lpips extra)",
    )
    parser.add_argument(
        "--vae-perceptual-net",
        choices=["vgg", "alex"],
        default="vgg",
        help="the LPIPS backbone of --vae-perceptual-weight (vgg: not the evaluation's alex)",
    )
    parser.add_argument(
        "--vae-perceptual-frames",
        type=int,
        default=2,
        help="frames of each clip that the LPIPS term scores (0: all)",
    )
    parser.add_argument("--split", default="train")
    parser.add_argument(
        "--latents",
        type=Path,
        nargs="+",
        default=None,
        help="latent cache folder (shareverse-train encode) of --data built with this run's VAE: "
        "stage 1/2 read chunk and memory latents instead of encoding them, and draw chunk starts "
        "on the cache's grid; the vae stage ignores it",
    )
    parser.add_argument(
        "--cache-input",
        action="store_true",
        help="give the model a scene-cache input (zero-initialised new weights) before training, "
        "if it has none: the cache-conditioned fine-tune of docs/training.md",
    )
    parser.add_argument(
        "--cache-inputs",
        type=Path,
        nargs="+",
        default=None,
        help="cache-input store (shareverse-train encode-cache) for a model with a cache input; "
        "without it those inputs are rendered from the dataset's depth every step",
    )
    parser.add_argument(
        "--cache-drop", type=float, default=0.15, help="share of examples without cache input"
    )
    parser.add_argument(
        "--sampler-timestep-share",
        type=float,
        default=0.0,
        help="share of diffusion timesteps drawn from the pipeline's own sampler schedule "
        "(the shipped one-step sampler: t = 999) instead of uniformly",
    )
    parser.add_argument(
        "--cache-lr-scale",
        type=float,
        default=1.0,
        help="learning-rate multiplier of the new scene-cache projection (cache_embed)",
    )
    parser.add_argument(
        "--hole-weight",
        type=float,
        default=1.0,
        help="loss weight of the latent cells a cache-input model draws itself (no cache "
        "coverage, or another car's box) against 1 elsewhere",
    )
    parser.add_argument(
        "--adversarial-weight",
        type=float,
        default=0.0,
        help="weight of a patch discriminator's term (models/training/adversarial.py), relative "
        "to the reconstruction's pull: on the one-step estimate's latents in stage1/stage2, on "
        "decoded camera views in vae/decoder; 0: off",
    )
    parser.add_argument(
        "--adversarial-start",
        type=int,
        default=0,
        help="with --adversarial-weight: steps in which the discriminator trains alone before "
        "its term reaches the model",
    )
    parser.add_argument(
        "--discriminator-lr",
        type=float,
        default=2e-4,
        help="with --adversarial-weight: the discriminator's learning rate",
    )
    parser.add_argument(
        "--lr-decay",
        type=int,
        nargs=2,
        metavar=("START", "STEPS"),
        default=(0, 0),
        help="cosine-decay the learning rate to --lr-final of it over STEPS steps from step "
        "START, then hold it (default: constant); may be added when resuming a run",
    )
    parser.add_argument(
        "--lr-final",
        type=float,
        default=0.1,
        help="with --lr-decay: the final rate as a share of --lr",
    )
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def parse_encode_cache_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="shareverse-train encode-cache",
        description="Render the scene cache into every chunk of a dataset and encode it with a "
        "model's VAE: the inputs of a cache-conditioned model (resumable).",
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset folder, with depth")
    parser.add_argument("--init", required=True, help="whose VAE: a run, pipeline folder or name")
    parser.add_argument("--out", type=Path, required=True, help="cache-input folder")
    parser.add_argument("--start-stride", type=int, default=4)
    parser.add_argument("--split", default="train")
    parser.add_argument("--seed", type=int, default=0, help="seeds each chunk's depth noise")
    parser.add_argument("--depth-noise", type=float, default=0.10, help="largest noise level")
    parser.add_argument("--memory-source", choices=["all", "others", "own"], default="all")
    parser.add_argument(
        "--max-footprint",
        type=int,
        nargs=2,
        default=list(MAX_FOOTPRINT),
        metavar=("WIDTH", "HEIGHT"),
        help="largest splat of the cache renders, pixels (default: the env's, %(default)s; "
        "stores whose manifest has no caps are read as 3 3)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def encode_cache_main(argv: list[str] | None = None) -> None:
    """``shareverse-train encode-cache``: build or complete a cache-input store."""
    from shareverse_env.core.files import FolderBusyError
    from shareverse_env.models.loading import is_pipeline_folder, load_model
    from shareverse_env.models.training.cache_data import CacheNoise
    from shareverse_env.models.training.cache_inputs import build_cache_inputs

    args = parse_encode_cache_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run_pipeline = Path(args.init) / "pipeline"
    pipe = load_model(str(run_pipeline if is_pipeline_folder(run_pipeline) else args.init))
    try:
        report = build_cache_inputs(
            args.data,
            pipe,
            args.out,
            split=args.split,
            start_stride=args.start_stride,
            noise=CacheNoise(max_level=args.depth_noise),
            seed=args.seed,
            memory_source=args.memory_source,
            max_footprint=tuple(args.max_footprint),
            progress=not args.no_progress,
        )
    except (ValueError, FolderBusyError) as err:
        raise SystemExit(str(err)) from err
    print(
        f"cache inputs {args.out}: encoded {len(report.encoded)} sequences, "
        f"{len(report.skipped)} already there, {report.seconds:.1f} s"
    )


def parse_encode_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="shareverse-train encode",
        description="Pre-encode a dataset with a model's frozen VAE into a latent cache "
        "(resumable: rerun to finish or extend it).",
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (shareverse-data)")
    parser.add_argument(
        "--init",
        required=True,
        help="whose VAE: a run folder (uses RUN/pipeline), a pipeline folder or a config name",
    )
    parser.add_argument("--out", type=Path, required=True, help="latent cache folder")
    parser.add_argument(
        "--start-stride",
        type=int,
        default=4,
        help="cache chunk starts at multiples of this (a cached run draws starts only there)",
    )
    parser.add_argument("--split", default="train")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        default="float32",
        help="storage dtype (float32 reproduces on-the-fly encoding)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="single images per VAE call")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def encode_main(argv: list[str] | None = None) -> None:
    """``shareverse-train encode``: build or complete a latent cache."""
    from shareverse_env.core.files import FolderBusyError
    from shareverse_env.models.loading import is_pipeline_folder, load_model
    from shareverse_env.models.training.latent_cache import build_latent_cache

    args = parse_encode_args(argv)
    run_pipeline = Path(args.init) / "pipeline"
    source = run_pipeline if is_pipeline_folder(run_pipeline) else args.init
    pipe = load_model(str(source))
    pipe.vae.to(args.device)
    try:
        report = build_latent_cache(
            args.data,
            pipe,
            args.out,
            split=args.split,
            start_stride=args.start_stride,
            dtype=args.dtype,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
    except (ValueError, FolderBusyError) as err:
        raise SystemExit(str(err)) from err
    print(
        f"latent cache {args.out}: encoded {len(report.encoded)} sequences, "
        f"{len(report.skipped)} already there, {report.seconds:.1f} s"
    )


@torch.no_grad()
def calibrate_scaling_factor(trainer: Trainer, batches: int = 8) -> float:
    """Set the VAE's scaling factor to 1 / std of its latents (unit-variance diffusion input)."""
    from shareverse_env.models.training.batches import draw_vae_clips, step_rng, to_video_tensor
    from shareverse_env.models.vae import encode_video

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
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "encode":
        encode_main(argv[1:])
        return
    if argv and argv[0] == "encode-cache":
        encode_cache_main(argv[1:])
        return
    if argv and argv[0] == "collect-rollouts":
        from shareverse_env.cli.rollouts import main as collect_main

        collect_main(argv[1:])
        return
    if argv and argv[0] == "depth":
        from shareverse_env.models.training.depth import depth_main

        depth_main(argv[1:])
        return
    args = parse_args(argv)
    from shareverse_env.models.training.union import open_training_data

    if args.data is None and (args.rollouts is None or args.rollout_share < 1):
        raise SystemExit("--data is required unless --rollouts is given with --rollout-share 1")
    pipe = open_run_pipeline(args.out, args.init)
    if args.cache_input:
        pipe = with_cache_input(pipe)
    # A cache input rendered every step needs the dataset's depth.
    renders_cache = bool(pipe.transformer.config.cache_in_channels) and args.cache_inputs is None
    data = latents = cache_inputs = None
    if args.data is not None:
        try:
            data, latents, cache_inputs = open_training_data(
                args.data, args.split, not renders_cache, args.latents, args.cache_inputs
            )
        except ValueError as err:
            raise SystemExit(str(err)) from None
    for root, part in zip(args.data or [], getattr(data, "parts", [data]), strict=False):
        if len(part) == 0:
            raise SystemExit(f"no complete sequences in {root}/{args.split}")
        view_hw = tuple(part[0].frames.shape[-3:-1])
        if view_hw != pipe.frame_shape[:2]:
            raise SystemExit(
                f"the tiled frames of {root} are {view_hw[0]}x{view_hw[1]} but the model "
                f"generates {pipe.frame_shape[0]}x{pipe.frame_shape[1]}: synthesize with "
                f"--view-hw {pipe.view_hw[0]} {pipe.view_hw[1]} or pick the matching config"
            )
    lr = args.lr if args.lr is not None else (2e-4 if args.stage in VAE_STAGES else 1e-4)
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
        parallel=args.parallel,
        checkpoint_minutes=args.checkpoint_minutes,
        checkpoint_every=args.checkpoint_every,
        max_minutes=args.max_minutes,
        memory_source=args.memory_source,
        vae_gradient_weight=args.vae_gradient_weight,
        vae_perceptual_weight=args.vae_perceptual_weight,
        vae_perceptual_net=args.vae_perceptual_net,
        vae_perceptual_frames=args.vae_perceptual_frames,
        cache_drop=args.cache_drop,
        sampler_timestep_share=args.sampler_timestep_share,
        cache_lr_scale=args.cache_lr_scale,
        hole_weight=args.hole_weight,
        adversarial_weight=args.adversarial_weight,
        adversarial_start=args.adversarial_start,
        discriminator_lr=args.discriminator_lr,
        lr_decay_start=args.lr_decay[0],
        lr_decay_steps=args.lr_decay[1],
        lr_final=args.lr_final,
        rollout_share=args.rollout_share,
    )
    if latents is not None and args.stage in VAE_STAGES:
        print(f"--latents is ignored by the {args.stage} stage (it trains the VAE itself)")
        latents = None
    trainer = Trainer(
        pipe,
        data,
        args.out,
        config,
        progress=not args.no_progress,
        latents=latents,
        cache_inputs=cache_inputs,
        rollouts=args.rollouts,
    )
    row = trainer.run()
    if args.stage == "vae" and (trainer.rank == 0 or trainer.sharded):
        # With FSDP every rank calibrates (the same clips on every rank) and joins the save.
        factor = calibrate_scaling_factor(trainer)
        trainer.save()
        if trainer.rank == 0:
            print(f"VAE scaling factor set to {factor:.4f}")
    if trainer.rank == 0:
        print(
            f"{args.stage}: step {trainer.step}/{args.steps}, last loss {row.get('loss', float('nan')):.4f}; "
            f"model at {args.out / 'pipeline'}"
        )
    del trainer
    finish_distributed()


if __name__ == "__main__":
    main()
