"""Run one job: claim it, call the engine, report progress, persist the result atomically.

* The claim is a conditional UPDATE (queued → running); a duplicate message finds nothing to claim.
* A monitor thread writes ``stage``/``progress``/``heartbeat_at`` every second while the engine runs
  (whether or not the engine reported anything new) and reads the cancel flag; the engine's
  ``should_stop`` hook just looks at a thread-safe flag, so the database sees ~1 query per second.
* The report, its curve, its recommendations and the status ``succeeded`` are written in a single
  transaction: a half-written job never looks finished.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from service.core.config import Settings
from service.db.models import Job, utcnow
from service.db.session import session_scope
from service.jobs import store_report

log = logging.getLogger("workers.runner")

AnalyzeFn = Callable[..., Any]


def _engine_analyze() -> AnalyzeFn:
    from redundancy import analyze

    return analyze


def get_analyze() -> AnalyzeFn:
    """Indirection so tests can swap the engine (``monkeypatch.setattr(runner, "get_analyze", ...)``)."""
    return _engine_analyze()


def make_runtime(settings: Settings) -> Any:
    from redundancy import Runtime

    settings.ensure_dirs()
    return Runtime(
        cache_dir=settings.cache_dir,
        data_root=settings.datasets_dir,
        allow_download=settings.allow_download,
        device=settings.device,
    )


class JobMonitor:
    """Carries progress from the engine thread to the database and the cancel flag back."""

    def __init__(self, settings: Settings, job_id: str, attempt: int, interval: float = 1.0) -> None:
        self.settings = settings
        self.job_id = job_id
        self.attempt = attempt
        self.interval = min(interval, settings.heartbeat)
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self._stage: str | None = None
        self._progress = 0.0
        self._message: str | None = None
        self._stage_started: float | None = None
        self.timings: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"job-monitor-{job_id[:8]}", daemon=True)
        # Pool-independent soft time limit (the solo pool cannot enforce Celery's): stop at the next
        # checkpoint and fail the job with time_limit_exceeded.
        self.deadline = time.monotonic() + settings.task_soft_time_limit
        self.timed_out = False

    # engine-side hooks ------------------------------------------------------------------------
    def on_progress(self, event: Any) -> None:
        now = time.monotonic()
        with self._lock:
            stage = getattr(event, "stage", None) or self._stage
            if stage != self._stage:
                if self._stage is not None and self._stage_started is not None:
                    self.timings[self._stage] = self.timings.get(self._stage, 0.0) + now - self._stage_started
                self._stage, self._stage_started = stage, now
            overall = getattr(event, "overall", None)
            if overall is not None:
                self._progress = max(self._progress, min(1.0, max(0.0, float(overall))))
            msg = getattr(event, "message", None)
            self._message = (msg or None) if msg is not None else self._message

    def should_stop(self) -> bool:
        return self.cancel.is_set()

    # lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> JobMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            if self._stage is not None and self._stage_started is not None:
                self.timings[self._stage] = self.timings.get(self._stage, 0.0) + (
                    time.monotonic() - self._stage_started
                )
                self._stage_started = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if time.monotonic() > self.deadline and not self.timed_out:
                self.timed_out = True
                self.cancel.set()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - a DB hiccup must not kill the job
                log.warning("progress write for job %s failed", self.job_id, exc_info=True)

    def flush(self) -> None:
        with self._lock:
            values: dict[str, Any] = {
                "progress": self._progress,
                "heartbeat_at": utcnow(),
                "message": (self._message or "")[:2000] or None,
            }
            if self._stage is not None:
                values["stage"] = self._stage
            timings = dict(self.timings)
            if self._stage is not None and self._stage_started is not None:
                timings[self._stage] = timings.get(self._stage, 0.0) + time.monotonic() - self._stage_started
            values["stage_timings"] = timings
        with session_scope(self.settings.db_url) as s:
            s.execute(
                sa.update(Job)
                .where(Job.id == self.job_id, Job.status == "running", Job.attempts == self.attempt)
                .values(**values)
            )
            row = s.execute(
                sa.select(Job.status, Job.cancel_requested, Job.attempts).where(Job.id == self.job_id)
            ).first()
        if row is None or row.cancel_requested or row.status != "running" or row.attempts != self.attempt:
            self.cancel.set()


def claim(settings: Settings, job_id: str, worker_name: str) -> tuple[int, dict[str, Any]] | None:
    """queued → running (or take over a running job whose worker stopped heart-beating)."""
    now = utcnow()
    stale = now - _seconds(settings.stale_after)
    with session_scope(settings.db_url) as s:
        res = s.execute(
            sa.update(Job)
            .where(
                Job.id == job_id,
                sa.or_(
                    Job.status == "queued",
                    sa.and_(
                        Job.status == "running", Job.heartbeat_at < stale, Job.cancel_requested.is_(False)
                    ),
                ),
            )
            .values(
                status="running",
                started_at=now,
                heartbeat_at=now,
                attempts=Job.attempts + 1,
                worker=worker_name[:255],
                stage=None,
                progress=0.0,
                message=None,
            )
        )
        if res.rowcount == 0:  # type: ignore[attr-defined]
            return None
        row = s.execute(sa.select(Job.attempts, Job.request).where(Job.id == job_id)).one()
        return int(row.attempts), dict(row.request)


def _seconds(x: float) -> Any:
    import datetime as dt

    return dt.timedelta(seconds=x)


def _finish(settings: Settings, job_id: str, attempt: int, **values: Any) -> bool:
    with session_scope(settings.db_url) as s:
        res = s.execute(
            sa.update(Job)
            .where(Job.id == job_id, Job.status == "running", Job.attempts == attempt)
            .values(finished_at=utcnow(), heartbeat_at=utcnow(), **values)
        )
        return bool(res.rowcount)  # type: ignore[attr-defined]


def _succeed(settings: Settings, job_id: str, attempt: int, report: Any, timings: dict[str, float]) -> bool:
    """Result rows and the status flip in ONE transaction."""
    with session_scope(settings.db_url) as s:
        q = sa.select(Job).where(Job.id == job_id)
        if s.get_bind().dialect.name != "sqlite":
            q = q.with_for_update()
        job = s.scalar(q)
        if job is None or job.status != "running" or job.attempts != attempt:
            log.warning("job %s changed hands or was deleted; dropping its result", job_id)
            return False
        store_report(s, job_id, report)
        engine_timings = getattr(report, "timings", None) or {}
        job.status = "succeeded"
        job.stage = "done"
        job.progress = 1.0
        job.message = None
        job.finished_at = utcnow()
        job.heartbeat_at = job.finished_at
        job.stage_timings = {k: float(v) for k, v in (engine_timings or timings).items()}
    return True


def execute_job(
    job_id: str,
    settings: Settings,
    *,
    worker_name: str | None = None,
    analyze: AnalyzeFn | None = None,
) -> str:
    """Run the job and return its final status ("skipped" when there was nothing to claim)."""
    worker_name = worker_name or f"{socket.gethostname()}:{os.getpid()}"
    claimed = claim(settings, job_id, worker_name)
    if claimed is None:
        log.info("job %s: nothing to claim (cancelled, finished, deleted or running elsewhere)", job_id)
        return "skipped"
    attempt, request = claimed
    from redundancy.errors import Cancelled, RedundancyError

    monitor = JobMonitor(settings, job_id, attempt)

    def fail(code: str, message: str, field: str | None = None) -> str:
        _finish(settings, job_id, attempt, status="failed", error_code=code, error_message=message,
                error_field=field, stage_timings=monitor.timings)
        return "failed"

    try:
        from redundancy import AnalysisConfig

        config = AnalysisConfig.model_validate(request)
        fn = analyze or get_analyze()
        with monitor:
            report = fn(
                config, make_runtime(settings), progress=monitor.on_progress, should_stop=monitor.should_stop
            )
    except Cancelled:
        if monitor.timed_out:
            return fail(*_classify(_soft_limit_error()))
        _finish(
            settings,
            job_id,
            attempt,
            status="cancelled",
            message="cancelled while running",
            stage_timings=monitor.timings,
        )
        return "cancelled"
    except RedundancyError as exc:
        return fail(exc.code, exc.message, exc.field)
    except Exception as exc:  # noqa: BLE001 - everything else is our bug or the environment's
        log.error("job %s failed: %s", job_id, "".join(traceback.format_exception(exc)))
        return fail(*_classify(exc))
    if monitor.cancel.is_set() and _was_deleted_or_taken(settings, job_id, attempt):
        return "skipped"
    try:
        stored = _succeed(settings, job_id, attempt, report, monitor.timings)
    except Exception as exc:  # noqa: BLE001 - nothing of the result was committed
        log.error("job %s: storing the result failed: %s", job_id, "".join(traceback.format_exception(exc)))
        return fail(
            "result_write_failed",
            f"The analysis finished but its result could not be stored: {type(exc).__name__}: {exc}"[:2000],
        )
    return "succeeded" if stored else "skipped"


def _was_deleted_or_taken(settings: Settings, job_id: str, attempt: int) -> bool:
    with session_scope(settings.db_url) as s:
        row = s.execute(sa.select(Job.status, Job.attempts).where(Job.id == job_id)).first()
    return row is None or row.status != "running" or row.attempts != attempt


def _soft_limit_error() -> BaseException:
    from celery.exceptions import SoftTimeLimitExceeded

    return SoftTimeLimitExceeded()


def _classify(exc: BaseException) -> tuple[str, str]:
    try:
        from celery.exceptions import SoftTimeLimitExceeded
    except ImportError:  # pragma: no cover
        SoftTimeLimitExceeded = ()  # type: ignore[assignment]  # noqa: N806
    if isinstance(exc, SoftTimeLimitExceeded):
        return "time_limit_exceeded", "The job ran past ADVISOR_TASK_SOFT_TIME_LIMIT and was stopped."
    if isinstance(exc, MemoryError):
        return "out_of_memory", "The worker ran out of memory; try a smaller batch_size or dataset cap."
    name = type(exc).__name__
    if "OutOfMemory" in name:
        return "out_of_memory", f"{name}: {exc}"[:2000]
    return "internal_error", f"{name}: {exc}"[:2000]
