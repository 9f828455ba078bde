"""Evaluation of the generative model against the exact renderer (see ``docs/quality.md``).

- :mod:`.metrics`: PSNR and SSIM on uint8 frames, optionally over a mask;
- :mod:`.overlap`: co-visibility masks and correspondences from ground-truth depth and poses;
- :mod:`.consistency`: cross-agent colour agreement over those correspondences;
- :mod:`.variants`: the models and baselines compared (trained, ablations, trivial baselines);
- :mod:`.quality`: the runner that generates every sequence chunk by chunk and scores it;
- :mod:`.report`: the markdown summary, the conclusions and the figures.

The command-line entry point is ``scripts/evaluate_quality.py``.
"""

from shareverse_env.evaluation.consistency import cross_agent_difference
from shareverse_env.evaluation.metrics import psnr, ssim, ssim_map, ssim_tiled
from shareverse_env.evaluation.overlap import correspondences, covisibility_masks
from shareverse_env.evaluation.quality import ChunkScore, QualityResult, evaluate_quality
from shareverse_env.evaluation.variants import VARIANTS, Variant

__all__ = [
    "VARIANTS",
    "ChunkScore",
    "QualityResult",
    "Variant",
    "correspondences",
    "covisibility_masks",
    "cross_agent_difference",
    "evaluate_quality",
    "psnr",
    "ssim",
    "ssim_map",
    "ssim_tiled",
]
