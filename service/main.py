"""The FastAPI application factory. ``uvicorn service.main:app`` or ``advisor serve``."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from service.api.docs import install_offline_docs
from service.api.errors import install_error_handlers
from service.api.routes import catalog, health, jobs, recommendations
from service.core.config import Settings, get_settings
from service.maintenance import MaintenanceThread
from service.metrics import RequestMetrics
from service.ui import install_ui

log = logging.getLogger("service")

DESCRIPTION = """
**How many neurons of a pre-trained representation do you actually need?**

Submit a job (`POST /v1/jobs`: a timm backbone and a dataset), poll it (`GET /v1/jobs/{id}`), then ask
for the minimal neuron fraction within a tolerance δ of the full layer, with its fairness cost
(`GET /v1/jobs/{id}/recommendation?delta=0.01`). Recommendations for any δ are answered from the stored
accuracy curve; nothing is recomputed.

Errors are `application/problem+json` (RFC 9457). When the server has API keys configured, send yours
in `X-API-Key` (or `Authorization: Bearer`); a key sees only its own jobs.
"""


def create_app(
    settings: Settings | None = None,
    *,
    enqueue: Callable[[str], None] | None = None,
    maintenance: bool = True,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """Build the app. ``enqueue`` replaces the Celery broker (tests run jobs in-process)."""
    settings = settings or get_settings()
    broker = None
    if enqueue is None:
        from service.broker import Broker

        broker = Broker(settings)
        enqueue = broker.enqueue

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.ensure_dirs()
        from service.validation import warm_up

        warm_up()
        thread = None
        if maintenance and settings.maintenance_interval > 0:
            thread = MaintenanceThread(settings, enqueue, settings.maintenance_interval)
            thread.start()
        yield
        if thread is not None:
            thread.stop()
        if broker is not None:
            broker.close()
        if on_shutdown is not None:
            on_shutdown()  # e.g. stop the embedded worker (uvicorn re-raises SIGTERM after this)

    app = FastAPI(
        title="Redundancy Advisor",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served offline by install_offline_docs
        redoc_url=None,
        openapi_tags=[
            {"name": "jobs", "description": "Submit, poll, cancel and delete analyses; read results."},
            {"name": "recommendations", "description": "Minimal neuron fraction for a model and dataset."},
            {"name": "catalog", "description": "Models and datasets this server can analyse."},
            {"name": "health", "description": "Liveness, readiness and Prometheus metrics."},
        ],
    )
    app.state.settings = settings
    app.state.enqueue = enqueue
    app.state.broker = broker
    app.state.request_metrics = RequestMetrics()
    install_error_handlers(app)
    for module in (jobs, recommendations, catalog, health):
        app.include_router(module.router)
    install_offline_docs(app)
    install_ui(app)

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


def __getattr__(name: str) -> FastAPI:
    # `uvicorn service.main:app` builds the app lazily from the environment.
    if name == "app":
        return create_app()
    raise AttributeError(name)
