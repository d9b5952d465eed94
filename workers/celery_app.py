"""The Celery app. ``celery -A workers.celery_app worker`` (or ``advisor worker``) runs it.

Configured from the service settings (``BROKER_URL``, ``ADVISOR_QUEUE``, time limits). Long GPU jobs
follow Celery's own guidance: late acks, reject on worker loss, prefetch 1, soft and hard limits,
an explicit queue. Celery's result backend is off: the database is the truth about a job.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_ready

from service.core.config import Settings, get_settings

RUN_JOB = "advisor.run_job"


def make_celery(settings: Settings | None = None) -> Celery:
    s = settings or get_settings()
    app = Celery("advisor", broker=s.broker, include=["workers.tasks"])
    transport_options: dict[str, object] = {}
    if s.broker.startswith("sqla+"):
        if s.broker.startswith("sqla+sqlite"):
            transport_options["connect_args"] = {"timeout": 30}
        _tune_sqla_polling(s.broker_polling_interval)
    else:
        # Redis: a message not acked within the visibility timeout is redelivered; it must outlast
        # the longest job, or a running job would be handed to a second worker.
        transport_options["visibility_timeout"] = s.hard_time_limit + 600
    app.conf.update(
        task_default_queue=s.queue,
        task_routes={RUN_JOB: {"queue": s.queue}},
        task_create_missing_queues=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=s.task_soft_time_limit,
        task_time_limit=s.hard_time_limit,
        task_ignore_result=True,
        task_track_started=False,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options,
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_max_tasks_per_child=None,
    )
    app.conf.advisor_settings = s
    return app


def _tune_sqla_polling(interval: float) -> None:
    """kombu passes every SQLAlchemy transport option to ``create_engine``, so the polling interval of
    the embedded broker cannot go through ``broker_transport_options``; set it on the class."""
    from kombu.transport import sqlalchemy as sqla_transport

    sqla_transport.Transport.polling_interval = interval


app = make_celery()


@worker_ready.connect
def _requeue_on_start(sender=None, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    """A worker that starts re-enqueues jobs whose messages were lost (see service.maintenance)."""
    from service.maintenance import run_maintenance_once

    try:
        settings = app.conf.advisor_settings
        run_maintenance_once(settings, lambda job_id: app.send_task(RUN_JOB, args=[job_id], queue=settings.queue))
    except Exception:  # noqa: BLE001 - a missing schema or an unreachable DB must not stop the worker
        import logging

        logging.getLogger("workers").warning("startup maintenance failed", exc_info=True)
