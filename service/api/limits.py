"""Limits at the HTTP edge: body size (413), media type (415), NUL bytes in the URL (422) and the
per-key request rate (429 + ``Retry-After``).

The rate is counted by the ``limits`` library: in Redis when the broker is Redis (so every API
replica shares the count), in memory in embedded mode. The per-key cap on queued + running jobs is
the database's count (``service.core.queries.active_jobs``), checked at submission.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, unquote

import anyio.to_thread
from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.exceptions import HTTPException

from service.api.deps import OwnerDep
from service.api.errors import ProblemError, problem_response
from service.core.config import Settings

log = logging.getLogger("service.api.limits")

MAX_QUERY_VALUES = 10
"""Values one repeatable query parameter may carry (``?delta=…&delta=…`` on the plots): each δ costs
a rendering pass (300 of them cost 8.3 s of CPU before this cap)."""

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
UPLOAD_PATH = "/v1/datasets"  # POST: a multipart file (service.api.routes.datasets), not a JSON body
MULTIPART_OVERHEAD = 64 * 1024
"""Bytes an upload's body may carry besides the file itself (boundaries, part headers, other fields)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_json_media_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def nul_in_url(scope: Scope) -> str | None:
    """The name of the query parameter (or ``path``) whose value holds a NUL byte, if any."""
    if "\x00" in unquote(scope.get("path", "")):
        return "path"
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "") or "query"
    return None


class EdgeLimits:
    """ASGI middleware: refuse what must never reach a route, before any of the body is read.

    * body over ``settings.max_body_bytes`` → 413 (by ``Content-Length``, or counted while streaming);
      an upload (``POST /v1/datasets``) over ``settings.max_upload_bytes`` plus the multipart overhead;
    * a body that is not JSON on POST/PUT/PATCH → 415 (an upload's media type is its route's to check);
    * a NUL byte in the path or a query parameter → 422 naming it (Postgres cannot store NUL).
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        bad = nul_in_url(scope)
        if bad is not None:
            reason = "contains a NUL byte"
            await self._answer(scope, receive, send, problem_response(
                422, f"Invalid value for `{bad}`: {reason}", slug="validation-error",
                title="Request validation failed", instance=path,
                errors=[{"field": bad, "reason": reason, "location": "path" if bad == "path" else "query"}],
            ))
            return
        upload = path.rstrip("/") == UPLOAD_PATH  # another method there is the router's 405, whatever the body
        limit = (self.settings.max_upload_bytes + MULTIPART_OVERHEAD if upload and scope["method"] == "POST"
                 else self.settings.max_body_bytes)
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._answer(scope, receive, send, _too_large(limit, path))
            return
        has_body = (length is not None and length != "0") or "transfer-encoding" in headers
        if (scope["method"] in BODY_METHODS and has_body and not upload
                and not is_json_media_type(headers.get("content-type", ""))):
            await self._answer(scope, receive, send, problem_response(
                415, "Send the body as `application/json`.", slug="unsupported-media-type", instance=path,
                errors=[{"field": "Content-Type", "reason": "expected application/json", "location": "header"}],
            ))
            return
        await self.app(scope, _counting(receive, limit), send)

    @staticmethod
    async def _answer(scope: Scope, receive: Receive, send: Send, response: Any) -> None:
        await response(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised while the body streams in; an HTTPException so FastAPI's body parser lets it through."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes.")


def _too_large(limit: int, path: str) -> Any:
    return problem_response(
        413, f"The request body is larger than {limit} bytes.", slug="body-too-large", instance=path,
        errors=[{"field": "body", "reason": f"larger than {limit} bytes", "location": "body"}],
    )


def _counting(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises :class:`BodyTooLarge` once more than ``limit`` body bytes arrived (a
    chunked body, or a ``Content-Length`` that lied)."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped


class RateLimiter:
    """Per-key request rate (``settings.rate_limit``, e.g. ``20/second;600/minute``) by ``limits``'
    moving window. The rate limit protects the service, it must not take it down: Redis is asked with a
    short socket timeout (``ADVISOR_RATE_LIMIT_TIMEOUT``), and when it fails or does not answer the
    request goes on, counted in this process's memory, and Redis is left alone for
    ``ADVISOR_RATE_LIMIT_PAUSE`` seconds (``storage_failures`` and ``in_memory`` are in /metrics)."""

    def __init__(self, settings: Settings) -> None:
        self.items: list[RateLimitItem] = parse_many(settings.rate_limit) if settings.rate_limit.strip() else []
        redis = bool(settings.broker_url and settings.broker_url.startswith(("redis://", "rediss://")))
        timeout = settings.rate_limit_timeout
        storage: Storage = (
            storage_from_string(settings.broker_url, socket_timeout=timeout, socket_connect_timeout=timeout)
            if redis else MemoryStorage()
        )
        self.limiter = MovingWindowRateLimiter(storage)
        # this process's own count: checked first, inline; alone while Redis does not answer
        self.local = self.limiter if not redis else MovingWindowRateLimiter(MemoryStorage())
        self.blocking = redis  # a network round trip per hit
        self.namespace = settings.queue  # deployments (and test runs) sharing one Redis count apart
        self.pause = settings.rate_limit_pause
        self.storage_failures = 0
        self._skip_until = 0.0

    @property
    def in_memory(self) -> bool:
        return self.blocking and time.monotonic() < self._skip_until

    async def wait(self, owner: str, request: Request) -> int | None:
        """``retry_after`` for this request's caller: the key, or without keys the client address. No
        limit: None at once. This process's own count is checked first, inline: a key over its rate in
        one process is over it everywhere, so a flooding key's excess is answered 429 without a thread hop
        or a Redis round trip, and never costs another key's requests. Only requests under the local
        count ask Redis (in a worker thread), which keeps the count shared between replicas."""
        if not self.items:
            return None
        identity = owner or f"addr:{request.client.host if request.client else '-'}"
        local = self._check(self.local, identity)
        if local is not None or not self.blocking or self.in_memory:
            return local
        return await anyio.to_thread.run_sync(self._shared, identity)

    def retry_after(self, identity: str) -> int | None:
        """None when the request may go on; else the seconds until it may (this process's count, then
        the shared one)."""
        local = self._check(self.local, identity)
        if local is not None or not self.blocking or self.in_memory:
            return local
        return self._shared(identity)

    def _shared(self, identity: str) -> int | None:
        """The shared (Redis) count; when Redis fails or does not answer, the request goes on (this
        process's count, already taken, stands alone for ``ADVISOR_RATE_LIMIT_PAUSE`` seconds)."""
        try:
            return self._check(self.limiter, identity)
        except Exception:  # noqa: BLE001 - storage down or hung: count in memory for a while
            self.storage_failures += 1
            self._skip_until = time.monotonic() + self.pause
            log.warning("rate-limit storage unavailable; counting in memory for %.0f s", self.pause, exc_info=True)
            return None

    def _check(self, limiter: MovingWindowRateLimiter, identity: str) -> int | None:
        for item in self.items:
            if limiter.hit(item, self.namespace, identity):
                continue
            reset = limiter.get_window_stats(item, self.namespace, identity).reset_time
            return max(1, math.ceil(reset - time.time()))
        return None


async def rate_limited(request: Request, owner: OwnerDep) -> None:
    """Route dependency: 429 + ``Retry-After`` when this key (or, without keys, this client address)
    is over the rate."""
    wait = await request.app.state.rate_limiter.wait(owner, request)
    if wait is not None:
        raise ProblemError(
            429, f"Too many requests; retry in {wait} s.", slug="rate-limited", title="Too Many Requests",
            headers={"Retry-After": str(wait)},
        )
