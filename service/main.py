"""Composition root of the API process: ``uvicorn service.main:app`` or ``advisor serve``.

Here, and only here (and in ``service.cli``), the API meets Celery: :func:`create_app` builds the
Celery client (:class:`service.broker.CeleryQueue`) and hands it to the FastAPI app as a plain
:class:`~service.core.queue.JobQueue`.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from service.api.app import build_app
from service.broker import CeleryQueue
from service.core import tracing
from service.core.config import Settings, get_settings
from service.core.outbox import SendLater
from service.core.queue import JobQueue


def create_app(
    settings: Settings | None = None,
    *,
    queue: JobQueue | None = None,
    maintenance: bool = True,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """The API on ``settings`` (default: the environment). Without ``queue`` jobs go to Celery through
    the configured broker; a test passes its own queue and runs jobs in-process."""
    settings = settings or get_settings()
    tracing.setup(settings, "api")  # OTLP traces when the `otel` extra is installed and an endpoint set
    if queue is not None:
        return build_app(settings, queue, maintenance=maintenance, on_shutdown=on_shutdown)
    broker = CeleryQueue(settings)
    sender = SendLater(settings, broker)  # POST answers without waiting for the broker

    def shutdown() -> None:
        sender.stop()
        broker.close()
        if on_shutdown is not None:
            on_shutdown()

    return build_app(settings, sender, probe=broker, maintenance=maintenance, on_shutdown=shutdown,
                     sweep_queue=broker)


def __getattr__(name: str) -> FastAPI:
    # `uvicorn service.main:app` builds the app lazily from the environment.
    if name == "app":
        return create_app()
    raise AttributeError(name)
