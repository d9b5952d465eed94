"""/healthz (process up), /readyz (database and broker reachable), /metrics (Prometheus text)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from service.api.deps import OperatorDep, ProbeDep, SessionDep, SettingsDep
from service.api.errors import ProblemError, problem_response
from service.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from service.api.metrics import render as render_metrics
from service.api.schemas import Health, Problem
from service.api.sessions import ShortSessionRoute
from service.core.db import get_engine

router = APIRouter(tags=["health"], route_class=ShortSessionRoute)
T = TypeVar("T")
_PROBES = ThreadPoolExecutor(max_workers=4, thread_name_prefix="advisor-probe")


def within(seconds: float, call: Callable[[], T], late: T) -> T:
    """``call()``'s answer, or ``late`` when it has none within ``seconds`` (a hung broker): readiness and
    metrics answer in bounded time (the call itself ends by its socket timeout, in the probe thread)."""
    try:
        return _PROBES.submit(call).result(timeout=seconds)
    except FutureTimeout:
        return late


@router.get("/healthz", response_model=Health, summary="Liveness: the process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="Readiness: database (migrated) and broker reachable",
    responses={
        503: {
            "model": Problem,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
            "description": "Not ready; `checks` (shown to a caller with a key) says what failed",
        }
    },
)
def readyz(settings: SettingsDep, broker: ProbeDep, operator: OperatorDep) -> JSONResponse:
    """Ready or not. The checks (what failed, and why) are shown only to a caller with a valid key (or to
    everyone with `ADVISOR_METRICS_PUBLIC`): they name the database and the broker."""
    checks: dict[str, str] = {}
    try:
        with get_engine(settings.db_url).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            try:
                version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            except Exception:  # noqa: BLE001
                version = None
            checks["database"] = (
                f"ok (schema {version})" if version else "error: schema missing; run `advisor db upgrade`"
            )
    except Exception as exc:  # noqa: BLE001
        checks["database"] = f"error: {type(exc).__name__}: {str(exc)[:200]}"
    if broker is None:
        checks["broker"] = "ok (in-process queue)"
    else:
        err = within(settings.ready_timeout, broker.ping, f"no answer within {settings.ready_timeout:g} s")
        checks["broker"] = "ok" if err is None else f"error: {err}"
    ready = all(v.startswith("ok") for v in checks.values())
    if ready:
        return JSONResponse(Health(status="ok", checks=checks if operator else {}).model_dump())
    if not operator:
        return problem_response(503, "Not ready.", slug="not-ready", title="Service Unavailable",
                                headers={"Retry-After": str(settings.retry_after)})
    bad = ", ".join(k for k, v in checks.items() if not v.startswith("ok"))
    return problem_response(
        503, f"Not ready: {bad}.", slug="not-ready", title="Service Unavailable", extra={"checks": checks},
        headers={"Retry-After": str(settings.retry_after)},
    )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics (needs a key when the server has keys, unless ADVISOR_METRICS_PUBLIC)",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                     "description": "Prometheus text exposition format 0.0.4."},
               401: {"model": Problem, "content": {"application/problem+json": {}},
                     "description": "No or unknown API key"}},
)
def metrics(request: Request, session: SessionDep, broker: ProbeDep, operator: OperatorDep,
            settings: SettingsDep) -> Response:
    if not operator:
        raise ProblemError(401, "An API key is required for /metrics (or set ADVISOR_METRICS_PUBLIC).",
                           slug="unauthorized", headers={"WWW-Authenticate": "Bearer"})
    depth = within(settings.ready_timeout, broker.depth, None) if broker is not None else None
    body = render_metrics(request.app.state.request_metrics, session, depth,
                          limiter=request.app.state.rate_limiter)
    return Response(body, media_type=METRICS_CONTENT_TYPE)
