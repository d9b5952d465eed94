"""`advisor export ID --mlflow URI`: a finished job logged to an MLflow tracking server (optional extra
`mlflow`: `pip install './client[mlflow]'`; real MLflow, its own client library).

One run per export, in the experiment `--experiment` (default `redundancy-advisor`), tagged with the
job id, model and dataset:

- **params**: the job's request, flattened (`dataset.spec`, `fractions`, …; long values truncated to
  MLflow's limit);
- **metrics**: `full_accuracy`; the curve as step series (`curve.<kind>.accuracy_mean`, step = k);
  per recommendation at each δ the job asked for (`d<δ>.k`, `.fraction`, `.accuracy`, `.gini_change`,
  `.worst_class_change`, `.verdict_k`) and each method's `d<δ>.<method>.k` / `.score`;
- **tables**: `tables/curve.json` (every curve point), `tables/methods_d<δ>.json` (methods side by side),
  and each recommendation as `recommendations/d<δ>.json`;
- **artifacts**: `plots/plot.png`, and per method of each recommendation its `.safetensors` and (when the
  server has ONNX support) `.onnx` under `artifacts/`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from advisor_client.client import Advisor
from advisor_client.errors import Conflict, InvalidRequest

PARAM_MAX = 500  # MLflow keeps up to 6,000 characters per param; a config value this long is noise
DEFAULT_EXPERIMENT = "redundancy-advisor"


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"a": {"b": 1}}` → `{"a.b": "1"}`; lists as JSON; values cut to `PARAM_MAX` characters."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten(value, f"{name}.")
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            out[name] = text[:PARAM_MAX]
    return out


def _tag(delta: float) -> str:
    return f"d{delta:g}"


def export_to_mlflow(
    advisor: Advisor, job_id: str, tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT
) -> str:
    """Log the job to `tracking_uri`; returns the MLflow run id."""
    import mlflow  # lazy: the optional extra `mlflow`

    job = advisor.job(job_id)
    info = job.info
    report = job.report()
    recs = job.recommendations()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"{info.request.get('model', {}).get('name', 'model')}-{job_id[:8]}") as run, \
            tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags({"advisor.job_id": job_id, "advisor.model": report["model"]["name"],
                         "advisor.dataset": report["dataset"]["spec"], "advisor.layer": report["model"]["layer"]})
        mlflow.log_params(flatten(info.request))
        mlflow.log_metric("full_accuracy", float(report["full_accuracy"]))
        for s in [*report.get("summary", []), *report.get("baselines", [])]:
            mlflow.log_metric(f"curve.{s.get('kind', 'random')}.accuracy_mean", float(s["accuracy_mean"]),
                              step=int(s["k"]))
        curve = report["curve"]
        mlflow.log_table({key: [p.get(key) for p in curve] for key in ("kind", "k", "fraction", "seed", "accuracy")},
                         "tables/curve.json")
        for rec in recs:
            tag = _tag(rec.delta)
            f = rec.fairness
            mlflow.log_metrics({f"{tag}.k": rec.k, f"{tag}.fraction": rec.fraction, f"{tag}.accuracy": rec.accuracy,
                                f"{tag}.gini_change": f.gini_change, f"{tag}.worst_class_change": f.worst_class_change})
            if rec.verdict is not None:
                mlflow.log_metric(f"{tag}.verdict_k", rec.verdict.k)
                mlflow.set_tag(f"advisor.{tag}.verdict", rec.verdict.method)
            for m in rec.methods:
                mlflow.log_metrics({f"{tag}.{m.method}.k": m.k, f"{tag}.{m.method}.score": m.score})
            if rec.methods:
                mlflow.log_table({"method": [m.method for m in rec.methods], "k": [m.k for m in rec.methods],
                                  "score": [m.score for m in rec.methods],
                                  "worst_class_change": [m.fairness.worst_class_change for m in rec.methods],
                                  "serving": [m.serving for m in rec.methods]}, f"tables/methods_{tag}.json")
            mlflow.log_dict(rec.model_dump(mode="json", by_alias=True), f"recommendations/{tag}.json")
            for method in [m.method for m in rec.methods] or ["random_subset"]:
                _log_artifacts(job, Path(tmp), rec.delta, method)
        mlflow.log_artifact(str(job.plot(Path(tmp) / "plot.png")), "plots")
        return str(run.info.run_id)


def _log_artifacts(job: Any, tmp: Path, delta: float, method: str) -> None:
    import mlflow  # lazy: the optional extra `mlflow`

    for fmt in ("safetensors", "onnx"):
        path = tmp / f"{_tag(delta)}_{method}.{fmt}"
        try:
            job.artifact(path, delta, method=method, fmt=fmt)
        except (InvalidRequest, Conflict):  # no head (logistic), no stats kept, or no onnx extra: skip it
            continue
        mlflow.log_artifact(str(path), "artifacts")
