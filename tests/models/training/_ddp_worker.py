"""Run by torchrun in tests: two CPU processes (gloo) train the tiny model for two steps."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _fake_data import FakeData
from shareverse_env.models.pipeline import ShareVersePipeline
from shareverse_env.models.training import TrainConfig, Trainer, finish_distributed

torch.set_num_threads(1)
run = Path(sys.argv[1])
pipe = ShareVersePipeline.from_config_name("tiny")
trainer = Trainer(
    pipe, FakeData(), run, TrainConfig(stage="stage1", steps=2, warmup_steps=0), progress=False
)
assert trainer.world == 2, trainer.world
trainer.run()
# Data-parallel: after the all-reduce every rank holds the same weights.
flat = torch.cat([p.detach().flatten() for p in trainer.module.parameters()])
gathered = [torch.zeros_like(flat) for _ in range(2)]
torch.distributed.all_gather(gathered, flat)
assert torch.equal(gathered[0], gathered[1])
print(f"rank {trainer.rank} ok", flush=True)
del trainer
finish_distributed()
