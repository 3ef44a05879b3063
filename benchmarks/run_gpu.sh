#!/usr/bin/env bash
# The GPU benchmark behind the README's numbers: explain vs jax.grad, batch 32, 224x224.
# Usage: bash benchmarks/run_gpu.sh OUT_DIR   (jaxlrp on PYTHONPATH; needs jax with CUDA)
set -uo pipefail
out="${1:-out}"
mkdir -p "$out"
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python -c "import jax; print(jax.__version__, jax.devices())" | tee -a "$out/gpu.txt"
for model in resnet50 vgg16; do
  timeout 240 python benchmarks/bench_explain.py --model "$model" --batch 32 --size 224 \
    --repeats 10 --json "$out/$model.json" 2>&1 | grep -v "^WARNING" | tee "$out/$model.txt"
done
