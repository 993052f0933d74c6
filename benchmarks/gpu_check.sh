#!/usr/bin/env bash
# regrow's GPU check in one call: the GPU tests and the GPU benchmarks, one summary table.
# Runs regrow from this source tree on the machine's own Python (no install, no network);
# every package regrow needs must already be there (torch, transformers, accelerate, ...).
#   bash benchmarks/gpu_check.sh [--only tests,train,prune,load] [--budget-s 470] [--out DIR] [--dry-run]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false
exec "${PYTHON:-python3}" "$root/benchmarks/gpu_check.py" --python "${PYTHON:-python3}" "$@"
