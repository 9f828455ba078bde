"""For the torchrun workers: did training actually move the weights?

Ranks that agree after training also agree when nothing was updated, so the workers snapshot the
trainable parameters before training and check afterwards that they moved. Call both functions
on every rank: sharded (FSDP) parameters are all-gathered, so each rank checks the whole model.
"""

from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor


def _full(param: torch.Tensor) -> torch.Tensor:
    if isinstance(param, DTensor):
        param = param.full_tensor()
    return param.detach().float().cpu().clone()


def snapshot(trainer) -> list[torch.Tensor]:
    """Copies of the trainer's trainable parameters (whole tensors, also when sharded)."""
    return [_full(p) for p in trainer.params]


def assert_moved(trainer, before: list[torch.Tensor]) -> None:
    """Most trainable tensors took optimiser steps, not only weight decay, and the whole moved.

    AdamW's steps are about ``lr`` per element wherever there is a gradient, so a tensor that
    was trained moves by at least ``lr / 10`` somewhere; weight decay alone moves it by
    ``lr * weight_decay * |w|`` a step, about a thousandth of ``lr``. A few tensors may get no
    gradient at all (the tiny transformer's unused text projection: 84 of 86 tensors move), hence
    "most" (90 %). The relative change of all trainable weights together must reach ``lr``
    (observed in the workers: 5.5 ``lr`` after one resumed FSDP step, 12 to 23 ``lr`` after 2 or
    3 steps of any stage; weight decay alone: 0.01 ``lr`` a step).
    """
    lr = trainer.config.lr
    assert lr > 0, lr
    after = [_full(p) for p in trainer.params]
    assert len(after) == len(before) > 0, (len(after), len(before))
    steps = [float((a - b).abs().max()) for a, b in zip(after, before, strict=True)]
    trained = sum(s >= lr / 10 for s in steps)
    assert trained >= 0.9 * len(steps), (
        f"rank {trainer.rank}: only {trained} of {len(steps)} trainable tensors moved by lr/10"
    )
    delta = torch.cat([(a - b).flatten() for a, b in zip(after, before, strict=True)]).norm()
    scale = torch.cat([b.flatten() for b in before]).norm()
    relative = float(delta / scale)
    assert relative >= lr, f"rank {trainer.rank}: weights moved by only {relative:.2e}"
    print(
        f"rank {trainer.rank} moved: {trained}/{len(steps)} tensors, relative {relative:.2e}"
        f" = {relative / lr:.1f} lr",
        flush=True,
    )
