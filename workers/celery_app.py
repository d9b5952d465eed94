"""The Celery app of the workers. ``celery -A workers.celery_app worker`` (or ``advisor worker``) runs it.

Configured from the service settings through :func:`service.core.queue.celery_config`, the same
settings the API's client (``service.broker``) sends with. The worker imports the core and the engine,
never the API: ``fastapi`` is not loaded in a worker process (``tests/service/test_architecture.py``).
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_process_init, worker_ready
from kombu.transport import sqlalchemy as sqla_transport

from redundancy.threads import cap_threads
from service.core.config import Settings, get_settings
from service.core.maintenance import run_maintenance_once
from service.core.queue import RUN_JOB_TASK, celery_config

log = logging.getLogger("workers")


def make_celery(settings: Settings | None = None) -> Celery:
    s = settings or get_settings()
    app = Celery("advisor", broker=s.broker, include=["workers.tasks"])
    if s.broker.startswith("sqla+"):
        _tune_sqla_polling(s.broker_polling_interval)
    app.conf.update(celery_config(s))
    app.conf.advisor_settings = s
    return app


def _tune_sqla_polling(interval: float) -> None:
    """kombu passes every SQLAlchemy transport option to ``create_engine``, so the polling interval of
    the embedded broker cannot go through ``broker_transport_options``; set it on the class."""
    sqla_transport.Transport.polling_interval = interval


class _SendByName:
    """The worker's own :class:`~service.core.queue.JobQueue`: re-enqueue through this Celery app."""

    def __init__(self, celery: Celery, queue: str) -> None:
        self.celery, self.queue = celery, queue

    def enqueue(self, job_id: str) -> None:
        self.celery.send_task(RUN_JOB_TASK, args=[job_id], queue=self.queue)

    def ping(self) -> str | None:
        return None

    def depth(self) -> int | None:
        """Messages waiting in the job queue (so the startup sweep does not resend those); None if unknown."""
        try:
            with self.celery.connection_for_write() as conn, conn.channel() as ch:
                return int(ch.queue_declare(queue=self.queue, passive=True).message_count)
        except Exception:  # noqa: BLE001 - unknown depth: the sweep falls back to its time-based backoff
            return None


app = make_celery()


@worker_process_init.connect
def _cap_threads(**_: object) -> None:
    """Each prefork child: torch and BLAS threads capped to one job's share (ADVISOR_JOB_THREADS)."""
    cap_threads(get_settings().threads_per_job)


@worker_ready.connect
def _requeue_on_start(sender: object = None, **_kwargs: object) -> None:
    """A worker that starts re-enqueues jobs whose messages were lost (see service.core.maintenance)."""
    try:
        settings = app.conf.advisor_settings
        sender = _SendByName(app, settings.queue)
        run_maintenance_once(settings, sender, sender)
    except Exception:  # noqa: BLE001 - a missing schema or an unreachable DB must not stop the worker
        log.warning("startup maintenance failed", exc_info=True)
