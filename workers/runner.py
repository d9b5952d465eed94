"""Run one job: claim it, call the engine, report progress, persist the result atomically.

Every write is a transition of :mod:`service.core.lifecycle` fenced by this run's attempt number:

* :func:`~service.core.lifecycle.claim` (queued → running); a duplicate message finds nothing to claim;
* an uploaded dataset (``upload:<id>``) reaches the engine as ``embeddings:<local file>``
  (:func:`~service.core.uploads.for_engine`), its report says ``upload:<id>`` again;
* :class:`~workers.monitor.JobMonitor` heart-beats and brings back the cancel flag;
* :func:`~service.core.artifacts.keep_stats` writes the layer statistics to the artifact store first;
  :func:`~service.core.lifecycle.succeed` then writes the report, its curve, its recommendations, the
  statistics reference and the status in one transaction; :func:`~service.core.lifecycle.fail` and
  :func:`~service.core.lifecycle.finish_cancelled` end it otherwise;
* once it has succeeded, a job submitted with the ``mlflow`` option is logged to MLflow
  (:func:`~service.core.mlflow_runs.log_succeeded`), whose failure is recorded on the job and never fails it.
"""

from __future__ import annotations

import logging
import traceback
from typing import Literal, Protocol

from celery.exceptions import SoftTimeLimitExceeded

from redundancy import AnalysisConfig, Runtime
from redundancy.errors import Cancelled, RedundancyError
from redundancy.pipeline import Analysis, run_analysis
from redundancy.progress import ProgressFn, StopFn
from service.core import artifacts, lifecycle, mlflow_runs, queries, tracing, uploads
from service.core.config import Settings
from service.core.db import session_scope
from service.core.errors import InvalidInput
from service.core.paths import path_problem
from service.core.process import known_dead, process_id
from service.core.runtime import make_runtime
from service.core.status import JobStatus
from workers.monitor import JobMonitor

log = logging.getLogger("workers.runner")

Outcome = JobStatus | Literal["skipped", "sharded"]


class AnalyzeFn(Protocol):
    """Callable like :func:`redundancy.pipeline.run_analysis` (tests pass a fake engine)."""

    def __call__(
        self, config: AnalysisConfig, runtime: Runtime, progress: ProgressFn, should_stop: StopFn
    ) -> Analysis: ...


def execute_job(
    job_id: str,
    settings: Settings,
    *,
    worker_name: str | None = None,
    analyze: AnalyzeFn = run_analysis,
    shard: ShardFn | None = None,
) -> Outcome:
    """Run the job and return its final status ("skipped" when there was nothing to claim or the job
    changed hands while it ran; "sharded" when `shard` took it over: its shards and their reduce run
    as other tasks, see :mod:`workers.shards`)."""
    worker_name = worker_name or process_id()
    with session_scope(settings.db_url) as s:
        owner = queries.running_owner(s, job_id)  # a redelivered message: is the job's worker gone?
        dead = owner if known_dead(owner) else None
        claimed = lifecycle.claim(s, job_id, worker=worker_name, stale_after=settings.stale_after,
                                  dead_owner=dead)
    if claimed is None:
        log.info("job %s: nothing to claim (cancelled, finished, deleted or running elsewhere)", job_id)
        return "skipped"
    refused = _path_refusal(claimed.request, settings)
    if refused is not None:  # checked at submission too; a symlink may have been swapped since
        with session_scope(settings.db_url) as s:
            lifecycle.fail(s, job_id, claimed.attempt, code=refused[2], message=refused[1], field=refused[0])
        return JobStatus.FAILED
    if shard is not None:
        try:
            with JobMonitor(settings, job_id, claimed.attempt):  # heart-beats while the data is loaded
                config = uploads.for_engine(settings, job_id, AnalysisConfig.model_validate(claimed.request))
                sharded = shard(job_id, claimed.attempt, config)
            if sharded:
                return "sharded"
        except Exception as exc:  # noqa: BLE001 - bad input found while planning: the job fails like any other
            return run_claimed(job_id, claimed.attempt, claimed.request, settings, _raise(exc))
    return run_claimed(job_id, claimed.attempt, claimed.request, settings, analyze)


