#!/usr/bin/env bash
# The recipe ablation arms and the long run on one GPU machine (planned for an H200 with 16 CPU cores and a
# 15-minute device budget), results into $OUT. See training/README.md, "GPU plan".
#
# Prepare on the development machine (the device receives only the working tree, <= 64 MiB; ../shared stays):
#     python scripts/pack_device_data.py                 # -> device_data/ (git-ignored), sized to fit
# Then one device call:
#     run(command="bash scripts/device_train.sh", carry=["device_data"], timeout_s=600)
# CPU check of the whole pipeline (tiny models, a few iterations, minutes):
#     SMOKE=1 OUT=/tmp/device_out DATA=../shared/data bash scripts/device_train.sh
#
# Comes back in $OUT: device_train.log, ablation.json (arms' val scores, speeds, the long run's recipe) and
# long_run.tar.part-aa, -ab, ... (the long run's newest checkpoint with optimizer state, config and metrics;
# `cat long_run.tar.part-* | tar -x -C runs` restores runs/long, which `tracenet train --resume` continues).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/device_out}
DATA=${DATA:-device_data}           # the pack (or ../shared/data for the CPU check)
RUNS=${RUNS:-/tmp/tracenet_runs}    # run folders (not $OUT: it returns files at most 2 folders deep)
LIMIT_S=${LIMIT_S:-540}             # this script's wall-time budget; give the tool call ~60 s more
BATCH=${BATCH:-32}                  # global batch; lr 0.005 x 32/8 = 0.02 by the linear rule
ARM_IMAGES=${ARM_IMAGES:-12000}     # per arm (1.5x the CPU augmentation ablation's 8000)
LONG_IMAGES=${LONG_IMAGES:-96000}   # 4x the bundled model's 24000
ARMS=${ARMS:-}                       # e.g. "base no-single": only these arms (default: all six)
SMOKE=${SMOKE:-0}
mkdir -p "$OUT" "$RUNS"
exec > >(tee "$OUT/device_train.log") 2>&1
export PYTHONUNBUFFERED=1

if [ -d "$DATA/wheels" ] && ! python3 -c "import pycocotools" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$DATA"/wheels/*.whl \
    || { echo "device_train: installing $DATA/wheels failed"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import torch, tracenet, pycocotools; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" || exit 1

args=(--data-root "$DATA" --out "$RUNS" --batch "$BATCH" --arm-images "$ARM_IMAGES" --long-images "$LONG_IMAGES"
      --deadline-s $((LIMIT_S - 60)) --quiet)
[ -d "$DATA/weights" ] && args+=(--weights-dir "$DATA/weights")
# shellcheck disable=SC2206
[ -n "$ARMS" ] && args+=(--arms $ARMS)
if [ "$SMOKE" = 1 ]; then args+=(--smoke --device cpu --val-images 2); else args+=(--device cuda); fi
timeout --signal=INT $((LIMIT_S - 30)) python3 benchmarks/recipe_ablation.py "${args[@]}"
echo "device_train: recipe_ablation exited with $?"

cp "$RUNS/ablation.json" "$OUT/" 2>/dev/null
if [ -f "$RUNS/long/last_checkpoint" ]; then
  ckpt=$(cat "$RUNS/long/last_checkpoint")
  tar -C "$RUNS" -cf - long/last_checkpoint "long/$ckpt" long/train_config.json long/metrics.jsonl \
    | split -b 15m -a 2 - "$OUT/long_run.tar.part-"
  echo "device_train: long run packed from long/$ckpt"
fi
ls -la "$OUT"
