#!/usr/bin/env bash
# The main-job demo: no Postgres, no Redis. Starts the embedded service on a free port in a temp data
# dir, submits the bundled demo job (EfficientNet-Lite0 ImageNet weights × digits), polls it printing
# stage/progress, prints the recommendation for δ = 0.01 (absolute and relative) and its fairness
# cost, and stops the server.
#   scripts/demo.sh            # the real demo (about a minute or two on 2 CPU cores)
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
