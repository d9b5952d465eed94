#!/usr/bin/env bash
# The check for a lent GPU machine (never part of CI): under 8 minutes, no network. Prints one
# markdown table for docs/benchmarks.md, the device named, and leaves the JSON under $OUT.
#
#   bash bench/gpu.sh            # on the GPU machine
#   bash bench/gpu.sh --smoke    # anywhere, tiny sizes (CPU when there is no GPU): proves the script runs
#
# 1. extraction ratio (end to end ÷ pure forward, bench/extract.py) for tf_efficientnet_lite0,
#    resnet50, vit_small_patch16_224 (random weights), 224 px, array data; Lite0 also from PNG files;
# 2. the probe grid (66 ridge probes, n = 50,000, d = 2,048) on the GPU against the CPU (bench/device.py);
# 3. the embedded service (`advisor serve`) answering a 10,000-image job, bundled Lite0 at 224 px,
#    from POST to recommendation (bench/service_e2e.py).
#
# The GPU image has torch, timm, numpy and scikit-learn but not the service's packages: carry them
# as wheels in .whl/ (bench/gpu_wheels.sh downloads them here); they are installed from there.
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT_DIR"
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
DEV=$($PY -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
start=$(date +%s)

if [ "$SMOKE" = 1 ]; then
  $PY bench/extract.py --quick --devices "$DEV" --json "$OUT_DIR/extract.json"
  $PY bench/device.py --quick --models "" --json "$OUT_DIR/device.json"
  $PY bench/service_e2e.py --smoke --json "$OUT_DIR/service.json"
else
  $PY bench/extract.py --devices "$DEV" --kinds array \
    --models tf_efficientnet_lite0,resnet50,vit_small_patch16_224 --json "$OUT_DIR/extract.json"
  $PY bench/extract.py --devices "$DEV" --kinds files --models tf_efficientnet_lite0 \
    --json "$OUT_DIR/extract_files.json"
  $PY bench/device.py --models "" --n 50000 --d 2048 --json "$OUT_DIR/device.json"
  $PY bench/service_e2e.py --n 10000 --json "$OUT_DIR/service.json"
fi

$PY - "$OUT_DIR" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
from pathlib import Path

out, took = Path(sys.argv[1]), sys.argv[2]
rows = [r for name in ("extract.json", "extract_files.json") if (out / name).is_file()
        for r in json.loads((out / name).read_text())]
sweeps = [r for r in rows if r.get("kind") == "sweep"]  # bench/extract.py's layer-sweep rows (issue 21)
rows = [r for r in rows if "end_to_end_img_s" in r]
dev = json.loads((out / "device.json").read_text())
svc = json.loads((out / "service.json").read_text())
g = dev["probe_grid"]
print(f"\n### On {dev['device']} (torch {dev['torch']}; bench/gpu.sh, {took} s in all)\n")
print("| what | measured | ratio |")
print("|---|---:|---:|")
for r in rows:
    print(f"| extraction, {r['model']} {r['image_size']} px, {r['kind']}, batch {r['batch']} | "
          f"{r['end_to_end_img_s']:,.0f} img/s end to end, {r['forward_img_s']:,.0f} img/s pure forward | "
          f"**{r['ratio']:.2f}** |")
for r in sweeps:
    print(f"| layer sweep ({r['layers']} layers) / one layer, {r['model']} {r['image_size']} px, {r['n']:,} images | "
          f"{r['sweep_s']:.2f} s against {r['one_layer_s']:.2f} s | **{r['ratio']:.2f}** |")
print(f"| probe grid, 66 ridge probes, n = {dev.get('n', 50000):,}, d = {dev.get('d', 2048):,} | "
      f"{g['grid_s_device']:.2f} s on {dev['device']}, {g['grid_s_cpu']:.2f} s on the CPU | **{g['ratio']:.1f}×** |")
t = ", ".join(f"{k} {v:.1f} s" for k, v in svc["timings"].items())
print(f"| service, POST → recommendation, {svc['images']:,} images, Lite0 (bundled), job on {svc['device']} | {t} | "
      f"**{svc['seconds']:.1f} s** |")
PY
