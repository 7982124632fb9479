#!/usr/bin/env bash
# PPO job on an NVIDIA GPU: SmolLM2-135M as policy, reference, reward models and value model, in bf16,
# one iteration = 512 rollouts of up to 128 new tokens, mini-batches of 64. Prints rollout and training
# tokens/s and peak GPU memory. Needs torch with CUDA, transformers, accelerate.
#   scripts/gpu_check_policy.sh [BASE_CHECKPOINT_DIR] [more options of scripts/gpu_check_policy.py]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ] && ! python3 -c "import accelerate, transformers" 2>/dev/null; then
  python3 -m pip install --quiet --no-index --no-deps .whl/*.whl
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 scripts/gpu_check_policy.py --base "${1:-var/models/smollm2-135m-instruct}" "${@:2}"
