#!/usr/bin/env bash
# Reward-model job on an NVIDIA GPU: SmolLM2-135M in bf16 on a few thousand synthetic pairs.
# Prints pairs/s, tokens/s and peak GPU memory. Needs torch with CUDA, transformers, trl, datasets.
#   scripts/gpu_check_reward.sh [BASE_CHECKPOINT_DIR] [PAIRS]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ] && ! python3 -c "import trl, datasets" 2>/dev/null; then
  python3 -m pip install --quiet --no-index --no-deps .whl/*.whl
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 scripts/gpu_check_reward.py --base "${1:-var/models/smollm2-135m-instruct}" --pairs "${2:-4000}"
