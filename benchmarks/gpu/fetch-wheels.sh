#!/usr/bin/env bash
# Fetch, here (where pip reaches a registry), the wheels benchmarks/gpu/run.sh installs on the GPU
# machine (Python 3.12, x86-64 Linux): what its image lacks, at the versions requirements/lock.txt pins,
# and torchao for the fp8 run. Into benchmarks/gpu/wheels (git-ignored), about 30 MB.
set -euo pipefail
cd "$(dirname "$0")/../.."
pin() { grep -i "^$1==" requirements/lock.txt | cut -d' ' -f1; }
packages=(
  "$(pin trl)" "$(pin transformers)" "$(pin huggingface-hub)" "$(pin tokenizers)" "$(pin peft)" "$(pin accelerate)"
  "$(pin datasets)" "$(pin dill)" "$(pin multiprocess)" "$(pin pydantic)" "$(pin pydantic-core)"
  "$(pin annotated-types)" "$(pin typing-inspection)" "$(pin typer)" "$(pin rich)" "$(pin safetensors)"
  "${TORCHAO:-torchao}"
)
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d benchmarks/gpu/wheels "${packages[@]}"
ls -la benchmarks/gpu/wheels
