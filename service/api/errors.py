"""RFC 9457 problem details for every error the API returns.

The core's domain errors (``service.core.errors``) become problem+json here and nowhere else:
:func:`problem_for` is the one translation table, installed as an exception handler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.staticfiles import StaticFiles

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
    410: "Gone",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
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


def validation_problem(field: str, reason: str, location: str = "body", code: str | None = None) -> ProblemError:
    """422 naming ``field`` and ``reason`` (the sentence is the core's :class:`InvalidInput`); ``code``:
    a machine-readable code for the caller, as a failed job's ``error.code``."""
    return validation_problems([(field, reason, code)], location)


def validation_problems(problems: Sequence[tuple[str, str, str | None]], location: str = "body") -> ProblemError:
    """One 422 naming every bad field: ``(field, reason, code)`` each; the top-level ``code`` is the
    first's (each error carries its own)."""
    errors: list[dict[str, Any]] = []
    for field, reason, code in problems:
        errors.append({"field": field, "reason": reason, "location": location, **({"code": code} if code else {})})
    first_field, first_reason, first_code = problems[0]
    detail = (str(domain.InvalidInput(first_field, first_reason)) if len(problems) == 1
              else "The request is invalid: " + ", ".join(dict.fromkeys(e["field"] for e in errors)) + ".")
    extra = {"code": first_code} if first_code else {}
    return ProblemError(422, detail, slug="validation-error", title="Request validation failed", errors=errors,
                        **extra)


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
        case domain.BadPageToken():
            return ProblemError(400, str(exc), slug="bad-page-token", title="Bad page token",
                                errors=[{"field": exc.field, "reason": exc.reason, "location": "query"}],
                                hint="Pass the next_page_token of a previous page, or omit page_token.")
        case domain.TooManyActiveJobs():
            return ProblemError(429, str(exc), slug="too-many-active-jobs", title="Too Many Requests",
                                headers={"Retry-After": str(exc.retry_after)},
                                hint="Wait for a job to finish, or cancel one.")
        case domain.ArtifactUnavailable():
            return ProblemError(409, str(exc), slug="artifact-unavailable", title="No artifact for this job",
                                reason=exc.reason)
        case domain.ArtifactGone():
            return ProblemError(410, str(exc), slug="artifact-stats-gone", title="Statistics gone",
                                reason=exc.reason, hint="Submit the job again to keep new statistics.")
        case domain.ArtifactNotSupported():
            return ProblemError(422, str(exc), slug="artifact-not-supported", title="No artifact for this probe",
                                errors=[{"field": exc.field, "reason": exc.reason, "location": "job"}])
        case domain.TasksMissing():
            return ProblemError(409, str(exc), slug="tasks-missing", title="No analysis yet for some datasets",
                                datasets=exc.datasets,
                                hint="Submit one per dataset: POST /v1/jobs with the same model, weights and "
                                "layer, then poll them until they succeed.")
        case domain.TasksIncompatible():
            return ProblemError(422, str(exc), slug="tasks-incompatible", title="Jobs cannot share one subset",
                                errors=[{"field": exc.field, "reason": exc.reason, "location": "job"}],
                                jobs=exc.jobs)
        case domain.InvalidUpload():  # a part of the body: the uploaded file, or a job's `upload:<id>`
            return validation_problem(exc.field, exc.reason, "body", code=exc.code)
        case domain.UploadNotFound():
            return ProblemError(404, str(exc), slug="upload-not-found", title="Upload not found",
                                hint="List your uploads with GET /v1/datasets.")
        case domain.UploadTooLarge():
            return ProblemError(413, str(exc), slug="upload-too-large", title="Content Too Large",
                                errors=[{"field": "file", "reason": f"larger than {exc.limit} bytes",
                                         "location": "body"}], limit=exc.limit)
        case domain.UploadQuotaExceeded():
            return ProblemError(429, str(exc), slug="upload-quota-exceeded", title="Too Many Requests",
                                quota=exc.what, limit=exc.limit, hint="Delete an upload: DELETE /v1/datasets/{id}.")
        case domain.UploadInUse():
            return ProblemError(409, str(exc), slug="upload-in-use", title="Upload in use", jobs=exc.job_ids)
        case domain.InvalidInput():  # the core's only caller input is a query parameter (page_token)
            return validation_problem(exc.field, exc.reason, "query")
        case domain.Unavailable():
            return ProblemError(503, str(exc), slug="database-unavailable", title="Service Unavailable",
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


def _undecodable_body(request: Request, err: dict[str, Any]) -> JSONResponse:
    """400 for a body that is not JSON at all (pydantic reports the character offset as the field)."""
    loc = err.get("loc", ())
    pos = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    why = str((err.get("ctx") or {}).get("error", "not valid JSON"))
    detail = f"The body is not valid JSON: {why}" + (f" at position {pos}." if pos is not None else ".")
    return problem_response(
        400,
        detail,
        slug="malformed-body",
        title="Malformed request body",
        instance=request.url.path,
        errors=[{"field": "body", "reason": detail, "location": "body"}],
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path, for a 405's ``Allow`` (RFC 9110 15.5.6).

    Asks the routes themselves, one method at a time: FastAPI wraps an included router in one route
    whose own ``methods`` is empty, and the router's 405 names only the first matching route's. A route
    that matches any method (a mount) is not asked; a static-files mount serves GET and HEAD."""
    scope = request.scope

    def full(route: Any, method: str) -> bool:
        # Nested dicts copied: FastAPI's matching writes its context into scope["fastapi"].
        probe = {k: dict(v) if isinstance(v, dict) else v for k, v in scope.items()}
        probe["method"] = method
        probe["root_path"] = scope.get("app_root_path", scope.get("root_path", ""))  # a mount moved it on
        return route.matches(probe)[0] == Match.FULL

    methods: set[str] = set()
    for route in request.app.router.routes:
        if full(route, "__none__"):
            if isinstance(getattr(route, "app", None), StaticFiles):
                methods |= {"GET", "HEAD"}
            continue
        methods |= {m for m in _METHODS if full(route, m)}
    return sorted(methods)


BodyProblems = Callable[[Request, Any, set[str]], list[dict[str, Any]]]


def install_error_handlers(app: FastAPI, body_problems: BodyProblems | None = None) -> None:
    """``body_problems(request, raw_body, fields_already_named)``: the meaning errors of a body that
    failed its shape validation, so that one 422 names every bad field (issue 18)."""
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
    @app.exception_handler(InterfaceError)
    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        # The database is unreachable (restarting, failing over); the pool reconnects once it is back.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, str(exc).splitlines()[0])
        retry = int(request.app.state.settings.retry_after)
        return await _problem(request, problem_for(domain.Unavailable("database unreachable", retry)))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        undecodable = next((e for e in exc.errors() if e.get("type") == "json_invalid"), None)
        if undecodable is not None:
            return _undecodable_body(request, undecodable)
        errors = []
        for err in exc.errors():
            field, location = _field_of(err.get("loc", ()))
            errors.append({"field": field, "reason": _reason(err), "location": location})
        if body_problems is not None:  # in a thread: its checks may resolve host names (a callback, MLflow)
            errors += await anyio.to_thread.run_sync(body_problems, request, exc.body, {e["field"] for e in errors})
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
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem_response(exc.status_code, detail, instance=request.url.path, headers=headers or None)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500,
            "An unexpected error occurred; it has been logged.",
            slug="internal-error",
            instance=request.url.path,
        )
