"""`advisor export ID --mlflow URI`: a finished job logged to an MLflow tracking server (optional extra
`mlflow`: `pip install './client[mlflow]'`; real MLflow, its own client library).

This module only reads the job over the HTTP API (its request, report, recommendation at each δ the job
asked for, plot and artifacts); what is logged, and how, is :func:`advisor_client.mlflow_log.log_job`,
the same core the server's worker runs for a job submitted with the `mlflow` option. See that module for
the run's params, metrics, tables and artifacts.
"""

from __future__ import annotations

from pathlib import Path

from advisor_client.client import Advisor, Job
from advisor_client.errors import Conflict, InvalidRequest
from advisor_client.mlflow_log import DEFAULT_EXPERIMENT, flatten, log_job

__all__ = ["DEFAULT_EXPERIMENT", "export_to_mlflow", "flatten"]

def export_to_mlflow(
    advisor: Advisor, job_id: str, tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT
) -> str:
    """Log the job to `tracking_uri`; returns the MLflow run id."""
    job = advisor.job(job_id)
    return log_job(
        tracking_uri=tracking_uri,
        experiment=experiment,
        job_id=job.id,
        request=job.info.request,
        report=job.report(),
        recommendations=[rec.model_dump(mode="json", by_alias=True) for rec in job.recommendations()],
        plot=job.plot,
        artifact=lambda path, delta, method, fmt: _artifact(job, path, delta, method, fmt),
    )


def _artifact(job: Job, path: Path, delta: float, method: str, fmt: str) -> bool:
    try:
        job.artifact(path, delta, method=method, fmt=fmt)
    except (InvalidRequest, Conflict):  # no head (logistic), no stats kept, or no onnx extra: skip it
        return False
    return True
