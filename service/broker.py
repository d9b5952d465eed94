"""The Celery client: send a job to the workers by task name, check the broker, read queue depth
(those three are :class:`service.celery_queue.CeleryJobQueue`'s, shared with the workers).

It implements :class:`~service.core.queue.JobQueue` and :class:`~service.core.queue.BrokerProbe` and is
wired in by the composition root (``service.main``); it never imports the ``workers`` package, only the
task name and the Celery settings both sides share (:mod:`service.core.queue`).
"""

from __future__ import annotations

import contextlib

from celery import Celery

from service.celery_queue import CeleryJobQueue
from service.core.config import Settings
from service.core.queue import celery_config


class CeleryQueue(CeleryJobQueue):
    """The API's Celery client: its own Celery app on the broker, with its own connection pool."""

    def __init__(self, settings: Settings) -> None:
        celery = Celery("advisor-client", broker=settings.broker)
        celery.conf.update(celery_config(settings))
        # kombu keeps one connection pool per broker URL per process (`kombu.pools.connections`), and a
        # Celery app's default `pool` is that shared one: closing it would break every other client on the
        # same URL in this process (a second app, a maintenance round, tests). Each client owns its pool.
        celery._pool = celery.connection_for_write().Pool(limit=celery.conf.broker_pool_limit)
        super().__init__(celery, settings.queue)
        self.settings = settings

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.celery.pool.force_close_all()
