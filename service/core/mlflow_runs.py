"""The job option ``mlflow`` (issue 22): when the job succeeds, its worker logs it to an MLflow tracking
URI, exactly as ``advisor export ID --mlflow URI`` does from a client: both run the one logging core,
:func:`advisor_client.mlflow_log.log_job` (why it lives in the client package: that module's docstring).
The worker hands it what the HTTP API would answer, read from its own database: the request, the stored
report, the recommendation at each of the job's δ (as ``GET …/recommendation`` answers it), the plot
(:func:`redundancy.plots.render`) and every method's artifact (:mod:`service.core.artifacts`).

**Never the job's outcome.** Logging runs after the success is committed (:func:`log_succeeded`, called
by :mod:`workers.runner`), and whatever goes wrong there (MLflow missing, an unreachable server, a
refused store) leaves the job succeeded: like a webhook delivery, the attempt's outcome is recorded
beside the job (``jobs.mlflow_run``: ``{state: pending | logged | failed, run_id, error, at}``, shown as
the job's ``mlflow``) and a failure is logged as a warning.

**Checked at submission** (:func:`option_problem`, a 422 naming ``mlflow.tracking_uri``): MLflow and the
client package must be installed on the server; the URI is ``http``/``https`` (no credentials in it;
every address the host resolves to public unless ``ADVISOR_MLFLOW_ALLOW`` allows its category, the rule
of webhook callbacks) or a local store, ``file:`` or an absolute path, under the server's data roots
(``ADVISOR_DATA_ROOTS``: a job never writes elsewhere on the server's disk). The worker checks again
before it logs.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import logging
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from service.core import artifacts, results
from service.core.config import Settings
from service.core.db import session_scope
from service.core.deltas import resolve_delta
from service.core.errors import ArtifactNotSupported, ArtifactUnavailable
from service.core.models import Job, utcnow
from service.core.paths import confinement_error
from service.core.status import JobStatus
from service.core.webhooks import Allowance, host_problem

log = logging.getLogger("service.mlflow")

DEFAULT_EXPERIMENT = "redundancy-advisor"  # advisor_client.mlflow_log.DEFAULT_EXPERIMENT (the client is optional)
PENDING, LOGGED, FAILED, SKIPPED = "pending", "logged", "failed", "skipped"
FIELD = "mlflow.tracking_uri"
CODE = "mlflow_refused"
UNAVAILABLE = "mlflow_unavailable"


class MlflowOption(BaseModel):
    """Where the job logs its run when it succeeds."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str = Field(
        min_length=1, max_length=2048,
        description="An MLflow tracking server (`http(s)://…`; public addresses unless the server's "
        "ADVISOR_MLFLOW_ALLOW allows others) or a local store (`file:///…` or an absolute path) under the "
        "server's data roots.",
        examples=["https://mlflow.example.com", "file:///data/mlruns"],
    )
    experiment: str = Field(DEFAULT_EXPERIMENT, min_length=1, max_length=500, description="MLflow experiment name.")


# ---------------------------------------------------------------------------------------------
# at submission (and again before logging)


def unavailable() -> str | None:
    """Why this server cannot log to MLflow (a sentence), or None when it can."""
    if importlib.util.find_spec("mlflow") is None:
        return ("this server cannot log to MLflow: MLflow is not installed (the server's optional extra "
                "`mlflow`, mlflow-skinny)")
    if importlib.util.find_spec("advisor_client") is None:
        return ("this server cannot log to MLflow: the advisor-client package, which holds the logging, is not "
                "installed (pip install './client[mlflow]')")
    return None


def tracking_uri_problem(uri: str, settings: Settings) -> str | None:
    """Why a job may not log to ``uri`` (a sentence), or None when it may. Resolves an http(s) host."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URI ({exc})"
    scheme = parts.scheme.lower()
    if scheme == "" or scheme == "file":
        if scheme == "file" and parts.netloc not in ("", "localhost"):
            return "a file: store must be on this server (file:///absolute/path)"
        return confinement_error(unquote(parts.path) if scheme else uri, settings.allowed_roots,
                                 show_roots=settings.show_data_roots)
    if scheme not in ("http", "https"):
        return (f"the scheme {scheme!r} is not supported here: an http(s) tracking server, or a local store "
                "(file:///absolute/path) under the server's data roots")
    host = parts.hostname
    if not host:
        return "the URI has no host"
    if parts.username or parts.password:
        return "credentials in the URI are not allowed (the server's MLFLOW_TRACKING_* settings carry them)"
    return host_problem(host, port or (443 if scheme == "https" else 80), Allowance.parse(settings.mlflow_allow),
                        "a tracking server must be public", "ADVISOR_MLFLOW_ALLOW")


def option_problem(option: Any, settings: Settings) -> tuple[str, str, str] | None:
    """(field, reason, code) when the job's ``mlflow`` option (raw JSON) cannot be honoured, else None."""
    if not isinstance(option, dict) or not isinstance(option.get("tracking_uri"), str):
        return None  # its shape is pydantic's to report
    reason = unavailable()
    if reason is not None:
        return "mlflow", reason, UNAVAILABLE
    reason = tracking_uri_problem(option["tracking_uri"], settings)
    if reason is not None:
        return FIELD, reason, CODE
    return None


