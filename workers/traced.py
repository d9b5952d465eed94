"""The worker's side of a job's trace (:mod:`service.core.tracing`; nothing when tracing is off).

* :func:`start`: each worker process sets up its exporter (``worker_process_init`` for a prefork child;
  a solo or threads pool has no child, so :func:`task_span` sets it up on its first task);
* :func:`task_span`: a task's span, continuing the trace its message carries (``traceparent`` in the
  message's headers, put there by :func:`service.celery_queue.carry_trace` for every message sent, the
  API's jobs and a sharded job's chord alike, so the shards and the reduce join the job's one trace).

The stages' spans come from the progress monitor (:class:`workers.monitor.JobMonitor`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from celery import Task
from celery.signals import worker_process_init

from service.core import tracing
from service.core.config import get_settings


@worker_process_init.connect
def start(**_: object) -> None:
    """Export this process's spans when configured (ADVISOR_OTEL_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT)."""
    tracing.setup(get_settings(), "worker")


def message_headers(request: Any) -> dict[str, str]:
    """The trace headers a task's message carried: Celery puts a message's own headers on the request
    as attributes (protocol 2), or under ``request.headers`` (a task applied locally)."""
    nested = getattr(request, "headers", None) or {}
    found = {name: getattr(request, name, None) or nested.get(name) for name in tracing.fields()}
    return {k: v for k, v in found.items() if isinstance(v, str)}


@contextlib.contextmanager
def task_span(task: Task, job_id: str, **attributes: Any) -> Iterator[None]:
    """The task's span (child of the enqueue's, across the broker), current while the task runs; its log
    lines carry ``job_id``."""
    tracing.setup(get_settings(), "worker")
    parent = tracing.extract(message_headers(task.request))
    with tracing.span(f"task {task.name}", kind="consumer", parent=parent, job_id=job_id,
                      **{"messaging.message.id": task.request.id}, **attributes):
        yield
