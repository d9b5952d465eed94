"""Lost messages must not lose jobs.

The database is the truth. Periodically (in the API process, and once when a worker starts):

* a **queued** job whose message was never sent, or was sent ``ADVISOR_REQUEUE_AFTER`` seconds ago
  (doubling with each resend, capped at 32x) and not picked up, is enqueued again;
* a **running** job whose worker stopped heart-beating for ``ADVISOR_STALE_AFTER`` seconds (killed,
  OOM, machine lost) is put back to queued and enqueued again, or failed with ``worker_lost`` after
  ``MAX_ATTEMPTS`` attempts.

Duplicate messages are harmless: a worker claims a job with a conditional UPDATE, so only one wins.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa

from service.core.config import Settings
from service.db.models import Job, utcnow
from service.db.session import session_scope

log = logging.getLogger("service.maintenance")

MAX_ATTEMPTS = 3
Enqueue = Callable[[str], None]


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def run_maintenance_once(settings: Settings, enqueue: Enqueue) -> dict[str, int]:
    now = utcnow()
    requeued = revived = failed = 0
    with session_scope(settings.db_url) as s:
        queued = s.execute(
            sa.select(Job.id, Job.created_at, Job.enqueued_at, Job.enqueue_count).where(Job.status == "queued")
        ).all()
    for row in queued:
        created, sent = _aware(row.created_at), _aware(row.enqueued_at)
        if sent is None:
            due = created is not None and (now - created).total_seconds() > 2.0
        else:
            backoff = settings.requeue_after * 2 ** min(max(row.enqueue_count - 1, 0), 5)
            due = (now - sent).total_seconds() > backoff
        if due and _resend(settings, row.id, row.enqueue_count, enqueue):
            requeued += 1

    stale_before = now - dt.timedelta(seconds=settings.stale_after)
    with session_scope(settings.db_url) as s:
        stale = s.execute(
            sa.select(Job.id, Job.attempts, Job.cancel_requested).where(
                Job.status == "running", Job.heartbeat_at < stale_before
            )
        ).all()
        for row in stale:
            if row.cancel_requested:
                s.execute(
                    sa.update(Job)
                    .where(Job.id == row.id, Job.status == "running", Job.heartbeat_at < stale_before)
                    .values(status="cancelled", finished_at=now, message="worker lost after cancel")
                )
                continue
            if row.attempts >= MAX_ATTEMPTS:
                res = s.execute(
                    sa.update(Job)
                    .where(Job.id == row.id, Job.status == "running", Job.heartbeat_at < stale_before)
                    .values(
                        status="failed",
                        finished_at=now,
                        error_code="worker_lost",
                        error_message=f"The worker running this job stopped responding "
                        f"{row.attempts} times (killed, out of memory or past the "
                        f"hard time limit).",
                    )
                )
                failed += res.rowcount  # type: ignore[attr-defined]
                continue
            res = s.execute(
                sa.update(Job)
                .where(Job.id == row.id, Job.status == "running", Job.heartbeat_at < stale_before)
                .values(
                    status="queued",
                    stage=None,
                    progress=0.0,
                    enqueued_at=None,
                    message="requeued: its worker stopped responding",
                )
            )
            revived += res.rowcount  # type: ignore[attr-defined]
    if revived:
        # They are queued with enqueued_at NULL now; send them right away.
        with session_scope(settings.db_url) as s:
            ids = s.scalars(sa.select(Job.id).where(Job.status == "queued", Job.enqueued_at.is_(None))).all()
        for job_id in ids:
            _resend(settings, job_id, None, enqueue)
    stats = {"requeued": requeued, "revived": revived, "failed": failed}
    if any(stats.values()):
        log.warning("maintenance: %s", stats)
    return stats


def _resend(settings: Settings, job_id: str, seen_count: int | None, enqueue: Enqueue) -> bool:
    """Claim the right to resend (so two API replicas do not both resend), then send."""
    with session_scope(settings.db_url) as s:
        q = sa.update(Job).where(Job.id == job_id, Job.status == "queued")
        if seen_count is not None:
            q = q.where(Job.enqueue_count == seen_count)
        res = s.execute(q.values(enqueued_at=utcnow(), enqueue_count=Job.enqueue_count + 1))
        if not res.rowcount:  # type: ignore[attr-defined]
            return False
    try:
        enqueue(job_id)
    except Exception:  # noqa: BLE001 - broker down: try again next round
        log.warning("could not enqueue job %s", job_id, exc_info=True)
        with session_scope(settings.db_url) as s:
            s.execute(sa.update(Job).where(Job.id == job_id, Job.status == "queued").values(enqueued_at=None))
        return False
    return True


class MaintenanceThread:
    """Runs :func:`run_maintenance_once` every ``interval`` seconds in a daemon thread."""

    def __init__(self, settings: Settings, enqueue: Enqueue, interval: float) -> None:
        self.settings, self.enqueue, self.interval = settings, enqueue, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="advisor-maintenance", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                run_maintenance_once(self.settings, self.enqueue)
            except Exception:  # noqa: BLE001
                log.warning("maintenance round failed", exc_info=True)
