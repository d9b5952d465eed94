"""/healthz (process up), /readyz (database and broker reachable), /metrics (Prometheus text)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from service.api.deps import ProbeDep, SessionDep, SettingsDep
from service.api.errors import problem_response
from service.api.metrics import render_db_metrics
from service.api.schemas import Health, Problem
from service.api.sessions import ShortSessionRoute
from service.core.db import get_engine

router = APIRouter(tags=["health"], route_class=ShortSessionRoute)


@router.get("/healthz", response_model=Health, summary="Liveness: the process is up")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="Readiness: database (migrated) and broker reachable",
    responses={
        503: {
            "model": Problem,
            "content": {"application/problem+json": {}},
            "description": "Not ready; `checks` says what failed",
        }
    },
)
def readyz(settings: SettingsDep, broker: ProbeDep) -> JSONResponse:
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
        err = broker.ping()
        checks["broker"] = "ok" if err is None else f"error: {err}"
    if all(v.startswith("ok") for v in checks.values()):
        return JSONResponse(Health(status="ok", checks=checks).model_dump())
    bad = ", ".join(k for k, v in checks.items() if not v.startswith("ok"))
    return problem_response(
        503, f"Not ready: {bad}.", slug="not-ready", title="Service Unavailable", extra={"checks": checks}
    )


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
def metrics(request: Request, session: SessionDep, broker: ProbeDep) -> PlainTextResponse:
    lines = request.app.state.request_metrics.render()
    try:
        depth = broker.depth() if broker is not None else None
        lines += render_db_metrics(session, depth)
        lines += ["# HELP advisor_up Database reachable.", "# TYPE advisor_up gauge", "advisor_up 1"]
    except Exception:  # noqa: BLE001
        lines += ["# HELP advisor_up Database reachable.", "# TYPE advisor_up gauge", "advisor_up 0"]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4; charset=utf-8")
