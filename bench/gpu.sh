#!/usr/bin/env bash
# The device check for a lent GPU machine (never part of CI): extraction throughput with AMP against
# fp32 eager, and the probe grid on the GPU against the CPU. Writes $OUT/device.json when OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e . 2>/dev/null || true
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv || true
python3 bench/device.py --json "${OUT:-/tmp}/device.json"
