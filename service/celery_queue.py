"""The Celery side of the core's :class:`~service.core.queue.JobQueue` and
:class:`~service.core.queue.BrokerProbe`, written once for both users: the API's client
(:class:`service.broker.CeleryQueue`, which owns its connection pool) and a worker's own sender
(``workers.celery_app``, which re-enqueues through the worker's app). Celery and the core's task name only:
no API, no workers, so both sides may import it.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import before_task_publish

from service.core import tracing
from service.core.queue import RUN_JOB_TASK, device_queues, queue_name


class CeleryJobQueue:
    """Send a job to its device queue under ``queue`` (``<queue>.cpu`` / ``<queue>.gpu``) by task name, check
    the broker, read the queues' depth, through ``celery``."""

    def __init__(self, celery: Celery, queue: str) -> None:
        self.celery, self.queue = celery, queue

    def enqueue(self, job_id: str) -> None:
        self.enqueue_to(job_id, "cpu")

    def enqueue_to(self, job_id: str, route: str | None) -> None:
        """Send ``job_id`` to the queue of ``route`` (``cpu``, ``gpu``; None: cpu), in an ``enqueue`` span when
        traced (its message carries it on: :func:`carry_trace`)."""
        name = queue_name(self.queue, route)
        with tracing.span("enqueue", kind="producer", job_id=job_id, **{"messaging.destination.name": name}):
            self.celery.send_task(RUN_JOB_TASK, args=[job_id], queue=name)

    def ping(self, timeout: float = 3.0) -> str | None:
        """None when reachable, else a short reason."""
        try:
            with self.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=timeout)
                with conn.channel() as ch:
                    ch.queue_declare(queue=self.queue, durable=True, auto_delete=False, passive=False)
        except Exception as exc:  # noqa: BLE001 - any failure is the answer
            return f"{type(exc).__name__}: {exc}"[:300]
        return None

    def depth(self) -> int | None:
        """Messages waiting in all the job queues (the device queues and the bare one); None when it cannot be
        read (the maintenance sweep then falls back to its time-based backoff)."""
        return self._depth(device_queues(self.queue))

    def depth_of(self, route: str) -> int | None:
        """Messages waiting for one route's workers: the gpu queue, or the cpu queue and the bare one (which
        every worker without ``--queues`` also takes); None when it cannot be read."""
        legacy = [self.queue] if route == "cpu" else []
        return self._depth([*legacy, queue_name(self.queue, route)])

    def _depth(self, names: list[str]) -> int | None:
        try:
            with self.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2.0)
                with conn.channel() as ch:
                    return sum(_waiting(ch, name) for name in names)
        except Exception:  # noqa: BLE001 - unknown depth
            return None


@before_task_publish.connect
def carry_trace(headers: dict[str, Any] | None = None, **_: object) -> None:
    """Every message this process sends (a job from the API, a sharded job's chord from a worker) carries the
    current trace context in its headers (W3C ``traceparent``), so the task that receives it continues the
    job's one trace (:func:`workers.traced.task_span`). Nothing when tracing is off."""
    if headers is not None and not any(name in headers for name in tracing.fields()):
        headers.update(tracing.inject())


def _waiting(channel: object, name: str) -> int:
    """Messages in queue ``name``; a queue never declared holds none (a passive declare of it fails)."""
    try:
        return int(channel.queue_declare(queue=name, passive=True).message_count)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - only "no such queue" means zero
        if "NOT_FOUND" in str(exc) or "404" in str(exc) or "no queue" in str(exc).lower():
            return 0
        raise
