# Redundancy Advisor: one image for the API, the worker and the one-shot migration.
# CPU build (default):   docker build -t redundancy-advisor .
# CUDA build (workers):  docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124 \
#                          -t redundancy-advisor:cuda .
# Lean build (timm images only): docker build --build-arg EXTRAS= -t redundancy-advisor:lean .
FROM python:3.11-slim AS base

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Optional parts (pyproject.toml extras): text = hf: encoders and text: datasets, onnx = ONNX artifacts,
# mlflow = the job option `mlflow` (which also needs the client package, installed below), s3 = an S3/MinIO store,
# otel = OpenTelemetry traces (ADVISOR_OTEL_ENDPOINT).
ARG EXTRAS=text,onnx,mlflow,s3,otel
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATA_DIR=/data \
    HF_HOME=/data/hf \
    TORCH_HOME=/data/torch

RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Torch first (the big layer), from the index that matches the target (CPU or CUDA).
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch>=2.2,<2.15" "torchvision>=0.17,<0.30"

COPY pyproject.toml README.md ./
COPY redundancy ./redundancy
COPY service ./service
COPY workers ./workers
COPY migrations ./migrations
COPY client ./client
RUN pip install ".${EXTRAS:+[$EXTRAS]}" ./client && useradd --create-home --uid 10001 advisor && mkdir -p /data && chown advisor /data

USER advisor
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
# Auth is on by default: on 0.0.0.0 `advisor serve` refuses to start unless ADVISOR_API_KEYS is set.
CMD ["advisor", "serve", "--host", "0.0.0.0", "--port", "8000"]
