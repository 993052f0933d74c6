#!/usr/bin/env bash
# The overtraining study in miniature (Springer et al. 2025; docs/ALGORITHMS.md §6), about 10 minutes
# on 2 CPU cores. From the repository root:  bash examples/overtraining/run.sh
#  1. data: English prose (the standard library's docstrings) and Python code, one tokenizer;
#  2. the same small Llama pre-trained on prose to 5 token budgets (cosine to each budget);
#  3. sensitivity of each to Gaussian parameter noise, on prose (old) and code (other);
#  4. the same fine-tuning on code for each: in-domain gain, out-of-domain (prose) change;
#  5. the annealing law fitted on the constant and cosine runs of the largest budget, asked to
#     predict a WSD run of that budget, against a power law in steps.
set -euo pipefail
HERE=examples/overtraining
WORK=${WORK:-work/overtraining}
RUNS=${RUNS:-runs/overtraining}
BUDGETS=(50 100 200 400 800)  # steps of 2,048 tokens: 0.1M .. 1.6M tokens
start=$SECONDS
mkdir -p "$RUNS"

if [ ! -f "$WORK/tokenizer/tokenizer.json" ]; then
  regrow tokenizer train --builtin stdlib-prose --builtin stdlib-code --vocab-size 2048 --max-documents 4000 \
    --out "$WORK/tokenizer"
fi
if [ ! -f "$WORK/data/manifest.json" ]; then
  regrow data prepare --builtin stdlib-prose --domain prose --tokenizer "$WORK/tokenizer" --out "$WORK/data" \
    --val-fraction 0.05 --no-progress
  regrow data prepare --builtin stdlib-code --domain code --tokenizer "$WORK/tokenizer" --out "$WORK/data" --no-progress
fi

common=(--set "tokenizer=$WORK/tokenizer" --set "data.path=$WORK/data")
models=()
for steps in "${BUDGETS[@]}"; do
  out="$RUNS/cosine-$steps"
  [ -f "$out/summary.json" ] || regrow train "$HERE/pretrain.yaml" "${common[@]}" --set "out_dir=$out" \
    --set "train.steps=$steps" > /dev/null
  models+=("$out/model")
done
last=400  # the annealing-law check: constant and WSD beside the cosine run of this budget
[ -f "$RUNS/constant-$last/summary.json" ] || regrow train "$HERE/pretrain.yaml" "${common[@]}" \
  --set "out_dir=$RUNS/constant-$last" --set "train.steps=$last" \
  --set schedule.name=constant --set schedule.lr_min=0.003 > /dev/null
[ -f "$RUNS/wsd-$last/summary.json" ] || regrow train "$HERE/pretrain.yaml" "${common[@]}" \
  --set "out_dir=$RUNS/wsd-$last" --set "train.steps=$last" \
  --set schedule.name=wsd --set schedule.decay_fraction=0.2 > /dev/null
echo "[overtraining] pre-training done at $((SECONDS - start)) s"

regrow sensitivity --model "${models[@]}" --data "$WORK/data" --seq-len 128 --max-tokens 16384 \
  --gamma 0.5 1 2 --seeds 3 --plot "$RUNS/sensitivity.png" --out "$RUNS/sensitivity.json"
regrow probe --model "${models[@]}" --data "$WORK/data" --finetune code --steps 100 --lr 0.003 --warmup-steps 10 \
  --batch-size 16 --seq-len 128 --eval-tokens 16384 --plot "$RUNS/probe.png" --out "$RUNS/probe.json"
regrow fit --law annealing --runs "$RUNS/constant-$last" "$RUNS/cosine-$last" --domain prose \
  --min-step 50 --predict "$RUNS/wsd-$last" --plot "$RUNS/annealing.png" --out "$RUNS/annealing.json"
regrow fit --law data --runs "$RUNS/cosine-${BUDGETS[-1]}" --domain prose --plot "$RUNS/data_law.png"
echo "[overtraining] done in $((SECONDS - start)) s; figures and JSON under $RUNS"
