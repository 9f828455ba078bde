#!/usr/bin/env bash
# Fine-tune the cache-conditioned model on the env's own episodes (docs/training.md, "Training
# on the model's own rollouts"): collect expert-driven rollouts of the current model on the
# training towns, then train on them in short resumed segments, each of which re-reads the
# store, so training can start while the collection goes on. The same command resumes both.
#
#   scripts/finetune_rollouts.sh STORE RUN
#
# Knobs (environment): EPISODES (36), CHUNKS (10: chunks per episode at most), MINUTES (60:
# training budget of this call), SEGMENT (10: minutes per resumed segment), STEPS (100000),
# BATCH (2), LR (5e-5), HOLE_WEIGHT (4), SAMPLER_SHARE (0.75), INIT (the shipped weights),
# ADVERSARIAL (0: the --adversarial-weight), COLLECT (1: collect in the background while
# training; 0: train on the store as it is).
set -euo pipefail
STORE=${1:?usage: finetune_rollouts.sh STORE RUN}
RUN=${2:?usage: finetune_rollouts.sh STORE RUN}
PY=${PYTHON:-python3}
EPISODES=${EPISODES:-36}
CHUNKS=${CHUNKS:-10}
MINUTES=${MINUTES:-60}
SEGMENT=${SEGMENT:-10}
STEPS=${STEPS:-100000}
BATCH=${BATCH:-2}
LR=${LR:-5e-5}
HOLE_WEIGHT=${HOLE_WEIGHT:-4}
SAMPLER_SHARE=${SAMPLER_SHARE:-0.75}
ADVERSARIAL=${ADVERSARIAL:-0}
COLLECT=${COLLECT:-1}
INIT=${INIT:-$($PY -c 'from shareverse_env.models.loading import SHIPPED_WEIGHTS; print(SHIPPED_WEIGHTS)')}

if [ "$COLLECT" = 1 ]; then
    shareverse-train collect-rollouts --out "$STORE" --episodes "$EPISODES" --chunks "$CHUNKS" \
        --model "$INIT" --no-progress &
    COLLECTOR=$!
    trap 'kill $COLLECTOR 2>/dev/null || true' EXIT
fi
until [ -f "$STORE/rollouts.json" ] && $PY -c "
import sys; from shareverse_env.models.training.rollout_store import RolloutStore
sys.exit(0 if len(RolloutStore(sys.argv[1])) else 1)" "$STORE" 2>/dev/null; do
    sleep 30
done
DEADLINE=$(( $(date +%s) + MINUTES * 60 ))
while [ "$(date +%s)" -lt "$DEADLINE" ]; do
    LEFT=$(( (DEADLINE - $(date +%s)) / 60 ))
    [ "$LEFT" -lt 1 ] && break
    shareverse-train --rollouts "$STORE" --rollout-share 1 --out "$RUN" --stage stage2 \
        --steps "$STEPS" --init "$INIT" --batch-size "$BATCH" --lr "$LR" --warmup-steps 20 \
        --sampler-timestep-share "$SAMPLER_SHARE" --hole-weight "$HOLE_WEIGHT" \
        --adversarial-weight "$ADVERSARIAL" \
        --max-minutes "$(( LEFT < SEGMENT ? LEFT : SEGMENT ))" --checkpoint-minutes 5 --no-progress
done
