"""Held-out error of the one-step sampler, per model: the latent MSE of the chunk each model
predicts from pure noise at the sampler's timestep, on fixed chunks of held-out towns.

The shipped sampler takes one DDIM step from t = 999, where the zero-terminal-SNR schedule
leaves no signal: its output is the model's x0 prediction, so this is the error of the chunk
latents the env decodes, measured overall and in the latent cells that the scene cache does
not cover (min-pooled mask 0: the holes the model must fill). Every model sees the same chunks,
conditioning noise and initial noise; models without a cache input ignore the cache.

python scripts/heldout_loss.py --data data/eval --split val --latents data/eval_val_latents \\
    --cache-inputs data/eval_val_cache_inputs --chunks 32 --out outputs/heldout_loss.csv \\
    --models models/weights/small runs/cache/pipeline runs/cache2/pipeline
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import torch
from shareverse_env.models.loading import load_model
from shareverse_env.models.pipeline import ShareVersePipeline
from shareverse_env.models.training import TrainConfig, Trainer
from shareverse_env.models.training.cache_inputs import CacheInputStore
from shareverse_env.models.training.objective import (
    encode_chunks,
    predict_velocity,
    sampler_timesteps,
)
from tqdm.auto import tqdm

from shareverse_env.data.reader import SequenceDataset


@torch.no_grad()
def heldout_errors(
    model: str | ShareVersePipeline,
    data: SequenceDataset,
    latents: Path,
    store: CacheInputStore,
    chunks: int,
    progress: bool = True,
) -> dict[str, float]:
    """Mean latent MSE of the one-step prediction over ``chunks`` fixed held-out chunks:
    overall, in the cache's holes and where it covers."""
    pipe = model if isinstance(model, ShareVersePipeline) else load_model(model)
    config = TrainConfig(stage="stage2", steps=1, cache_drop=0.0, seed=1234)
    with tempfile.TemporaryDirectory() as run:
        trainer = Trainer(
            pipe, data, run, config, progress=False, latents=latents, cache_inputs=store
        )
        (t,) = sampler_timesteps(pipe)[:1]
        scheduler = pipe.scheduler
        sums = {"all": 0.0, "holes": 0.0, "covered": 0.0}
        counts = dict.fromkeys(sums, 0.0)
        name = "model" if isinstance(model, ShareVersePipeline) else Path(model).name
        for step in tqdm(range(chunks), desc=name, leave=False, disable=not progress):
            seed, batch = trainer._draw(step)
            generator = torch.Generator().manual_seed(seed)
            encoded = encode_chunks(pipe, batch, config, generator)
            x0 = encoded["latents"]
            # Its own generator: a cache model's batch draws one more number (the cache drop).
            noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed + 1))
            timestep = t.expand(x0.shape[0])
            noisy = scheduler.add_noise(x0, noise, timestep)
            v = predict_velocity(pipe.transformer, encoded, noisy, timestep)
            alpha = scheduler.alphas_cumprod[t].to(x0.dtype)
            pred = alpha.sqrt() * noisy - (1 - alpha).sqrt() * v
            error = (pred - x0).pow(2).mean(dim=3)  # (B, A, F, h, w)
            states = torch.stack(
                [store.states(data.ids[e.sequence], e.start) for e in batch]
            )  # (B, A, F, Cc, h, w)
            covered = states[:, :, :, pipe.vae.config.latent_channels] > 0.5
            for region, where in (
                ("all", torch.ones_like(covered)),
                ("holes", ~covered),
                ("covered", covered),
            ):
                sums[region] += float(error[where].sum())
                counts[region] += float(where.sum())
    return {region: sums[region] / max(counts[region], 1.0) for region in sums}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--latents", type=Path, required=True, help="latent cache of the split")
    parser.add_argument("--cache-inputs", type=Path, required=True, help="its cache-input store")
    parser.add_argument("--models", nargs="+", required=True, help="names or pipeline folders")
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="CSV of the table (appended)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="figure of the CSV's rows: models named by a step number (snapshots such as "
        "RUN_snaps/600) as curves over steps, the others as reference lines",
    )
    parser.add_argument(
        "--mark",
        nargs=2,
        action="append",
        default=[],
        metavar=("STEP", "LABEL"),
        help="a labelled vertical line on the plot (e.g. where the data changed); repeatable",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = SequenceDataset(args.data, args.split, frames_only=True)
    store = CacheInputStore(args.cache_inputs)
    rows = []
    for model in args.models:
        errors = heldout_errors(
            model, data, args.latents, store, args.chunks, progress=not args.no_progress
        )
        rows.append({"model": model, **{k: round(v, 5) for k, v in errors.items()}})
        print(
            f"{model:50s} all {errors['all']:.4f}  holes {errors['holes']:.4f}  "
            f"covered {errors['covered']:.4f}",
            flush=True,
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        new = not args.out.exists()
        with args.out.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            if new:
                writer.writeheader()
            writer.writerows(rows)
    if args.plot is not None:
        plot(args.out, args.plot, {int(step): label for step, label in args.mark})


def plot(table: Path | None, out: Path, marks: dict[int, str] | None = None) -> None:
    """Held-out error over training steps (models whose last path part is a step number) next
    to reference models (the others), overall and in the holes; ``marks`` as labelled
    vertical lines at their steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if table is None:
        raise SystemExit("--plot draws the --out table: pass --out too")
    with table.open() as f:
        rows = list(csv.DictReader(f))
    curve = sorted((int(Path(r["model"]).name), r) for r in rows if Path(r["model"]).name.isdigit())
    refs = [r for r in rows if not Path(r["model"]).name.isdigit()]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=120, sharex=True)
    for ax, key in zip(axes, ("all", "holes"), strict=True):
        if curve:
            ax.plot([s for s, _ in curve], [float(r[key]) for _, r in curve], "o-", label="run")
        for k, r in enumerate(refs):
            ax.axhline(float(r[key]), ls="--", lw=1, color=f"C{k + 1}", label=r["model"])
        for step, label in (marks or {}).items():
            ax.axvline(step, color="grey", lw=0.8, ls=":")
            ax.annotate(label, (step, 1), xycoords=("data", "axes fraction"), xytext=(3, -10),
                        textcoords="offset points", fontsize=7, color="grey")  # fmt: skip
        ax.set_title(f"one-step latent MSE: {key}")
        ax.set_xlabel("training step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
