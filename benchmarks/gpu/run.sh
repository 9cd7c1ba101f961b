#!/usr/bin/env bash
# GPU figures in one command: bash benchmarks/gpu/run.sh [--dry-run] [--out DIR]
#
# For the lent H200 (torch, transformers, peft, accelerate installed; trl, datasets, torchao not; no
# network): wheels fetched beforehand with benchmarks/gpu/fetch-wheels.sh into benchmarks/gpu/wheels
# (ignored by git; carried to the machine) are installed into /tmp first, posttrain runs from src/.
# About 5-8 minutes on one H200; `--dry-run` (CPU, tiny model, about a minute) is what the tests run.
set -euo pipefail
cd "$(dirname "$0")/../.."
site="$PWD/src"
dry_run=0
for arg in "$@"; do [[ $arg == --dry-run ]] && dry_run=1; done
# The wheels are the GPU machine's (Python 3.12); a dry run uses the packages already installed.
if [[ $dry_run == 0 ]] && compgen -G "benchmarks/gpu/wheels/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/posttrain-site benchmarks/gpu/wheels/*.whl
  site="/tmp/posttrain-site:$site"
fi
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
exec python3 benchmarks/gpu/bench_gpu.py "$@"
