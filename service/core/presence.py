"""Which workers are up (issue 23): each worker process keeps a row in ``workers`` (its process id, Celery node
name, the queues it consumes, when it last said so), written by a thread of its own (:class:`PresenceThread`,
started by ``workers.celery_app`` once the worker is ready, its row deleted on a warm shutdown).

A worker counts as alive for ``ADVISOR_STALE_AFTER`` seconds after its last beat (the rule a running job's
heartbeat follows) unless it is known dead (:func:`service.core.process.known_dead`: same machine, its process
gone), so a killed worker on this machine stops counting at once. The maintenance sweep counts the live workers
on the gpu queue for the jobs waiting there (:func:`service.core.placement.note_gpu_wait`); nothing here is read
per request, and no broker is asked.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.core.config import Settings
from service.core.db import session_scope
from service.core.models import WorkerPresence, utcnow
from service.core.periodic import Periodic
from service.core.process import known_dead, process_id

log = logging.getLogger("service.presence")

BEATS_PER_WINDOW = 4  # beats within one ADVISOR_STALE_AFTER: a late beat or two does not make a worker look gone
GONE_AFTER = 3600.0  # rows not seen for this long (workers killed without a word) are deleted by the sweep


def interval(settings: Settings) -> float:
    """Seconds between a worker's beats (5 by default: a quarter of ``ADVISOR_STALE_AFTER``)."""
    return max(settings.heartbeat, settings.stale_after / BEATS_PER_WINDOW)


def beat(session: Session, worker_id: str, name: str, queues: Sequence[str], now: dt.datetime | None = None) -> None:
    """This worker is up and consumes ``queues`` (its row made on the first beat)."""
    now = now or utcnow()
    updated = session.execute(sa.update(WorkerPresence).where(WorkerPresence.id == worker_id)
                              .values(seen_at=now, name=name, queues=list(queues))).rowcount
    if not updated:
        session.add(WorkerPresence(id=worker_id, name=name, queues=list(queues), started_at=now, seen_at=now))
    session.commit()


def leave(session: Session, worker_id: str) -> None:
    """This worker stops (a warm shutdown): its row goes."""
    session.execute(sa.delete(WorkerPresence).where(WorkerPresence.id == worker_id))
    session.commit()


def alive(session: Session, queue: str, within: float, now: dt.datetime | None = None) -> int:
    """How many workers consuming ``queue`` beat within the last ``within`` seconds and are not known dead."""
    since = (now or utcnow()) - dt.timedelta(seconds=within)
    rows = session.execute(sa.select(WorkerPresence.id, WorkerPresence.queues)
                           .where(WorkerPresence.seen_at >= since)).all()
    return sum(1 for r in rows if queue in (r.queues or ()) and not known_dead(r.id))


def forget_gone(session: Session, now: dt.datetime | None = None) -> int:
    """Delete the rows of workers not seen for :data:`GONE_AFTER` seconds; how many."""
    before = (now or utcnow()) - dt.timedelta(seconds=GONE_AFTER)
    gone = session.execute(sa.delete(WorkerPresence).where(WorkerPresence.seen_at < before)).rowcount
    session.commit()
    return int(gone or 0)


class PresenceThread(Periodic):
    """Beats for this process every :func:`interval` seconds in a daemon thread, the first at once (which also
    clears the rows of workers long gone); :meth:`stop` deletes its row. A beat that fails (the database away)
    is logged and tried again at the next one."""

    def __init__(self, settings: Settings, name: str, queues: Sequence[str]) -> None:
        self.settings, self.name, self.queues = settings, name, list(queues)
        self.worker_id = process_id()
        self._first = True
        super().__init__("advisor-presence", interval(settings), self._beat, log=log,
                         failed="worker presence beat failed", at_once=True)

    def stop(self) -> None:
        super().stop()
        try:
            with session_scope(self.settings.db_url) as s:
                leave(s, self.worker_id)
        except Exception:  # noqa: BLE001 - its row ages out instead
            log.warning("could not delete worker row %s", self.worker_id, exc_info=True)

    def _beat(self) -> None:
        with session_scope(self.settings.db_url) as s:
            beat(s, self.worker_id, self.name, self.queues)
            if self._first:  # each worker start clears the rows of workers long gone
                forget_gone(s)
                self._first = False
