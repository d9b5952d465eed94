"""The FastAPI application: routes, problem+json handlers, request metrics and the maintenance sweep.

It receives its queue (:class:`~service.core.queue.JobQueue`) and, optionally, a broker probe for
readiness; it never builds them. The composition root (``service.main.create_app``) wires in Celery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI, Request, Response

from service.api.cache import ResponseCache
from service.api.errors import install_error_handlers
from service.api.metrics import RequestMetrics
from service.api.routes import catalog, health, jobs, recommendations
from service.core.config import Settings
from service.core.db import size_pool
from service.core.maintenance import MaintenanceThread
from service.core.queue import BrokerProbe, JobQueue

log = logging.getLogger("service.api")

DESCRIPTION = """
**How many neurons of a pre-trained representation do you actually need?**

Submit a job (`POST /v1/jobs`: a timm backbone and a dataset), poll it (`GET /v1/jobs/{id}`), then ask
for the minimal neuron fraction within a tolerance δ of the full layer, with its fairness cost
(`GET /v1/jobs/{id}/recommendation?delta=0.01`). Recommendations for any δ are answered from the stored
accuracy curve; nothing is recomputed.

Errors are `application/problem+json` (RFC 9457). When the server has API keys configured, send yours
in `X-API-Key` (or `Authorization: Bearer`); a key sees only its own jobs.
"""


def build_app(
    settings: Settings,
    queue: JobQueue,
    *,
    probe: BrokerProbe | None = None,
    maintenance: bool = True,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """The app over ``settings``' database, sending jobs to ``queue``. ``probe`` (the real broker, when
    there is one) answers readiness and queue depth; ``on_shutdown`` runs last when the app stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.ensure_dirs()
        # As many threads for sync routes as the pool has connections for them (see size_pool).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        thread = None
        if maintenance and settings.maintenance_interval > 0:
            thread = MaintenanceThread(settings, queue, settings.maintenance_interval)
            thread.start()
        yield
        if thread is not None:
            thread.stop()
        if on_shutdown is not None:
            on_shutdown()  # e.g. close the broker, stop the embedded worker (uvicorn re-raises SIGTERM after)

    app = FastAPI(
        title="Redundancy Advisor",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "jobs", "description": "Submit, poll, cancel and delete analyses; read results."},
            {"name": "recommendations", "description": "Minimal neuron fraction for a model and dataset."},
            {"name": "catalog", "description": "Models and datasets this server can analyse."},
            {"name": "health", "description": "Liveness, readiness and Prometheus metrics."},
        ],
    )
    app.state.settings = settings
    app.state.queue = queue
    app.state.probe = probe
    app.state.request_metrics = RequestMetrics()
    app.state.response_cache = ResponseCache(settings.cache_max_bytes)
    size_pool(settings.api_threads, settings.db_pool_timeout)
    install_error_handlers(app)
    for module in (jobs, recommendations, catalog, health):
        app.include_router(module.router)

    @app.middleware("http")
    async def _timing(request: Request, call_next: Callable) -> Response:  # type: ignore[type-arg]
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", None) or "<unmatched>"
            if path != "/metrics":
                app.state.request_metrics.observe(request.method, path, status, time.perf_counter() - start)

    return app