def shown_state(job: Job) -> dict[str, Any] | None:
    """The job's ``mlflow`` as the API shows it: the option and the outcome so far. A job that ended
    without succeeding is ``skipped`` (it logs on success only)."""
    if not job.mlflow:
        return None
    run = dict(job.mlflow_run or {"state": PENDING})
    if run.get("state") == PENDING and job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        run["state"] = SKIPPED
    return {**job.mlflow, "state": run.get("state"), "run_id": run.get("run_id"), "error": run.get("error"),
            "logged_at": run.get("at")}


# ---------------------------------------------------------------------------------------------
# on success (the worker)


def log_succeeded(settings: Settings, job_id: str) -> str | None:
    """Log a succeeded job that asked for it to MLflow; returns the run id (None: not asked, or it failed).
    Never raises: the outcome is recorded on the job, a failure also logged as a warning."""
    try:
        with session_scope(settings.db_url) as s:
            job = s.get(Job, job_id)
            if job is None or not job.mlflow or job.status != JobStatus.SUCCEEDED:
                return None
            option = MlflowOption.model_validate(job.mlflow)
            request = dict(job.request)
            report = results.load_report(s, job)
            recs = [recommendation_payload(s, job, d) for d in (job.request.get("deltas") or [None])]
        reason = unavailable() or tracking_uri_problem(option.tracking_uri, settings)
        if reason is not None:
            raise RuntimeError(reason)
        from advisor_client.mlflow_log import log_job  # lazy: optional (the client package and MLflow)

        from redundancy.plots import render  # lazy: matplotlib, for the jobs that log only

        def plot(path: Path) -> Path:
            path.write_bytes(render(report, "png"))
            return path

        run_id = log_job(tracking_uri=option.tracking_uri, experiment=option.experiment, job_id=job_id,
                         request=request, report=report, recommendations=recs, plot=plot,
                         artifact=lambda path, delta, method, fmt: _artifact(settings, job_id, path, delta, method,
                                                                             fmt))
    except Exception as exc:  # noqa: BLE001 - a failure to log never fails the job: it is recorded
        error = f"{type(exc).__name__}: {exc}"[:2000]
        log.warning("job %s: logging to MLflow failed (the job stays succeeded): %s", job_id, error)
        _record(settings, job_id, FAILED, None, error)
        return None
    _record(settings, job_id, LOGGED, run_id, None)
    log.info("job %s logged to MLflow: run %s", job_id, run_id)
    return run_id


def recommendation_payload(session: Any, job: Job, delta: float | None) -> dict[str, Any]:
    """The recommendation at ``delta`` (None: the job's first) as ``GET /v1/jobs/{id}/recommendation``
    answers it (``RecommendationOut``: the answer and the job's id, model, weights and dataset)."""
    rec = results.recommend_for(session, job, delta=resolve_delta(delta, job.request.get("deltas")),
                                delta_mode=None, criterion=None)
    return {**rec.model_dump(mode="json", by_alias=True), "job_id": job.id, "model": job.model_name,
            "weights": str(job.request.get("model", {}).get("weights", "")), "dataset": job.dataset_spec}


def _artifact(settings: Settings, job_id: str, path: Path, delta: float, method: str, fmt: str) -> bool:
    """Build (or find) the artifact as ``GET …/artifact`` would and copy it to ``path``; False where the
    API answers 409/422 (no head for the probe, no statistics kept, no ONNX support), as the client skips."""
    try:
        with session_scope(settings.db_url) as s:
            job = s.get(Job, job_id)
            if job is None:
                raise RuntimeError("the job was deleted while it was being logged")
            plan = artifacts.plan_artifact(s, job, delta=delta, delta_mode=None, criterion=None, method=method,
                                           fmt=fmt)
        built = artifacts.materialise(plan, settings.stats_cache_dir)
    except (ArtifactNotSupported, ArtifactUnavailable):
        return False
    shutil.copyfile(built, path)
    return True


def _record(settings: Settings, job_id: str, state: str, run_id: str | None, error: str | None) -> None:
    try:
        with session_scope(settings.db_url) as s:
            job = s.get(Job, job_id)
            if job is not None:
                at: dt.datetime = utcnow()
                job.mlflow_run = {"state": state, "run_id": run_id, "error": error, "at": at.isoformat()}
    except Exception:  # noqa: BLE001 - the database is gone too: the warning above is what remains
        log.warning("job %s: could not record the MLflow outcome %s", job_id, state, exc_info=True)
