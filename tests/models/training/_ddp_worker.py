"""Run by torchrun in tests: two CPU processes (gloo) train the tiny model for two steps.

Both ranks check that the weights moved from their values before training and that, after the
all-reduce, the two ranks hold the same weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _fake_data import FakeData
from _weights_moved import assert_moved, snapshot
from shareverse_env.models.pipeline import ShareVersePipeline
from shareverse_env.models.training import TrainConfig, Trainer, finish_distributed

torch.set_num_threads(1)
run = Path(sys.argv[1])
pipe = ShareVersePipeline.from_config_name("tiny")
trainer = Trainer(
    pipe, FakeData(), run, TrainConfig(stage="stage1", steps=2, warmup_steps=0), progress=False
)
assert trainer.world == 2, trainer.world
assert trainer.step == 0, "the run folder held a checkpoint: nothing would be trained"
before = snapshot(trainer)  # after DDP's broadcast from rank 0: the same on both ranks
trainer.run()
assert trainer.step == 2, trainer.step
assert_moved(trainer, before)
# Data-parallel: after the all-reduce every rank holds the same weights.
flat = torch.cat([p.detach().flatten() for p in trainer.module.parameters()])
gathered = [torch.zeros_like(flat) for _ in range(2)]
torch.distributed.all_gather(gathered, flat)
assert torch.equal(gathered[0], gathered[1])
print(f"rank {trainer.rank} ok", flush=True)
del trainer
finish_distributed()
