"""RFC 9457 problem details for every error the API returns.

The core's domain errors (``service.core.errors``) become problem+json here and nowhere else:
:func:`problem_for` is the one translation table, installed as an exception handler.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.core import errors as domain

log = logging.getLogger("service.api")

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:redundancy-advisor:problem:"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ProblemError(Exception):
    """Raise from a route to answer with a problem+json body."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        errors: Sequence[dict[str, Any]] | None = None,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.title = title or _TITLES.get(status, "Error")
        self.errors = list(errors) if errors is not None else None
        self.hint = hint
        self.headers = headers
        self.extra = extra


def validation_problem(field: str, reason: str, location: str = "body") -> ProblemError:
    return ProblemError(
        422,
        f"Invalid value for `{field}`: {reason}",
        slug="validation-error",
        title="Request validation failed",
        errors=[{"field": field, "reason": reason, "location": location}],
    )


def problem_for(exc: domain.JobError) -> ProblemError:
    """The problem+json answer for a domain error (HTTP statuses, slugs and hints live here only)."""
    match exc:
        case domain.JobNotFound():
            return ProblemError(404, str(exc), slug="job-not-found", title="Job not found",
                                hint="List your jobs with GET /v1/jobs.")
        case domain.ResultMissing():
            return ProblemError(404, str(exc), slug="result-missing")
        case domain.IdempotencyConflict():
            return ProblemError(409, str(exc), slug="idempotency-key-reused", title="Idempotency key reused",
                                job_id=exc.job_id)
        case domain.AlreadyFinished():
            return ProblemError(409, str(exc), slug="job-finished", title="Job already finished",
                                job_status=exc.status.value)
        case domain.NotFinished():
            return ProblemError(409, str(exc), slug="job-not-finished", title="Job not finished",
                                hint=f"Cancel it first: POST /v1/jobs/{exc.job_id}/cancel",
                                job_status=exc.status.value)
        case domain.NotSucceeded():
            return ProblemError(409, str(exc), slug="result-not-ready", title="Result not available",
                                job_status=exc.status.value,
                                hint=f"Poll GET /v1/jobs/{exc.job_id} until status is succeeded.")
        case domain.InvalidInput():  # the core's only caller input is a query parameter (page_token)
            return validation_problem(exc.field, exc.reason, "query")
        case domain.Unavailable():
            return ProblemError(503, str(exc), slug="unavailable", title="Service Unavailable",
                                headers={"Retry-After": str(exc.retry_after)})
        case domain.NotFound():
            return ProblemError(404, str(exc), slug="not-found")
        case domain.Conflict():
            return ProblemError(409, str(exc), slug="conflict")
    return ProblemError(400, str(exc), slug="bad-request")


def problem_response(
    status: int,
    detail: str | None,
    *,
    slug: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + slug if slug else "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    if hint:
        body["hint"] = hint
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_of(loc: Sequence[Any]) -> tuple[str, str]:
    parts = list(loc)
    location = str(parts[0]) if parts and parts[0] in ("body", "query", "path", "header", "cookie") else ""
    if location:
        parts = parts[1:]
    # Drop pydantic's internal step names (e.g. function-after[...]).
    cleaned = [str(p) for p in parts if not (isinstance(p, str) and "[" in p and "]" in p)]
    return (".".join(cleaned) or location or "body"), (location or "body")


def _reason(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    return msg.removeprefix("Value error, ")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.detail,
            slug=exc.slug,
            title=exc.title,
            instance=request.url.path,
            errors=exc.errors,
            hint=exc.hint,
            headers=exc.headers,
            extra=exc.extra,
        )

    @app.exception_handler(domain.JobError)
    async def _domain(request: Request, exc: domain.JobError) -> JSONResponse:
        return await _problem(request, problem_for(exc))

    @app.exception_handler(PoolTimeout)
    async def _pool_timeout(request: Request, exc: PoolTimeout) -> JSONResponse:
        # No free database connection within ADVISOR_DB_POOL_TIMEOUT: answer now rather than hang.
        retry = int(request.app.state.settings.retry_after)
        return await _problem(request, problem_for(domain.Unavailable("no free database connection", retry)))

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> JSONResponse:
        # The database is unreachable (restarting, failing over); the pool reconnects once it is back.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, str(exc).splitlines()[0])
        retry = int(request.app.state.settings.retry_after)
        return await _problem(request, problem_for(domain.Unavailable("database unreachable", retry)))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            field, location = _field_of(err.get("loc", ()))
            errors.append({"field": field, "reason": _reason(err), "location": location})
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        return problem_response(
            422,
            f"The request is invalid: {fields}.",
            slug="validation-error",
            title="Request validation failed",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem_response(
            exc.status_code,
            detail,
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500,
            "An unexpected error occurred; it has been logged.",
            slug="internal-error",
            instance=request.url.path,
        )
