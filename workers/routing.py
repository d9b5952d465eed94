"""Which device a task runs on, from the queue its message came through (issue 23, queues by device): a task
from the gpu queue runs on ``cuda``, from the cpu queue on ``cpu`` (unless the worker's ``ADVISOR_DEVICE``
names one: :func:`service.core.queue.run_device`), and a sharded job's shards and reduce go to the queue its
``run_job`` came through."""

from __future__ import annotations

from typing import Any

from service.core.config import Settings
from service.core.queue import route_of_queue, run_device


def delivered_queue(request: Any) -> str | None:
    """The queue a task's message came through (its routing key; None when run eagerly)."""
    info = getattr(request, "delivery_info", None) or {}
    return info.get("routing_key") or None


def device_settings(settings: Settings, request: Any) -> Settings:
    """``settings`` with the device this task runs on (what :func:`service.core.runtime.make_runtime` hands the
    engine)."""
    device = run_device(route_of_queue(settings.queue, delivered_queue(request)), settings.device)
    return settings if device == settings.device else settings.model_copy(update={"device": device})
