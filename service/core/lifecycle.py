"""Every state transition of a job, in the order a job lives them. Read top to bottom.

::

    create ─▶ queued ─▶ mark_sent / unmark_sent        (the API and the maintenance sweep hand it to a queue)
               │  ▲
        claim  │  └── requeue_stale                     (its worker stopped heart-beating)
               ▼
             running ─▶ heartbeat (progress; answers "go on?")
               ├─▶ succeed        ─▶ succeeded          (report rows, stats reference and status in one transaction)
               ├─▶ fail           ─▶ failed             (engine error, time limit, result write)
               ├─▶ fail_stale     ─▶ failed             (worker lost MAX_ATTEMPTS times)
        (a worker is lost when its heartbeat stopped, or its process is known dead: service.core.process)
               ├─▶ finish_cancelled / cancel_stale ─▶ cancelled
    cancel:  queued ─▶ cancelled at once; running ─▶ cancel_requested (the worker stops at its next checkpoint)
    delete:  a finished job, its rows and its files in the artifact store

Every transition into succeeded, failed or cancelled records the job's webhook event in its own
transaction (``_announce`` → :func:`service.core.webhooks.record_event`; sent later, elsewhere).

Postgres (or the embedded SQLite file) is the truth about a job. Every change is one conditional
``UPDATE ... WHERE`` so that the API, the maintenance sweep, a worker and a second worker racing on a
duplicate message cannot both win: a queued job is fenced by its status (and, when sent, by its send
count); a running job by its status **and attempt number**, so a worker that lost its job (requeued,
taken over, deleted) can no longer write to it. Each function takes a session and commits before it
returns: one transition, one transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from redundancy.config import AnalysisConfig
from redundancy.progress import ImagesProgress
from redundancy.report import Report
from service.core import artifacts, results, webhooks
from service.core.config import Settings
from service.core.db import hold_owner
from service.core.errors import AlreadyFinished, IdempotencyConflict, NotFinished
from service.core.models import (
    CurvePointRow,
    Job,
    JobResult,
    JobShard,
    JobStats,
    RecommendationRow,
    WebhookDelivery,
    as_utc,
    utcnow,
)
from service.core.queries import active_jobs, get_job
from service.core.status import JobStatus

log = logging.getLogger("service.core.lifecycle")

MAX_ATTEMPTS = 3
"""A job whose worker is lost this many times fails with ``worker_lost`` instead of being requeued."""

QUEUED, RUNNING = JobStatus.QUEUED, JobStatus.RUNNING


def _execute(session: Session, job_id: str, *fence: sa.ColumnElement[bool], **values: Any) -> bool:
    """``UPDATE jobs SET values WHERE id = job_id AND fence`` (not committed); True when it changed the row."""
    stmt = sa.update(Job).where(Job.id == job_id, *fence).values(**values)
    # "fetch": a Job already loaded in this session sees the change (Python-side evaluation of the fence
    # would compare SQLite's naive datetimes with aware ones).
    res = session.execute(stmt.execution_options(synchronize_session="fetch"))
    return bool(res.rowcount)  # type: ignore[attr-defined]


def _update(session: Session, job_id: str, *fence: sa.ColumnElement[bool], **values: Any) -> bool:
    """One non-terminal transition, committed."""
    changed = _execute(session, job_id, *fence, **values)
    session.commit()
    return changed


def _terminal(session: Session, job_id: str, *fence: sa.ColumnElement[bool], **values: Any) -> bool:
    """One transition into succeeded, failed or cancelled, committed with the job's webhook event."""
    changed = _execute(session, job_id, *fence, **values)
    if changed:
        _announce(session, job_id)
    session.commit()
    return changed


def _announce(session: Session, job_id: str) -> None:
    """The one place a finished job's webhook event is recorded (inside its terminal transaction)."""
    webhooks.record_event(session, job_id)


def _locked(session: Session, job_id: str) -> Job | None:
    """The job's row, locked for this transaction (``SELECT … FOR UPDATE``), for a transition that writes
    more than the row itself; SQLite has no row locks (its writes are serialised), so there a plain read."""
    q = sa.select(Job).where(Job.id == job_id)
    if session.get_bind().dialect.name != "sqlite":
        q = q.with_for_update()
    return session.scalar(q)


