"""Training of the ShareVerse model: VAE, stage 1 (chunks without memory), stage 2 (with memory).

Kept apart from the inference code: nothing under ``shareverse_env.models`` imports this
subpackage. Entry point: ``shareverse-train`` (:mod:`shareverse_env.models.training.cli`).
"""

from .config import STAGES, TrainConfig
from .trainer import Trainer, finish_distributed

__all__ = ["STAGES", "TrainConfig", "Trainer", "finish_distributed"]