def _path_refusal(request: dict, settings: Settings) -> tuple[str, str, str] | None:
    """(field, message, code) when the job names a path outside the data roots, as the worker sees the disk
    now; a request the config model refuses is left to `run_claimed`, which fails it."""
    try:
        config = AnalysisConfig.model_validate(request)
        problem = path_problem(config, settings.allowed_roots, show_roots=settings.show_data_roots)
    except (ValueError, RedundancyError):
        return None
    if problem is None:
        return None
    return problem.field, str(InvalidInput(problem.field, problem.reason)), problem.code


class ShardFn(Protocol):
    """Plans and sends a job's shards when it is large enough; False: run it here, unsharded."""

    def __call__(self, job_id: str, attempt: int, config: AnalysisConfig) -> bool: ...


def _raise(exc: Exception) -> AnalyzeFn:
    def analyze(*_args: object, **_kwargs: object) -> Analysis:
        raise exc

    return analyze


def run_claimed(
    job_id: str, attempt: int, request: dict, settings: Settings, analyze: AnalyzeFn
) -> Outcome:
    """Run a job this worker holds under `attempt` with `analyze`, and finish it: succeed, fail or
    cancelled, each fenced by the attempt."""
    monitor = JobMonitor(settings, job_id, attempt)

    def fail(code: str, message: str, field: str | None = None) -> Outcome:
        with session_scope(settings.db_url) as s:
            lifecycle.fail(s, job_id, attempt, code=code, message=message, field=field,
                           stage_timings=monitor.timings)
        return JobStatus.FAILED

    try:
        submitted = AnalysisConfig.model_validate(request)
        with monitor:
            config = uploads.for_engine(settings, job_id, submitted)  # upload:<id> → embeddings:<local file>
            analysis = analyze(config, make_runtime(settings), progress=monitor.on_progress,
                               should_stop=monitor.should_stop)
            uploads.as_submitted(analysis.report, submitted)
    except Cancelled:
        if monitor.timed_out:
            return fail(*classify(SoftTimeLimitExceeded()))
        with session_scope(settings.db_url) as s:
            lifecycle.finish_cancelled(s, job_id, attempt, monitor.timings)
        return JobStatus.CANCELLED
    except RedundancyError as exc:
        return fail(exc.code, exc.message, exc.field)
    except Exception as exc:  # noqa: BLE001 - everything else is our bug or the environment's
        log.error("job %s failed: %s", job_id, "".join(traceback.format_exception(exc)))
        return fail(*classify(exc))
    with session_scope(settings.db_url) as s:
        if monitor.cancel.is_set() and not lifecycle.is_held(s, job_id, attempt):
            return "skipped"
    with tracing.span("store", job_id=job_id):  # the statistics, then the result in one transaction
        kept = artifacts.keep_stats(
            settings.artifact_path, job_id, attempt, analysis,
            remote=settings.store_root if settings.store_is_remote else None,
        )  # before the commit
        try:
            with session_scope(settings.db_url) as s:
                stored = lifecycle.succeed(s, job_id, attempt, analysis.report, monitor.timings, kept)
        except Exception as exc:  # noqa: BLE001 - nothing of the result was committed
            artifacts.discard(kept)
            log.error("job %s: storing the result failed: %s", job_id, "".join(traceback.format_exception(exc)))
            return fail(
                "result_write_failed",
                f"The analysis finished but its result could not be stored: {type(exc).__name__}: {exc}"[:2000],
            )
    if not stored:
        artifacts.discard(kept)
        return "skipped"
    mlflow_runs.log_succeeded(settings, job_id)  # the job's `mlflow` option; never fails the job
    return JobStatus.SUCCEEDED


def classify(exc: BaseException) -> tuple[str, str]:
    """(error code, message) for an exception the engine did not classify itself."""
    if isinstance(exc, SoftTimeLimitExceeded):
        return "time_limit_exceeded", "The job ran past ADVISOR_TASK_SOFT_TIME_LIMIT and was stopped."
    if isinstance(exc, MemoryError):
        return "out_of_memory", "The worker ran out of memory; try a smaller batch_size or dataset cap."
    name = type(exc).__name__
    if "OutOfMemory" in name:
        return "out_of_memory", f"{name}: {exc}"[:2000]
    return "internal_error", f"{name}: {exc}"[:2000]
