#!/usr/bin/env bash
# The SD3 sampler benchmark on a GPU machine with JAX (default) or PyTorch, and without TensorFlow,
# Ray or KerasCV: raywalk's KerasHub renderer against KerasHub's generate, random weights, no download.
#
# Needs keras>=3.15, a CUDA build of jax (or torch), and keras-hub 0.32.0 installed without its
# tensorflow-text requirement:
#   pip install --no-deps keras-hub==0.32.0
#   pip install absl-py numpy packaging regex rich kagglehub kagglesdk==0.1.28 sentencepiece tokenizers pyyaml
# Run from anywhere:  KERAS_BACKEND=jax bash bench/sd3_gpu.sh   (about 5 minutes on one H100/H200)
# bash bench/sd3_gpu.sh --smoke: the same checks and one tiny 32x32 run, 1 step (seconds, on a CPU too).
set -euo pipefail
if [ $# -gt 1 ] || { [ $# = 1 ] && [ "$1" != --smoke ]; }; then
  echo "usage: bash bench/sd3_gpu.sh [--smoke]" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
export KERAS_BACKEND="${KERAS_BACKEND:-jax}"
python - <<'PY'
import importlib.util, sys
missing = [m for m in ("keras", "keras_hub", "yaml") if importlib.util.find_spec(m) is None]
extra = [m for m in ("tensorflow", "ray", "keras_cv") if importlib.util.find_spec(m) is not None]
print("missing:", missing or "none", "| installed but not used:", extra or "none")
sys.exit(1 if missing else 0)
PY
run() { echo "+ $*"; timeout 900 python bench/sampler_sd3.py --no-tensorflow "$@"; }
if [ "${1:-}" = --smoke ]; then
  run --smoke
  exit
fi
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true
run --size 512 --batch 4 --steps 28 --frames 8                       # tiny model: sampler overhead only
run --config medium --size 512 --batch 4 --steps 28 --frames 8       # SD3-medium-sized MMDiT, float16
run --config medium --size 512 --batch 4 --steps 4 --frames 8 --guidance 0   # turbo-like: 4 steps, no guidance
run --config medium --size 512 --batch 1 --steps 28 --frames 4       # the tutorial's batch 1
