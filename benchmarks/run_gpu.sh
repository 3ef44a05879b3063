#!/usr/bin/env bash
# The GPU benchmark behind the README's numbers: explain vs jax.grad, batch 32, 224x224, and the
# transformers (ViT-B/16, MiniLM) with AttnLRP/CP-LRP. No network needed.
# Usage: bash benchmarks/run_gpu.sh OUT_DIR   (needs jax with CUDA, flax; torch for --zennit)
set -uo pipefail
out="${1:-out}"
mkdir -p "$out"
root="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python -c "import jax; print(jax.__version__, jax.devices())" | tee -a "$out/gpu.txt"
cd "$root"
zennit=""
python -c "import zennit, torchvision" 2>/dev/null && zennit="--zennit"
timeout 900 python -m benchmarks.run --models resnet50,vgg16,efficientnet_lite0 --batch 32 \
  --size 224 --repeats 10 $zennit --json "$out/cnn.json" --out "$out/RESULTS.md" --hlo "$out/hlo" \
  2>&1 | grep -v "^WARNING" | tee "$out/cnn.txt"
timeout 600 python -m benchmarks.run --models vit_b16,all_minilm_l6_v2 --batch 32 --repeats 10 \
  --json "$out/transformers.json" --out "$out/RESULTS.md" --hlo "$out/hlo" \
  2>&1 | grep -v "^WARNING" | tee "$out/transformers.txt"
