"""What the service needs from a broker, as interfaces: the core and the API hand a job to a worker
through :class:`JobQueue`, never through Celery. The Celery implementation (``send_task`` by name) is
``service.broker.CeleryQueue``, wired in by the composition root (``service.main`` / ``service.cli``);
the worker side is ``workers.celery_app``. Both configure Celery from :func:`celery_config`, so the
producer and the consumer cannot disagree on the task name, the queue or the broker options.
"""

from __future__ import annotations

from typing import Any, Protocol

from service.core.config import Settings

RUN_JOB_TASK = "advisor.run_job"
"""The Celery task name both sides agree on (its one argument: the job id)."""
RUN_SHARD_TASK = "advisor.run_shard"
REDUCE_SHARDS_TASK = "advisor.reduce_shards"
"""A sharded job's tasks (issue 13), sent by a worker as a chord, never by the API."""


class JobQueue(Protocol):
    def enqueue(self, job_id: str) -> None:
        """Ask a worker to run ``job_id``. May raise (broker down): the job stays queued in the database
        and the maintenance sweep sends it again."""


class BrokerProbe(Protocol):
    """What readiness and metrics ask of a real broker."""

    def ping(self) -> str | None:
        """None when reachable, else a short reason."""

    def depth(self) -> int | None:
        """Messages waiting in the job queue; None when it cannot be read."""


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings (plain data) shared by ``service.broker`` (sending) and ``workers.celery_app``.

    Long GPU jobs follow Celery's own guidance: late acks, reject on worker loss, prefetch 1, soft and
    hard limits, an explicit queue. The database is the truth about jobs; Celery's result backend
    exists only for the chord of a sharded job (shard results are kept, every other task's ignored).
    """
    transport_options: dict[str, object] = {}
    if settings.broker.startswith("sqla+sqlite"):
        transport_options["connect_args"] = {"timeout": 30}
    elif not settings.broker.startswith("sqla+"):
        # Redis: a message not acked within the visibility timeout is redelivered; it must outlast
        # the longest job, or a running job would be handed to a second worker.
        transport_options["visibility_timeout"] = settings.hard_time_limit + 600
        # a hung or dead Redis must fail a publish or a probe in seconds, not hold its caller
        transport_options["socket_timeout"] = settings.broker_timeout
        transport_options["socket_connect_timeout"] = settings.broker_timeout
    return {
        "task_default_queue": settings.queue,
        "task_routes": {name: {"queue": settings.queue} for name in (RUN_JOB_TASK, RUN_SHARD_TASK, REDUCE_SHARDS_TASK)},
        "task_create_missing_queues": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit,
        "task_time_limit": settings.hard_time_limit,
        "task_ignore_result": True,
        "task_track_started": False,
        "result_backend": settings.result_backend,
        "result_expires": 86400,
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.broker_timeout,
        "broker_transport_options": transport_options,
        "task_publish_retry": True,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "worker_max_tasks_per_child": None,
    }
