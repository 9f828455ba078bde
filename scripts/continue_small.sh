#!/usr/bin/env bash
# Continue training a trained small ShareVerse model on fresh data: its VAE decoder (the encoder,
# and so the latent space, stays fixed), then stage 2 (chunks with 4 retrieved memory frames)
# from a latent cache; then the fp16 export that ships and its quality against the exact
# renderer. One command for a CPU or a GPU, sized by a wall-clock deadline so that it fits one
# lent-GPU call.
#
#   scripts/continue_small.sh DATA RUN [DEVICE]
#
# Knobs (environment): INIT (models/weights/small: a pipeline folder), SEED (2: the training
# set's seed; the shipped model saw seed 0), SEQUENCES (448), TOWNS (48), WORKERS (cores - 2),
# DECODER_MIN (1; 0 skips), DECODER_BATCH (16), DECODER_GRADIENT (0: the decoder's
# --vae-gradient-weight), STAGE2_MIN (5), BATCH (32), LR (1e-4),
# MP (bf16 on cuda, else no), DEADLINE_S (0: none; stage 2 is cut so that the whole script ends
# within this many seconds), EVAL_SEQUENCES (8: the `data/eval` recipe, 4 validation sequences
# of 2 held-out towns; 0 skips the evaluation), EVAL_VARIANTS ("trained" and the four floors),
# PYTHON (python3).
#
# Writes RUN/latents (the cache), RUN/checkpoints and RUN/pipeline (the run; fp32, EMA weights),
# RUN/export (fp16: the folder to copy to models/weights/small) and RUN/quality (summary.md,
# results.json, figures). Rerunning goes on from every step's checkpoint.
set -euo pipefail
DATA=${1:?usage: continue_small.sh DATA RUN [DEVICE]}
RUN=${2:?usage: continue_small.sh DATA RUN [DEVICE]}
DEVICE=${3:-cpu}
PY=${PYTHON:-python3}
CORES=$(nproc)
INIT=${INIT:-models/weights/small}
SEED=${SEED:-2}
SEQUENCES=${SEQUENCES:-448}
TOWNS=${TOWNS:-48}
WORKERS=${WORKERS:-$((CORES > 3 ? CORES - 2 : 1))}
DECODER_MIN=${DECODER_MIN:-1}
DECODER_BATCH=${DECODER_BATCH:-16}
DECODER_GRADIENT=${DECODER_GRADIENT:-0}
STAGE2_MIN=${STAGE2_MIN:-5}
BATCH=${BATCH:-32}
LR=${LR:-1e-4}
DEADLINE_S=${DEADLINE_S:-0}
EVAL_SEQUENCES=${EVAL_SEQUENCES:-8}
read -r -a EVAL_VARIANTS <<<"${EVAL_VARIANTS:-trained repeat repeat_blur repeat_autoencoded mean_colour}"
if [[ $DEVICE == cuda* ]]; then MP=${MP:-bf16}; else MP=${MP:-no}; fi
[[ -f $INIT/pipeline.json ]] || { echo "INIT=$INIT is not a pipeline folder" >&2; exit 2; }
mkdir -p "$RUN"

echo "== data: $SEQUENCES sequences (seed $SEED) and the evaluation set, $WORKERS workers"
export OMP_NUM_THREADS=1 # the renderer's workers: one thread each
if [[ $EVAL_SEQUENCES != 0 ]]; then
  $PY -m shareverse_env.cli.data generate --out "$DATA/eval" --sequences "$EVAL_SEQUENCES" \
    --towns 4 --seed 1000 --val-fraction 0.5 --workers "$WORKERS" --quiet
fi
$PY -m shareverse_env.cli.data generate --out "$DATA/main" --sequences "$SEQUENCES" \
  --towns "$TOWNS" --seed "$SEED" --workers "$WORKERS" --quiet
unset OMP_NUM_THREADS

echo "== latents: $DATA/main with the VAE of $INIT ($(date +%T), ${SECONDS}s)"
$PY -m shareverse_env.cli.train encode --data "$DATA/main" --init "$INIT" \
  --out "$RUN/latents" --device "$DEVICE" --no-progress

common=(--out "$RUN" --init "$INIT" --steps 1000000 --device "$DEVICE" --mixed-precision "$MP"
  --checkpoint-minutes 2 --no-progress)
if [[ $DECODER_MIN != 0 ]]; then
  echo "== decoder: $DECODER_MIN min, batch $DECODER_BATCH clips ($(date +%T), ${SECONDS}s)"
  $PY -m shareverse_env.cli.train --data "$DATA/main" --stage decoder \
    --max-minutes "$DECODER_MIN" --batch-size "$DECODER_BATCH" --lr 1e-4 --warmup-steps 50 \
    --ema-decay 0.998 --vae-gradient-weight "$DECODER_GRADIENT" "${common[@]}"
fi

# Export and evaluation take about a minute on a GPU machine's CPU cores; keep that in reserve.
minutes=$STAGE2_MIN
if [[ $DEADLINE_S != 0 ]]; then
  minutes=$($PY -c "print(max(0.05, min($STAGE2_MIN, ($DEADLINE_S - $SECONDS - 90) / 60)))")
fi
echo "== stage2: $minutes min, batch $BATCH, lr $LR ($(date +%T), ${SECONDS}s)"
$PY -m shareverse_env.cli.train --data "$DATA/main" --latents "$RUN/latents" \
  --stage stage2 --max-minutes "$minutes" --batch-size "$BATCH" --lr "$LR" --warmup-steps 100 \
  "${common[@]}"

$PY scripts/export_pipeline.py "$RUN/pipeline" "$RUN/export" --dtype float16
if [[ $EVAL_SEQUENCES != 0 ]]; then
  echo "== quality of the export ($(date +%T), ${SECONDS}s)"
  $PY scripts/evaluate_quality.py --data "$DATA/eval" --split val --model "$RUN/export" \
    --out "$RUN/quality" --variants "${EVAL_VARIANTS[@]}" --threads "$CORES" --no-progress
  cat "$RUN/quality/summary.md"
fi
echo "== done in ${SECONDS}s; ship with: cp -r $RUN/export/. models/weights/small/"
