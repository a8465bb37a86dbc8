#!/usr/bin/env bash
# Score a candidate default model the way issue 14 decides it, against the bundled default's committed results.
#
#   bash scripts/score_candidate.sh RUN_OR_MODEL OUT [STAGES]
#
# RUN_OR_MODEL: a training run folder (its newest checkpoint is exported in fp16) or a .safetensors model.
# OUT: folder for everything this writes (model.safetensors, ranked.safetensors, one eval folder per stage,
#      compare-*/compare.md, decision.md: python -m tracenet.eval.candidate's table and verdict).
# STAGES (default "ranker val grabcut berkeley val-refined"): any subset, in this order, e.g. "ranker val" for a
#      quick look (~15 min on 2 idle cores) before the long refined val run (~20 min with 2 shards).
#   ranker        fit the tap ranker on coco-mini train (python -m tracenet.train.tap_ranker, ~8 min)
#   val           FullNet + ranker, no refinement, exact mTA, coco-mini val (vs results/eval/$REF_NAME-val)
#   grabcut       TraceNet + ranker + GrabCut refinement on the GrabCut set (vs $REF_NAME-grabcut)
#   berkeley      the same on Berkeley (vs $REF_NAME-berkeley)
#   val-refined   the same on coco-mini val, mTA sampled every 32 px, 2 shards in parallel, merged
#                 (vs $REF_NAME-val-refined)
# REF_NAME (default: tracenet.eval.candidate.DEFAULT_EVALS, the bundled default's evaluations, long-lite1 since
# session 22, scored with EVAL_ARGS=--zoom) names the reference evaluations results/eval/$REF_NAME-<stage>; the
# comparisons and tracenet.eval.candidate's verdict are against them.
# Every stage is skipped when its metrics.json exists, so an interrupted scoring resumes where it stopped.
# DATA (default ../shared/data) and THREADS (default 1 per process) can be set in the environment; EVAL_ARGS adds
# arguments to every evaluation (e.g. EVAL_ARGS=--zoom scores the model with the zoom-in pass).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then sed -n 2,22p "$0"; exit 2; fi
SRC=$1
OUT=$2
STAGES=${3:-"ranker val grabcut berkeley val-refined"}
DATA=${DATA:-../shared/data}
REF=results/eval
REF_NAME=${REF_NAME:-$(python -c 'from tracenet.eval.candidate import DEFAULT_EVALS; print(DEFAULT_EVALS)')}
mkdir -p "$OUT"

if [ -d "$SRC" ]; then
  [ -f "$OUT/model.safetensors" ] || python -m tracenet.train --out "$SRC" --export "$OUT/model.safetensors" --fp16
else
  [ -f "$OUT/model.safetensors" ] || cp "$SRC" "$OUT/model.safetensors"
fi
MODEL=$OUT/model.safetensors
case " $STAGES " in
  *" ranker "*)
    [ -f "$OUT/ranked.safetensors" ] || python -m tracenet.train.tap_ranker --model "$MODEL" \
        --data "$DATA/coco-mini" --out "$OUT/ranked.safetensors" --threads "${THREADS:-2}"
    MODEL=$OUT/ranked.safetensors ;;
  *) [ -f "$OUT/ranked.safetensors" ] && MODEL=$OUT/ranked.safetensors ;;
esac

VAL=(--ann "$DATA/coco-mini/val.json" --images "$DATA/coco-mini/images")
run_eval() {  # name, reference, eval args...
  local name=$1 ref=$2; shift 2
  if [ ! -f "$OUT/$name/metrics.json" ]; then
    tracenet eval --checkpoint "$MODEL" --quiet ${EVAL_ARGS:-} "$@" --out "$OUT/$name"
  fi
  python -m tracenet.eval.compare "$REF/$REF_NAME-$ref" "$OUT/$name" --out "$OUT/compare-$name" > /dev/null
}
for stage in $STAGES; do
  case $stage in
    ranker) ;;
    val) run_eval val val --method fullnet "${VAL[@]}" ;;
    grabcut) run_eval grabcut grabcut --masks "$DATA/interactive/GrabCut/masks" \
        --mta-stride 32 --refine grabcut ;;
    berkeley) run_eval berkeley berkeley --masks "$DATA/interactive/Berkeley/masks" \
        --mta-stride 32 --refine grabcut ;;
    val-refined)
      if [ ! -f "$OUT/val-refined/metrics.json" ]; then
        for i in 1 2; do
          [ -f "$OUT/val-refined-$i/metrics.json" ] || tracenet eval --checkpoint "$MODEL" --quiet ${EVAL_ARGS:-} "${VAL[@]}" \
              --mta-stride 32 --refine grabcut --shard $i/2 --out "$OUT/val-refined-$i" &
        done
        wait
        python -m tracenet.eval.merge "$OUT/val-refined-1" "$OUT/val-refined-2" --out "$OUT/val-refined"
      fi
      python -m tracenet.eval.compare "$REF/$REF_NAME-val-refined" "$OUT/val-refined" \
          --out "$OUT/compare-val-refined" > /dev/null ;;
    *) echo "unknown stage: $stage" >&2; exit 2 ;;
  esac
done
# the verdict (exit status 1 when it is "no" or not yet decided; the table says which)
python -m tracenet.eval.candidate "$OUT" --reference-name "$REF_NAME" | tee "$OUT/decision.md" || true
