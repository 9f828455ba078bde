#!/usr/bin/env bash
# Train the small ShareVerse model end to end against wall-clock budgets: synthesize the data,
# train the VAE, then stage 1 (chunks without memory) and stage 2 (chunks with 4 retrieved
# memory frames). The same command runs on a CPU or a GPU; only the budgets differ.
#
#   scripts/train_small.sh DATA RUN [DEVICE]
#
# Knobs (environment): SEQUENCES (448), VAE_SEQUENCES (32), TOWNS (48), WORKERS (cores - 3), VAE_MIN (1.6),
# STAGE1_MIN (2.6), STAGE2_MIN (3.2), BATCH (32), VAE_BATCH (16), MP (bf16 on cuda, else no),
# DEADLINE_S (0: none; stop every stage so that the whole script ends within this many seconds),
# LATENTS (1: pre-encode the sequences with the trained VAE into RUN/latents and train stages 1
# and 2 from that cache; 0: encode every batch on the fly), PYTHON (python3).
# Rerunning resumes: finished sequences, cached latents and stage checkpoints are kept. A cache
# made with an earlier VAE is refused: delete RUN/latents after training the VAE further.
set -euo pipefail
DATA=${1:?usage: train_small.sh DATA RUN [DEVICE]}
RUN=${2:?usage: train_small.sh DATA RUN [DEVICE]}
DEVICE=${3:-cpu}
PY=${PYTHON:-python3}
CORES=$(nproc)
SEQUENCES=${SEQUENCES:-448}
VAE_SEQUENCES=${VAE_SEQUENCES:-32}
TOWNS=${TOWNS:-48}
WORKERS=${WORKERS:-$((CORES > 4 ? CORES - 3 : 1))}
VAE_MIN=${VAE_MIN:-1.6}
STAGE1_MIN=${STAGE1_MIN:-2.6}
STAGE2_MIN=${STAGE2_MIN:-3.2}
BATCH=${BATCH:-32}
VAE_BATCH=${VAE_BATCH:-16}
DEADLINE_S=${DEADLINE_S:-0}
LATENTS=${LATENTS:-1}
if [[ $DEVICE == cuda* ]]; then MP=${MP:-bf16}; else MP=${MP:-no}; fi

# Minutes left for a stage: its budget, capped by the deadline (less a reserve for the rest).
budget() {
  local planned=$1 reserve_s=$2
  if [[ $DEADLINE_S == 0 ]]; then echo "$planned"; return; fi
  $PY -c "print(max(0.05, min($planned, ($DEADLINE_S - $SECONDS - $reserve_s) / 60)))"
}

train() {
  local stage=$1 minutes=$2 batch=$3 lr=$4
  shift 4
  echo "== $stage: ${minutes} min, batch $batch, lr $lr ($(date +%T), ${SECONDS}s)"
  $PY -m shareverse_env.cli.train --data "$@" --out "$RUN" --stage "$stage" \
    --steps 1000000 --max-minutes "$minutes" --batch-size "$batch" --lr "$lr" \
    --warmup-steps 100 --device "$DEVICE" --mixed-precision "$MP" --checkpoint-minutes 1 \
    --init small --no-progress
}

echo "== data: VAE images, then $SEQUENCES sequences with $WORKERS workers in the background"
export OMP_NUM_THREADS=1  # the renderer's workers: one thread each
$PY -m shareverse_env.cli.data generate --out "$DATA/vae" --sequences "$VAE_SEQUENCES" --towns 8 --seed 1 \
  --workers "$WORKERS" --quiet
$PY -m shareverse_env.cli.data generate --out "$DATA/main" --sequences "$SEQUENCES" \
  --towns "$TOWNS" --seed 0 --workers "$WORKERS" --quiet &
GENERATOR=$!
unset OMP_NUM_THREADS

train vae "$(budget "$VAE_MIN" 400)" "$VAE_BATCH" 3e-4 "$DATA/vae"
wait $GENERATOR || echo "!! some sequences failed (see above); training on the complete ones"
echo "== data ready (${SECONDS}s)"
CACHE=()
if [[ $LATENTS == 1 ]]; then
  echo "== latents: encoding $DATA/main with the VAE of $RUN ($(date +%T), ${SECONDS}s)"
  $PY -m shareverse_env.cli.train encode --data "$DATA/main" --init "$RUN" \
    --out "$RUN/latents" --device "$DEVICE" --no-progress
  CACHE=(--latents "$RUN/latents")
fi
train stage1 "$(budget "$STAGE1_MIN" 240)" "$BATCH" 2e-4 "$DATA/main" "${CACHE[@]}"
train stage2 "$(budget "$STAGE2_MIN" 30)" "$BATCH" 2e-4 "$DATA/main" "${CACHE[@]}"
echo "== done in ${SECONDS}s; model at $RUN/pipeline"
