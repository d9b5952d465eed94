#!/usr/bin/env bash
# The demo: no Postgres, no Redis. Starts the embedded service on a free port in a temp data dir,
# analyses EfficientNet-Lite0 (offline ImageNet weights) × scikit-learn digits, polls it printing
# stage/progress, prints the answer at relative δ = 0.05 with its fairness cost, then a table for
# other δ. Digits are 8 × 8 px: they are analysed at 64 px, not the model's 224 px, which would add
# no information and 12× the extraction time (see service/demo.py and the README).
#   scripts/demo.sh            # the real demo (about 40 CPU-seconds: 35 s on 2 idle cores)
#   scripts/demo.sh --keep     # then leave the server running and print the job's page in the web UI
#   scripts/demo.sh --quick    # a seconds-long job with random weights
#   scripts/demo.sh --data-dir .advisor-demo   # keep the data (feature cache makes reruns fast)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
if ! command -v advisor >/dev/null 2>&1; then
  echo "installing the package (pip install -e .) ..." >&2
  pip install -q -e .
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
unset DATABASE_URL BROKER_URL
exec advisor demo "$@"
