"""The FastAPI application: routes, problem+json handlers, request metrics, the maintenance sweep and the
webhook sender (both background threads, off with ``maintenance=False``).

It receives its queue (:class:`~service.core.queue.JobQueue`) and, optionally, a broker probe for
readiness; it never builds them. The composition root (``service.main.create_app``) wires in Celery.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI

from service.api.cache import CacheHits, ResponseCache
from service.api.docs import install_offline_docs
from service.api.errors import install_error_handlers
from service.api.job_pages import JobPages
from service.api.limits import EdgeLimits, RateGate, RateLimiter
from service.api.metrics import RequestMetrics, RequestTiming
from service.api.openapi import operation_id
from service.api.routes import artifacts, catalog, datasets, deliveries, health, jobs, recommendations
from service.api.schemas import Problem
from service.api.shedding import LoadShedding
from service.api.traces import RequestSpans
from service.api.ui import install_ui
from service.api.validation import body_problems
from service.core.config import Settings
from service.core.db import size_pool
from service.core.maintenance import MaintenanceThread
from service.core.queue import BrokerProbe, JobQueue
from service.core.webhook_delivery import DeliveryThread

log = logging.getLogger("service.api")


def settle_heap() -> None:
    """Move every object alive at startup out of the garbage collector's reach (``gc.freeze``).

    The API process holds torch and timm (the submission checks build models on the meta device): about
    600,000 tracked objects, which every full collection walked, stopping every request for 220–270 ms a
    few times in a 10 s load test (the tail of the job list's p99, docs/operations.md). What is alive at
    startup lives as long as the process, so it need not be scanned; objects made later are collected as
    usual. Safe to call again (it freezes what is new)."""
    gc.collect()
    gc.freeze()

DESCRIPTION = """
**How many neurons of a pre-trained representation do you actually need?**

Submit a job (`POST /v1/jobs`: a timm backbone and a dataset), poll it (`GET /v1/jobs/{id}`), then ask
for the minimal neuron fraction within a tolerance δ of the full layer, with its fairness cost
(`GET /v1/jobs/{id}/recommendation?delta=0.01`). Recommendations for any δ are answered from the stored
accuracy curve; nothing is recomputed. Your own vectors: upload a file (`POST /v1/datasets`) and name
it in the job as `{"dataset": {"spec": "upload:<id>"}}`.

Errors are `application/problem+json` (RFC 9457). When the server has API keys configured, send yours
in `X-API-Key` (or `Authorization: Bearer`); a key sees only its own jobs.
"""


_PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}
V1_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {**_PROBLEM, "description": "No or unknown API key (when the server has keys)"},
    422: {**_PROBLEM, "description": "Invalid parameter (names it), e.g. a NUL byte"},
    429: {**_PROBLEM, "description": "Over the per-key request rate (ADVISOR_RATE_LIMIT); see Retry-After"},
    503: {**_PROBLEM, "description": "Database unavailable; see Retry-After"},
}


def build_app(
    settings: Settings,
    queue: JobQueue,
    *,
    probe: BrokerProbe | None = None,
    maintenance: bool = True,
    on_shutdown: Callable[[], None] | None = None,
    sweep_queue: JobQueue | None = None,
) -> FastAPI:
    """The app over ``settings``' database, sending jobs to ``queue``. ``probe`` (the real broker, when
    there is one) answers readiness and queue depth; ``on_shutdown`` runs last when the app stops;
    ``sweep_queue`` is what the maintenance sweep sends through (default: ``queue``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.ensure_dirs()
        settle_heap()
        # As many threads for sync routes as the pool has connections for them (see size_pool).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        thread = None
        if maintenance and settings.maintenance_interval > 0:
            thread = MaintenanceThread(settings, sweep_queue or queue, settings.maintenance_interval, probe=probe)
            thread.start()
        sender = None
        if maintenance and settings.webhook_poll_interval > 0:
            sender = DeliveryThread(settings, settings.webhook_poll_interval)
            sender.start()
        yield
        if sender is not None:
            sender.stop()
        if thread is not None:
            thread.stop()
        if on_shutdown is not None:
            on_shutdown()  # e.g. close the broker, stop the embedded worker (uvicorn re-raises SIGTERM after)

    app = FastAPI(
        title="Redundancy Advisor",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served offline by install_offline_docs
        redoc_url=None,
        generate_unique_id_function=operation_id,
        openapi_tags=[
            {"name": "jobs", "description": "Submit, poll, cancel and delete analyses; read results."},
            {"name": "recommendations", "description": "Minimal neuron fraction for a model and dataset."},
            {"name": "datasets", "description": "Upload files of embeddings; a job names one as `upload:<id>`."},
            {"name": "catalog", "description": "Models and datasets this server can analyse."},
            {"name": "webhooks", "description": "Signed job events (Standard Webhooks) and their deliveries."},
            {"name": "health", "description": "Liveness, readiness and Prometheus metrics."},
        ],
    )
    app.state.settings = settings
    app.state.queue = queue
    app.state.probe = probe
    app.state.request_metrics = RequestMetrics()
    app.state.rate_limiter = RateLimiter(settings)
    app.state.response_cache = ResponseCache(settings.cache_max_bytes)
    app.state.job_pages = JobPages()
    size_pool(settings.api_threads, settings.db_pool_timeout)
    install_error_handlers(app, body_problems)
    for module in (jobs, artifacts, datasets, deliveries, recommendations, catalog):
        app.include_router(module.router, responses=V1_RESPONSES)  # rate: RateGate, below
    app.include_router(health.router)
    install_offline_docs(app)
    install_ui(app)
    app.add_middleware(CacheHits, cache=app.state.response_cache, settings=settings)
    app.add_middleware(LoadShedding, settings=settings)  # 503 + Retry-After at once past the in-flight bounds
    app.add_middleware(EdgeLimits, settings=settings)
    app.add_middleware(RateGate, settings=settings, limiter=app.state.rate_limiter)  # 429 before anything else
    app.add_middleware(RequestTiming, metrics=app.state.request_metrics)  # outermost: times everything
    app.add_middleware(RequestSpans)  # a trace span per request when tracing is on (service.core.tracing)

    return app
