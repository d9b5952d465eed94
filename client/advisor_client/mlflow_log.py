"""The one way a finished job is logged to MLflow, shared by `advisor export ID --mlflow URI` (the client,
:mod:`advisor_client.mlflow_export`, which reads the job over HTTP) and the job option `mlflow` (the
server's worker, :mod:`service.core.mlflow_runs`, which reads it from its own database when the job
succeeds). Real MLflow (`mlflow-skinny`, the optional extra `mlflow`), imported lazily.

**Why it lives here.** The import contracts (pyproject.toml ``[tool.importlinter]``) keep the client a
separate distribution that imports neither the engine nor the service, so the core cannot live in
`redundancy` or `service`; the service and the workers may import the client package, so the core
lives in it, as a module that imports nothing of the client's HTTP side (no `Advisor`, no requests made):
plain JSON in, an MLflow run out. (The package's `__init__` still loads httpx, a server dependency too,
and MLflow loads its own web stack while it logs; the worker imports this module lazily, when a job
asks to be logged, so what a worker imports at start stays as tests/service/test_service_architecture.py
checks.) The server needs the client package installed for the job option (`pip install
'./client[mlflow]'`); without it the option is refused at submission. Both callers hand it the same
shapes the HTTP API answers: the job's
normalised request, the report as ``GET /v1/jobs/{id}/result`` serves it, and each recommendation at
the job's own δ as ``GET /v1/jobs/{id}/recommendation`` serves it; plus two callables that write the
plot and an artifact file.

One run per call, in ``experiment`` (default `redundancy-advisor`), tagged with the job id, model,
dataset and layer:

- **params**: the job's request, flattened (`dataset.spec`, `fractions`, …; long values truncated to
  `PARAM_MAX` characters);
- **metrics**: `full_accuracy`; the curve as step series (`curve.<kind>.accuracy_mean`, step = k);
  per recommendation (`d<δ>.k`, `.fraction`, `.accuracy`, `.gini_change`, `.worst_class_change`,
  `.verdict_k`) and each method's `d<δ>.<method>.k` / `.score`;
- **tables**: `tables/curve.json` (every curve point), `tables/methods_d<δ>.json` (methods side by side),
  and each recommendation as `recommendations/d<δ>.json`;
- **artifacts**: `plots/plot.png`, and per method of each recommendation its `.safetensors` and `.onnx`
  under `artifacts/` (those the server can build: none for a logistic job, no `.onnx` without the
  server's `onnx` extra).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

PARAM_MAX = 500  # MLflow keeps up to 6,000 characters per param; a config value this long is noise
DEFAULT_EXPERIMENT = "redundancy-advisor"
ARTIFACT_FORMATS = ("safetensors", "onnx")

PlotFn = Callable[[Path], Path]
"""Writes the job's PNG plot to the path it is given; returns the path."""
ArtifactFn = Callable[[Path, float, str, str], bool]
"""``(path, delta, method, fmt)``: writes that artifact to ``path`` and returns True, or returns False when
the server cannot build it (no head for the probe, no statistics kept, no ONNX support): it is skipped."""


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"a": {"b": 1}}` → `{"a.b": "1"}`; lists as JSON; values cut to `PARAM_MAX` characters."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= flatten(value, f"{name}.")
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            out[name] = text[:PARAM_MAX]
    return out


def delta_tag(delta: float) -> str:
    """`d0.05`: how a δ prefixes its metrics and names its files."""
    return f"d{delta:g}"


def log_job(
    *,
    tracking_uri: str,
    experiment: str | None,
    job_id: str,
    request: Mapping[str, Any],
    report: Mapping[str, Any],
    recommendations: Sequence[Mapping[str, Any]],
    plot: PlotFn,
    artifact: ArtifactFn,
) -> str:
    """Log the job to ``tracking_uri`` as one MLflow run; returns its run id. Raises what MLflow raises
    (an unreachable server, a refused store) and ImportError without MLflow: the caller decides."""
    import mlflow  # lazy: the optional extra `mlflow`

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment or DEFAULT_EXPERIMENT)
    model = request.get("model") or {}
    with mlflow.start_run(run_name=f"{model.get('name', 'model')}-{job_id[:8]}") as run, \
            tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags({"advisor.job_id": job_id, "advisor.model": report["model"]["name"],
                         "advisor.dataset": report["dataset"]["spec"], "advisor.layer": report["model"]["layer"]})
        mlflow.log_params(flatten(request))
        mlflow.log_metric("full_accuracy", float(report["full_accuracy"]))
        for s in [*report.get("summary", []), *report.get("baselines", [])]:
            mlflow.log_metric(f"curve.{s.get('kind', 'random')}.accuracy_mean", float(s["accuracy_mean"]),
                              step=int(s["k"]))
        curve = report["curve"]
        mlflow.log_table({key: [p.get(key) for p in curve] for key in ("kind", "k", "fraction", "seed", "accuracy")},
                         "tables/curve.json")
        for rec in recommendations:
            _log_recommendation(rec, Path(tmp), artifact)
        mlflow.log_artifact(str(plot(Path(tmp) / "plot.png")), "plots")
        return str(run.info.run_id)


def _log_recommendation(rec: Mapping[str, Any], tmp: Path, artifact: ArtifactFn) -> None:
    import mlflow  # lazy: the optional extra `mlflow`

    delta = float(rec["delta"])
    tag = delta_tag(delta)
    fairness = rec["fairness"]
    mlflow.log_metrics({f"{tag}.k": rec["k"], f"{tag}.fraction": rec["fraction"], f"{tag}.accuracy": rec["accuracy"],
                        f"{tag}.gini_change": fairness["gini_change"],
                        f"{tag}.worst_class_change": fairness["worst_class_change"]})
    verdict = rec.get("verdict")
    if verdict:
        mlflow.log_metric(f"{tag}.verdict_k", verdict["k"])
        mlflow.set_tag(f"advisor.{tag}.verdict", verdict["method"])
    methods = list(rec.get("methods") or [])
    for m in methods:
        mlflow.log_metrics({f"{tag}.{m['method']}.k": m["k"], f"{tag}.{m['method']}.score": m["score"]})
    if methods:
        mlflow.log_table({"method": [m["method"] for m in methods], "k": [m["k"] for m in methods],
                          "score": [m["score"] for m in methods],
                          "worst_class_change": [m["fairness"]["worst_class_change"] for m in methods],
                          "serving": [m["serving"] for m in methods]}, f"tables/methods_{tag}.json")
    mlflow.log_dict(dict(rec), f"recommendations/{tag}.json")
    for method in [m["method"] for m in methods] or ["random_subset"]:
        for fmt in ARTIFACT_FORMATS:
            path = tmp / f"{tag}_{method}.{fmt}"
            if artifact(path, delta, method, fmt):
                mlflow.log_artifact(str(path), "artifacts")
