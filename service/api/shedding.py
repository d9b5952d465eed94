"""Shed load, never go silent: past a bound on the requests one API process has in flight, a request is
answered **503 + Retry-After at once** instead of waiting in a queue until the client gives up.

Two bounds, both settings: ``ADVISOR_MAX_IN_FLIGHT`` (every ``/v1`` request this process is serving,
default 1,000) and ``ADVISOR_MAX_IN_FLIGHT_WRITES`` (``POST``, ``PUT``, ``PATCH`` and ``DELETE`` on ``/v1``,
default 64: a write holds a database connection and, embedded, the SQLite writer's lock, so writes are
what piles up: at 500 clients 170 POSTs got no answer within 10 s before this bound). ``/healthz``,
``/readyz`` and ``/metrics`` are never shed. Shed requests are counted by the request metrics (status 503).
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import problem_response
from service.core.config import Settings

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def overloaded(settings: Settings, why: str) -> Any:
    """The answer to a request shed: 503 problem+json, ``Retry-After: ADVISOR_RETRY_AFTER``."""
    return problem_response(
        503, f"{why}; retry in {settings.retry_after} s.", slug="overloaded", title="Service Unavailable",
        headers={"Retry-After": str(settings.retry_after)})


class LoadShedding:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings
        self.in_flight = self.writes = 0
        self.shed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1"):
            await self.app(scope, receive, send)
            return
        write = scope["method"] in WRITES
        writes_full = write and self.writes >= self.settings.max_in_flight_writes
        if writes_full or self.in_flight >= self.settings.max_in_flight:
            self.shed += 1
            what = "writes" if writes_full else "requests"
            await overloaded(self.settings, f"The server is at its bound of {what} in flight")(scope, receive, send)
            return
        self.in_flight += 1
        self.writes += write
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.writes -= write