def _held(attempt: int) -> tuple[sa.ColumnElement[bool], sa.ColumnElement[bool]]:
    """The fence of a running job: still running, and still the same attempt."""
    return Job.status == RUNNING, Job.attempts == attempt


# ---------------------------------------------------------------------------------------------
# queued


ACTIVE_JOBS_LOCK = 23  # Postgres: the first key of the per-owner advisory lock of the active-jobs quota


def create(
    session: Session,
    config: AnalysisConfig,
    *,
    owner: str,
    idempotency_key: str | None,
    callback_url: str | None = None,
    mlflow: dict[str, Any] | None = None,
    placement: dict[str, Any] | None = None,
    trace_context: dict[str, str] | None = None,
    within: Callable[[int], None] | None = None,
) -> tuple[Job, bool]:
    """Persist a queued job. Returns (job, created); created is False for an idempotent replay (same key,
    same config, same callback URL, same ``mlflow`` option: ``{tracking_uri, experiment}``, logged when the
    job succeeds by :mod:`service.core.mlflow_runs`). The same key with another config, callback URL or
    ``mlflow`` option raises :class:`IdempotencyConflict`. ``trace_context``: the submitting request's
    (:func:`service.core.tracing.inject`), kept as the parent of every message sent for the job.
    ``within(active)``: the owner's queued and running jobs counting this one, counted after its insert and
    before the commit, under :func:`~service.core.db.hold_owner` (two submissions at the quota's last place
    cannot both pass); it raises to refuse the job, and nothing is written."""
    chash = config.config_hash()
    if idempotency_key is not None:
        existing = _by_key(session, owner, idempotency_key)
        if existing is not None:
            return _replay(existing, chash, callback_url, mlflow, idempotency_key, placement), False
    job = Job(
        id=str(uuid.uuid4()),
        owner=owner,
        status=QUEUED,
        progress=0.0,
        request=config.model_dump(mode="json"),
        config_hash=chash,
        model_name=config.model.name,
        dataset_spec=config.dataset.spec,
        idempotency_key=idempotency_key,
        cancel_requested=False,
        created_at=utcnow(),
        enqueue_count=0,
        attempts=0,
        callback_url=callback_url,
        mlflow=mlflow,
        mlflow_run={"state": "pending", "run_id": None, "error": None, "at": None} if mlflow else None,
        trace_context=trace_context or None,
        **(placement or {}),  # device, device_fallback_after, route, stage (service.core.placement)
    )
    try:
        if within is not None:
            hold_owner(session, ACTIVE_JOBS_LOCK, owner)
        session.add(job)
        if within is not None:
            session.flush()
            try:
                within(active_jobs(session, owner))
            except BaseException:
                session.rollback()
                raise
        session.commit()
    except IntegrityError:  # a concurrent request with the same key won the insert
        session.rollback()
        existing = _by_key(session, owner, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return _replay(existing, chash, callback_url, mlflow, idempotency_key or "", placement), False
    return job, True


def _by_key(session: Session, owner: str, key: str) -> Job | None:
    return session.scalar(sa.select(Job).where(Job.owner == owner, Job.idempotency_key == key))


def _replay(existing: Job, chash: str, callback_url: str | None, mlflow: dict[str, Any] | None, key: str,
            placement: dict[str, Any] | None = None) -> Job:
    asked = placement or {}
    if (existing.config_hash != chash or existing.callback_url != callback_url
            or (existing.mlflow or None) != mlflow
            or (existing.device or "auto", existing.device_fallback_after)
            != (asked.get("device", "auto"), asked.get("device_fallback_after"))):
        raise IdempotencyConflict(key, existing.id)
    return existing


def mark_sent(session: Session, job_id: str, *, seen_count: int | None = None) -> bool:
    """Record that the job's message was (or is about to be) sent. With ``seen_count``, only if nobody
    sent it since that count was read, so two API replicas sweeping at once do not both resend."""
    fence = [Job.status == QUEUED] + ([Job.enqueue_count == seen_count] if seen_count is not None else [])
    return _update(session, job_id, *fence, enqueued_at=utcnow(), enqueue_count=Job.enqueue_count + 1)


def unmark_sent(session: Session, job_id: str) -> bool:
    """The send failed (broker down): the next sweep sends it again at once."""
    return _update(session, job_id, Job.status == QUEUED, enqueued_at=None)


# ---------------------------------------------------------------------------------------------
# queued → running


@dataclass(frozen=True)
class Claim:
    attempt: int
    request: dict[str, Any]


def claim(
    session: Session, job_id: str, *, worker: str, stale_after: float, dead_owner: str | None = None
) -> Claim | None:
    """queued → running, or take over a running job (that nobody asked to cancel) whose worker stopped
    heart-beating ``stale_after`` seconds ago, or whose worker is ``dead_owner`` (a process the caller
    knows is dead: :func:`service.core.process.known_dead`). None: nothing to claim (cancelled,
    finished, deleted or running elsewhere), so a duplicate message is harmless."""
    now = utcnow()
    stale = now - dt.timedelta(seconds=stale_after)
    taken = _update(
        session,
        job_id,
        sa.or_(
            Job.status == QUEUED,
            sa.and_(Job.status == RUNNING, _gone(stale, dead_owner), Job.cancel_requested.is_(False)),
        ),
        status=RUNNING,
        started_at=now,
        heartbeat_at=now,
        attempts=Job.attempts + 1,
        worker=worker[:255],
        stage=None,
        progress=0.0,
        message=None,
        images_done=None,
        images_total=None,
        eta_s=None,
    )
    if not taken:
        return None
    row = session.execute(sa.select(Job.attempts, Job.request).where(Job.id == job_id)).one()
    return Claim(attempt=int(row.attempts), request=dict(row.request))


# ---------------------------------------------------------------------------------------------
# running


def heartbeat(
    session: Session,
    job_id: str,
    attempt: int,
    *,
    progress: float,
    stage: str | None,
    message: str | None,
    stage_timings: dict[str, float],
    images: ImagesProgress | None = None,
) -> bool:
    """Write progress and the heartbeat (and, during extraction, `images`). Returns whether the worker
    should go on: False once the job was cancelled, deleted, requeued or taken over by another attempt."""
    values: dict[str, Any] = {
        "progress": progress,
        "heartbeat_at": utcnow(),
        "message": (message or "")[:2000] or None,
        "stage_timings": stage_timings,
    }
    if stage is not None:
        values["stage"] = stage
    if images is not None:
        values.update(images_done=images.done, images_total=images.total, eta_s=images.eta_s)
    _update(session, job_id, *_held(attempt), **values)
    return _go_on(session, job_id, attempt)


def _go_on(session: Session, job_id: str, attempt: int) -> bool:
    row = session.execute(sa.select(Job.status, Job.cancel_requested, Job.attempts).where(Job.id == job_id)).first()
    return not (row is None or row.cancel_requested or row.status != RUNNING or row.attempts != attempt)


def eta_seconds(done: int, total: int, elapsed: float) -> float | None:
    """Seconds left at the rate so far, ``elapsed · (total − done) / done``, in whole seconds (the one ETA:
    the API's ``eta_s``, which ``advisor status`` and the web UI both print as is); None before any image."""
    if done <= 0 or elapsed <= 0:
        return None
    return float(round(elapsed * max(total - done, 0) / done))


# ---------------------------------------------------------------------------------------------
# running, sharded (issue 13): the job's extraction runs as shards on any worker, then a reduce


def start_shards(session: Session, job_id: str, attempt: int, ranges: list[tuple[int, int]]) -> bool:
    """Record the shards of this attempt (replacing any of an earlier attempt) and the images to
    extract. False (nothing written) when the job is no longer held by this attempt."""
    total = sum(b - a for a, b in ranges)
    job = _locked(session, job_id)
    if job is None or job.status != RUNNING or job.attempts != attempt:
        session.rollback()
        return False
    session.execute(sa.delete(JobShard).where(JobShard.job_id == job_id))
    session.add_all([JobShard(job_id=job_id, index=i, attempt=attempt, start_row=a, stop_row=b, images_done=0)
                     for i, (a, b) in enumerate(ranges)])
    job.stage, job.images_done, job.images_total, job.eta_s = "extract", 0, total, None
    job.heartbeat_at = utcnow()
    session.commit()
    return True


def shard_progress(
    session: Session, job_id: str, attempt: int, index: int, images_done: int, overall: Callable[[float], float]
) -> bool:
    """One shard's images done; the job's `images_done` becomes the sum over its shards, with its
    progress (`overall(fraction of images done)`), ETA (at the rate since the job started) and
    heartbeat. Returns whether the shard should go on, as :func:`heartbeat` does."""
    if not _update(session, job_id, *_held(attempt), heartbeat_at=utcnow()):
        return False
    session.execute(sa.update(JobShard).where(JobShard.job_id == job_id, JobShard.index == index,
                                              JobShard.attempt == attempt).values(images_done=images_done))
    done = int(session.scalar(sa.select(sa.func.coalesce(sa.func.sum(JobShard.images_done), 0))
                              .where(JobShard.job_id == job_id, JobShard.attempt == attempt)) or 0)
    job = session.execute(sa.select(Job.images_total, Job.started_at).where(Job.id == job_id)).one()
    total = int(job.images_total or 0)
    started = as_utc(job.started_at)
    elapsed = (utcnow() - started).total_seconds() if started is not None else 0.0
    _update(session, job_id, *_held(attempt), images_done=done, progress=overall(done / max(total, 1)),
            eta_s=eta_seconds(done, total, elapsed))
    return _go_on(session, job_id, attempt)


def is_held(session: Session, job_id: str, attempt: int) -> bool:
    """Is the job still running under this attempt (not deleted, cancelled or taken over)?"""
    row = session.execute(sa.select(Job.status, Job.attempts).where(Job.id == job_id)).first()
    return row is not None and row.status == RUNNING and row.attempts == attempt


def cancel(session: Session, job_id: str, owner: str) -> Job:
    """Queued → cancelled now; running → flag for the worker (it stops at its next checkpoint).
    Cancelling a cancelled job is a no-op; a succeeded or failed one raises :class:`AlreadyFinished`."""
    job = get_job(session, job_id, owner)
    stopped = _terminal(
        session,
        job.id,
        Job.status == QUEUED,
        status=JobStatus.CANCELLED,
        cancel_requested=True,
        finished_at=utcnow(),
        message="cancelled before start",
    )
    if not stopped:
        _update(session, job.id, Job.status == RUNNING, cancel_requested=True)
    session.refresh(job)
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        raise AlreadyFinished(job.id, job.status)
    return job


# ---------------------------------------------------------------------------------------------
# running → finished (by its worker)


def succeed(
    session: Session, job_id: str, attempt: int, report: Report, timings: dict[str, float],
    kept: artifacts.KeptStats | None = None,
) -> bool:
    """running → succeeded with the report's rows (and ``kept``, the reference to its layer statistics
    in the artifact store), in ONE transaction: a half-written job never looks finished. False (and
    nothing written) when the job changed hands or was deleted meanwhile."""
    job = _locked(session, job_id)
    if job is None or job.status != RUNNING or job.attempts != attempt:
        log.warning("job %s changed hands or was deleted; dropping its result", job_id)
        session.rollback()
        return False
    try:
        results.store_report(session, job_id, report)
        if kept is not None:
            artifacts.add_stats_row(session, job_id, kept)
        now = utcnow()
        job.status = JobStatus.SUCCEEDED
        job.stage = "done"
        job.progress = 1.0
        job.message = None
        job.finished_at = now
        job.heartbeat_at = now
        job.stage_timings = {k: float(v) for k, v in (report.timings or timings).items()}
        session.flush()
        _announce(session, job_id)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return True


def fail(
    session: Session,
    job_id: str,
    attempt: int,
    *,
    code: str,
    message: str,
    field: str | None = None,
    stage_timings: dict[str, float] | None = None,
) -> bool:
    """running → failed with a structured error ``{code, message, field}``."""
    return _finish(
        session, job_id, attempt, JobStatus.FAILED, stage_timings,
        error_code=code, error_message=message, error_field=field,
    )


def finish_cancelled(session: Session, job_id: str, attempt: int, stage_timings: dict[str, float] | None) -> bool:
    """running → cancelled: the worker saw the cancel flag and stopped."""
    return _finish(session, job_id, attempt, JobStatus.CANCELLED, stage_timings, message="cancelled while running")


def _finish(
    session: Session,
    job_id: str,
    attempt: int,
    status: JobStatus,
    stage_timings: dict[str, float] | None,
    **values: Any,
) -> bool:
    now = utcnow()
    return _terminal(
        session, job_id, *_held(attempt), status=status, finished_at=now, heartbeat_at=now,
        stage_timings=stage_timings, **values,
    )


# ---------------------------------------------------------------------------------------------
# running, worker lost (the maintenance sweep)


def _gone(stale_before: dt.datetime, dead_owner: str | None) -> sa.ColumnElement[bool]:
    """The running job's worker is lost: no heartbeat since ``stale_before``, or it is ``dead_owner``."""
    stopped = Job.heartbeat_at < stale_before
    return stopped if dead_owner is None else sa.or_(stopped, Job.worker == dead_owner)


def _stale(attempt: int, stale_before: dt.datetime, dead_owner: str | None) -> tuple[sa.ColumnElement[bool], ...]:
    return (*_held(attempt), _gone(stale_before, dead_owner))


def requeue_stale(
    session: Session, job_id: str, attempt: int, stale_before: dt.datetime, *, dead_owner: str | None = None
) -> bool:
    """running → queued (not yet sent): its worker stopped heart-beating before ``stale_before``, or is
    ``dead_owner``, a process known to be dead."""
    return _update(
        session, job_id, *_stale(attempt, stale_before, dead_owner),
        status=QUEUED, stage=None, progress=0.0, enqueued_at=None,
        message="requeued: its worker stopped responding",
    )


def fail_stale(
    session: Session, job_id: str, attempt: int, stale_before: dt.datetime, *, dead_owner: str | None = None
) -> bool:
    """running → failed (``worker_lost``): its worker was lost on every one of its attempts."""
    return _terminal(
        session, job_id, *_stale(attempt, stale_before, dead_owner),
        status=JobStatus.FAILED, finished_at=utcnow(), error_code="worker_lost",
        error_message=f"The worker running this job stopped responding {attempt} times (killed, out of "
        f"memory or past the hard time limit).",
    )


def cancel_stale(
    session: Session, job_id: str, attempt: int, stale_before: dt.datetime, *, dead_owner: str | None = None
) -> bool:
    """running with cancel requested → cancelled: the worker died before it could stop."""
    return _terminal(
        session, job_id, *_stale(attempt, stale_before, dead_owner),
        status=JobStatus.CANCELLED, finished_at=utcnow(), message="worker lost after cancel",
    )


# ---------------------------------------------------------------------------------------------
# finished → gone


def delete(session: Session, job_id: str, owner: str, settings: Settings | None = None) -> None:
    """A finished job, all its rows and its files in the artifact store (removed once the rows are
    gone). Queued or running raises :class:`NotFinished` (cancel first)."""
    job = get_job(session, job_id, owner)
    if not job.status.finished:
        raise NotFinished(job.id, job.status)
    stats_path = session.scalar(sa.select(JobStats.path).where(JobStats.job_id == job.id))
    for model in (CurvePointRow, RecommendationRow, JobResult, JobStats, WebhookDelivery, JobShard):
        session.execute(sa.delete(model).where(model.job_id == job.id))
    session.execute(sa.delete(Job).where(Job.id == job.id, Job.status == job.status))
    session.commit()
    artifacts.remove_job_files(stats_path, job.id, settings)


# ---------------------------------------------------------------------------------------------
# queued on the gpu queue → queued on the cpu queue (issue 23: queues by device)


def fall_back_to_cpu(session: Session, job_id: str, waited: float) -> bool:
    """A job that waited ``waited`` seconds in the gpu queue, no gpu worker taking it, moves to the cpu queue
    (only while it is still queued there): unsent, so the sweep sends it to the cpu queue at once; when it fell
    back stays on the job. A gpu worker that later finds its old message has nothing to claim."""
    return _update(
        session, job_id, Job.status == QUEUED, Job.route == "gpu",
        route="cpu", fell_back_at=utcnow(), enqueued_at=None, stage=None, queue_depth=None, workers_alive=None,
        message=f"no gpu worker took it within {waited:g} s: fell back to the cpu queue",
    )
