"""Which device a task runs on, from the queue its message came through (issue 23, queues by device): a task
from the gpu queue runs on ``cuda``; from the cpu queue on ``cpu`` when the job asked for it, else on the worker's
best device (unless the worker's ``ADVISOR_DEVICE`` names one: :func:`service.core.queue.run_device`); a sharded
job's shards and reduce go to the queue its ``run_job`` came through."""

from __future__ import annotations

from typing import Any

from service.core.config import Settings
from service.core.db import session_scope
from service.core.placement import requested_device
from service.core.queue import route_of_queue, run_device


def delivered_queue(request: Any) -> str | None:
    """The queue a task's message came through (its routing key; None when run eagerly)."""
    info = getattr(request, "delivery_info", None) or {}
    return info.get("routing_key") or None


def device_settings(settings: Settings, request: Any, job_id: str) -> Settings:
    """``settings`` with the device this task of ``job_id`` runs on (what :func:`service.core.runtime.make_runtime`
    hands the engine): from the queue it came through and the job's own ``device``."""
    route = route_of_queue(settings.queue, delivered_queue(request))
    requested = None
    if route == "cpu" and settings.device == "auto":  # only there does the job's own device decide
        with session_scope(settings.db_url) as s:
            requested = requested_device(s, job_id)
    device = run_device(route, settings.device, requested)
    return settings if device == settings.device else settings.model_copy(update={"device": device})
