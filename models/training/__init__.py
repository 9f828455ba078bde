"""Training of the ShareVerse model: VAE, stage 1 (chunks without memory), stage 2 (with memory).

Kept apart from the inference code: nothing under ``shareverse_env.models`` imports this
subpackage. Entry point: ``shareverse-train`` (:mod:`shareverse_env.cli.train`).
"""

from shareverse_env.models.training.config import STAGES, TrainConfig
from shareverse_env.models.training.trainer import Trainer, finish_distributed

__all__ = ["STAGES", "TrainConfig", "Trainer", "finish_distributed"]
