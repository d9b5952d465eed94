"""The Celery client: send a job to the workers by task name, check the broker, read queue depth.

It implements :class:`~service.core.queue.JobQueue` and :class:`~service.core.queue.BrokerProbe` and is
wired in by the composition root (``service.main``); it never imports the ``workers`` package, only the
task name and the Celery settings both sides share (:mod:`service.core.queue`).
"""

from __future__ import annotations

import contextlib
import logging

from celery import Celery

from service.core.config import Settings
from service.core.queue import RUN_JOB_TASK, celery_config

log = logging.getLogger("service.broker")


class CeleryQueue:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.celery = Celery("advisor-client", broker=settings.broker)
        self.celery.conf.update(celery_config(settings))
        # kombu keeps one connection pool per broker URL per process (`kombu.pools.connections`), and a
        # Celery app's default `pool` is that shared one: closing it would break every other client on the
        # same URL in this process (a second app, a maintenance round, tests). Each client owns its pool.
        self.celery._pool = self.celery.connection_for_write().Pool(limit=self.celery.conf.broker_pool_limit)

    def enqueue(self, job_id: str) -> None:
        self.celery.send_task(RUN_JOB_TASK, args=[job_id], queue=self.settings.queue)

    def ping(self, timeout: float = 3.0) -> str | None:
        """None when reachable, else a short reason."""
        try:
            with self.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=timeout)
                with conn.channel() as ch:
                    ch.queue_declare(queue=self.settings.queue, durable=True, auto_delete=False, passive=False)
        except Exception as exc:  # noqa: BLE001
            return f"{type(exc).__name__}: {exc}"[:300]
        return None

    def depth(self) -> int | None:
        try:
            with self.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2.0)
                with conn.channel() as ch:
                    return int(ch.queue_declare(queue=self.settings.queue, passive=True).message_count)
        except Exception:  # noqa: BLE001
            return None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.celery.pool.force_close_all()
