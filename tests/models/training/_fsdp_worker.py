"""Run by torchrun in tests: two CPU processes (gloo) train the tiny model with DDP and FSDP.

``RUN/ddp``: 3 DDP steps. ``RUN/fsdp``: 3 FSDP steps without a break. ``RUN/resumed``: 2 FSDP
steps, a checkpoint, a new Trainer that resumes and takes the third. The test compares the
checkpoints; rank 0 writes the per-step losses to ``RUN/losses.json``. Every training run checks,
on both ranks, that the weights moved from where they were before its steps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _fake_data import FakeData
from _weights_moved import assert_moved, snapshot
from shareverse_env.models.pipeline import ShareVersePipeline
from shareverse_env.models.training import TrainConfig, Trainer, finish_distributed
from torch.distributed.tensor import DTensor

torch.set_num_threads(1)
run = Path(sys.argv[1])
stage = sys.argv[2] if len(sys.argv) > 2 else "stage1"
replicas_check = stage == "vae-ddp"  # DDP on the VAE stage: do the ranks stay in sync?
stage = "vae" if replicas_check else stage


def train(folder: str, parallel: str, steps: int, **kwargs) -> tuple[Trainer, list[float]]:
    pipe = ShareVersePipeline.from_config_name("tiny")
    cfg = TrainConfig(
        stage=stage, steps=steps, lr=3e-3, warmup_steps=0, parallel=parallel, **kwargs
    )
    trainer = Trainer(pipe, FakeData(), run / folder, cfg, progress=False)
    assert trainer.world == 2, trainer.world
    assert trainer.step < steps, f"{folder}: resumed at step {trainer.step}, nothing to train"
    before = snapshot(trainer)  # after the broadcast from rank 0 (or the resume)
    losses = []
    while trainer.step < steps:
        losses.append(trainer.train_step()["loss"])
    assert_moved(trainer, before)
    trainer.save()
    return trainer, losses


if replicas_check:  # the VAE loss bypasses DDP's forward: gradients are averaged by hand
    trainer, _ = train("replicas", "ddp", 2)
    for param in trainer.module.parameters():
        copies = [torch.empty_like(param) for _ in range(trainer.world)]
        torch.distributed.all_gather(copies, param.detach().contiguous())
        assert torch.equal(copies[0], copies[1]), "VAE replicas drifted apart"
    print(f"rank {trainer.rank} ok", flush=True)
    del trainer
    finish_distributed()
    sys.exit(0)

if stage != "stage1":  # a smoke run of the other code paths (memory, VAE, checkpointing, bf16)
    # bf16 autocast makes the CPU's VAE convolutions slow (40 s of the VAE smoke's 70): the
    # decoder and stage2 smokes keep bf16 for the sharded VAE decoder and blocks; the VAE smoke
    # (encoder, calibration, save on every rank) runs in float32.
    precision = "no" if stage == "vae" else "bf16"
    trainer, losses = train(
        "smoke", "fsdp", 2, gradient_checkpointing=True, mixed_precision=precision
    )
    assert all(torch.isfinite(torch.tensor(losses))), losses
    if stage == "vae":  # what shareverse-train does after the VAE stage, on every FSDP rank
        from shareverse_env.cli.train import calibrate_scaling_factor

        factor = calibrate_scaling_factor(trainer)
        trainer.save()
        if trainer.rank == 0:  # the writer: the other rank goes on as soon as it has gathered
            saved = ShareVersePipeline.from_pretrained(run / "smoke" / "pipeline")
            assert saved.vae.config.scaling_factor == factor
    print(f"rank {trainer.rank} ok", flush=True)
    del trainer
    finish_distributed()
    sys.exit(0)

ddp, ddp_losses = train("ddp", "ddp", 3)
fsdp, fsdp_losses = train("fsdp", "fsdp", 3)
assert fsdp.sharded and isinstance(fsdp.params[0], DTensor)
assert isinstance(fsdp.ema.shadow_params[0], DTensor)
first, first_losses = train("resumed", "fsdp", 2)
resumed, resumed_losses = train("resumed", "fsdp", 3)
if fsdp.rank == 0:
    losses = {
        "ddp": ddp_losses,
        "fsdp": fsdp_losses,
        "resumed": first_losses + resumed_losses,
    }
    (run / "losses.json").write_text(json.dumps(losses))
print(f"rank {fsdp.rank} ok", flush=True)
del ddp, fsdp, first, resumed
finish_distributed()
