"""Submitting a job: the active-job quota (an idempotent replay is exempt), the queued row, the message
to a worker and the record that it was sent. The API's ``POST /v1/jobs`` validates the body and calls
:func:`submit`; everything a submission *decides* is here."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from redundancy.config import AnalysisConfig
from service.core import lifecycle, placement, queries, tracing
from service.core.config import Settings
from service.core.errors import TooManyActiveJobs
from service.core.models import Job
from service.core.queue import JobQueue, send_job

log = logging.getLogger("service.core.submission")


def check_quota(session: Session, owner: str, idempotency_key: str | None, settings: Settings) -> None:
    """Raise :class:`TooManyActiveJobs` when ``owner`` already has ``max_active_jobs`` queued or running
    jobs, unless the key names a job already submitted (a replay creates nothing, so it is never refused)."""
    if queries.active_jobs(session, owner) < settings.max_active_jobs:
        return
    if idempotency_key and queries.by_idempotency_key(session, owner, idempotency_key) is not None:
        return
    raise TooManyActiveJobs(settings.max_active_jobs, settings.retry_after)


def submit(
    session: Session,
    config: AnalysisConfig,
    *,
    owner: str,
    idempotency_key: str | None,
    callback_url: str | None,
    queue: JobQueue,
    mlflow: dict[str, Any] | None = None,
    device: str = "auto",
    device_fallback_after: float | None = None,
    settings: Settings,
) -> tuple[Job, bool]:
    """Quota, then a queued job (or the earlier one, for a replay: ``created`` False), handed to ``queue``
    and marked sent. A queue that fails leaves the job queued: the maintenance sweep sends it again.
    ``mlflow`` (``{tracking_uri, experiment}``, checked by the API) is where the worker logs it on success;
    ``device`` routes it to the cpu or gpu queue (:func:`service.core.queue.route_for`), from which it falls
    back to the cpu queue after ``device_fallback_after`` seconds when given."""
    check_quota(session, owner, idempotency_key, settings)

    def within(active: int) -> None:  # counted again with this job inserted, the owner's place held
        if active > settings.max_active_jobs:
            raise TooManyActiveJobs(settings.max_active_jobs, settings.retry_after)

    job, created = lifecycle.create(session, config, owner=owner, idempotency_key=idempotency_key, within=within,
                                    callback_url=callback_url, mlflow=mlflow,
                                    placement=placement.placement(device, device_fallback_after, settings),
                                    trace_context=tracing.inject())  # the request's: every send continues it
    tracing.annotate(job_id=job.id)  # on the request's span, when traced
    if created and getattr(queue, "defers_send", False):  # sent by another thread (service.core.outbox):
        queue.enqueue(job.id)  # returns at once; no broker call while this request holds a connection
    elif created:
        try:
            send_job(queue, job.id, job.route)
            lifecycle.mark_sent(session, job.id)
            session.refresh(job)
        except Exception:  # noqa: BLE001 - the job stays queued; the maintenance sweep enqueues it again
            log.warning("could not enqueue job %s now; it will be retried", job.id, exc_info=True)
    return job, created
