"""The Celery app of the workers. ``celery -A workers.celery_app worker`` (or ``advisor worker``) runs it.

Configured from the service settings through :func:`service.core.queue.celery_config`, the same
settings the API's client (``service.broker``) sends with. The worker imports the core and the engine,
never the API: ``fastapi`` is not loaded in a worker process
(``tests/service/test_service_architecture.py``).
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import (
    after_setup_logger,
    celeryd_after_setup,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)
from kombu.transport import sqlalchemy as sqla_transport

from redundancy.threads import cap_threads
from service.celery_queue import CeleryJobQueue
from service.core import db, logs
from service.core.config import Settings, get_settings
from service.core.maintenance import run_maintenance_once
from service.core.presence import PresenceThread
from service.core.queue import celery_config, worker_queues

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


app = make_celery()


@celeryd_after_setup.connect
def _queues_by_device(sender: object = None, instance: object = None, **_: object) -> None:
    """``--queues cpu`` / ``gpu`` / ``cpu,gpu`` name the device queues (``<ADVISOR_QUEUE>.cpu|.gpu``); no
    ``--queues``, or the bare ``ADVISOR_QUEUE``, consumes every device queue (``worker_queues``)."""
    celery = instance.app  # type: ignore[attr-defined]
    queues = celery.amqp.queues
    selected = list(queues.consume_from)
    wanted = worker_queues(celery.conf.advisor_settings.queue, ",".join(selected))
    for name in wanted:
        queues.select_add(name)
    queues.deselect([name for name in selected if name not in wanted])
    log.info("consuming queues %s", ", ".join(wanted))


@worker_process_init.connect
def _cap_threads(**_: object) -> None:
    """Each prefork child: torch and BLAS threads capped to one job's share (ADVISOR_JOB_THREADS), and database
    connections of its own (a child forked after the worker was ready inherits the main process's pool)."""
    cap_threads(get_settings().threads_per_job)
    db.forget_inherited()


@after_setup_logger.connect
def _log_format(logger: logging.Logger | None = None, **_: object) -> None:
    """ADVISOR_LOG_FORMAT=json: the worker's lines as JSON too, with job and trace ids (service.core.logs)."""
    logs.use_format(get_settings().log_format, logger)


@worker_ready.connect
def _requeue_on_start(sender: object = None, **_kwargs: object) -> None:
    """A worker that starts re-enqueues jobs whose messages were lost (see service.core.maintenance)."""
    try:
        settings = app.conf.advisor_settings
        sender = CeleryJobQueue(app, settings.queue)  # re-enqueues through this app; reads its queue's depth
        run_maintenance_once(settings, sender, sender)
    except Exception:  # noqa: BLE001 - a missing schema or an unreachable DB must not stop the worker
        log.warning("startup maintenance failed", exc_info=True)


_presence: PresenceThread | None = None


@worker_ready.connect
def _announce(sender: object = None, **_kwargs: object) -> None:
    """The worker beats in the database while it is up (``workers``: its queues, when last seen), so the API can
    say whether any worker consumes the gpu queue (:mod:`service.core.presence`)."""
    global _presence
    try:
        queues = sorted(app.amqp.queues.consume_from)
        _presence = PresenceThread(app.conf.advisor_settings, str(getattr(sender, "hostname", "") or ""), queues)
        _presence.start()
    except Exception:  # noqa: BLE001 - the worker runs jobs without it
        log.warning("worker presence not started", exc_info=True)


@worker_shutdown.connect
def _leave(**_kwargs: object) -> None:
    """A warm shutdown deletes the worker's row (a worker killed without a word stops counting after
    ADVISOR_STALE_AFTER, or at once on its own machine)."""
    global _presence
    presence, _presence = _presence, None
    if presence is not None:
        presence.stop()
