#!/usr/bin/env bash
# Fine-tune a ShareVerse model into a cache-conditioned one: it gets the shared scene
# cache's render as input and learns to continue it (docs/training.md). The shipped weights
# already read the cache, so the default INIT goes on training them; INIT=<a pipeline
# folder without the cache input> starts from such a model (zero-initialised new weights). Synthesize training data
# (with depth), pre-encode its chunk latents and its cache inputs once, then train stage 2
# with --cache-input until a deadline. The same command resumes every step where it stopped
# (finished sequences, encoded files and the stage checkpoint are kept); on a lent GPU pass
# DEVICE=cuda.
#
#   scripts/finetune_cache.sh DATA RUN [DEVICE]
#
# Knobs (environment): SEQUENCES (48), TOWNS (8), SEED (0), STRIDE (8: chunk starts cached),
# MINUTES (60: training budget of this call), STEPS (100000: the stage's total), BATCH (2),
# LR (1e-4), SAMPLER_SHARE (0.75: share of timesteps at the sampler's own, t = 999 for the
# one-step sampler), CACHE_LR_SCALE (10: learning-rate multiplier of the new cache projection),
# HOLE_WEIGHT (1: loss weight of the cells the model draws itself, no cache coverage or another
# car's box), INIT (the shipped weights), THREADS (torch threads), PYTHON (python3).
set -euo pipefail
DATA=${1:?usage: finetune_cache.sh DATA RUN [DEVICE]}
RUN=${2:?usage: finetune_cache.sh DATA RUN [DEVICE]}
DEVICE=${3:-cpu}
PY=${PYTHON:-python3}
SEQUENCES=${SEQUENCES:-48}
TOWNS=${TOWNS:-8}
SEED=${SEED:-0}
STRIDE=${STRIDE:-8}
MINUTES=${MINUTES:-60}
STEPS=${STEPS:-100000}
BATCH=${BATCH:-2}
LR=${LR:-1e-4}
SAMPLER_SHARE=${SAMPLER_SHARE:-0.75}
CACHE_LR_SCALE=${CACHE_LR_SCALE:-10}
HOLE_WEIGHT=${HOLE_WEIGHT:-1}
INIT=${INIT:-$($PY -c 'from shareverse_env.models.loading import SHIPPED_WEIGHTS; print(SHIPPED_WEIGHTS)')}
THREADS=${THREADS:-}
if [ -n "$THREADS" ]; then export OMP_NUM_THREADS=$THREADS; fi

shareverse-data generate --out "$DATA" --sequences "$SEQUENCES" --towns "$TOWNS" \
    --seed "$SEED" --val-fraction 0.1 --workers 1 --quiet
shareverse-train encode --data "$DATA" --init "$INIT" --out "$DATA/../$(basename "$DATA")_latents" \
    --start-stride "$STRIDE" --device "$DEVICE" --no-progress
shareverse-train encode-cache --data "$DATA" --init "$INIT" \
    --out "$DATA/../$(basename "$DATA")_cache_inputs" --start-stride "$STRIDE" --no-progress
shareverse-train --data "$DATA" --out "$RUN" --stage stage2 --steps "$STEPS" --init "$INIT" \
    --cache-input --latents "$DATA/../$(basename "$DATA")_latents" \
    --cache-inputs "$DATA/../$(basename "$DATA")_cache_inputs" --batch-size "$BATCH" --lr "$LR" \
    --warmup-steps 50 --sampler-timestep-share "$SAMPLER_SHARE" --cache-lr-scale "$CACHE_LR_SCALE" \
    --hole-weight "$HOLE_WEIGHT" --device "$DEVICE" --max-minutes "$MINUTES" --checkpoint-minutes 5 \
    --no-progress
