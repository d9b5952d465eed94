"""Limits at the HTTP edge: body size (413), media type (415), NUL bytes in the URL (422) and the
per-key request rate (429 + ``Retry-After``).

The rate is counted by the ``limits`` library: in Redis when the broker is Redis (so every API
replica shares the count), in memory in embedded mode. The per-key cap on queued + running jobs is
the database's count (``service.core.queries.active_jobs``), checked at submission.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, unquote

import anyio.to_thread
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.exceptions import HTTPException

from service.api.deps import OWNER_STATE, owner_of
from service.api.errors import ProblemError, problem_response
from service.api.shedding import overloaded
from service.core.config import Settings

log = logging.getLogger("service.api.limits")

MAX_DELAYED = 2_000
"""429 answers one process holds back at once (``ADVISOR_RATE_LIMIT_DELAY``); past it, sent at once."""

MAX_BLOCKED = 100_000
"""Callers remembered as over their rate (:meth:`RateLimiter._local`); past it the memo starts afresh."""

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
        self._blocked: dict[str, float] = {}  # identity → when its local window frees a place (time.time())

    @property
    def in_memory(self) -> bool:
        return self.blocking and time.monotonic() < self._skip_until

    @staticmethod
    def identity(owner: str, client: tuple[str, int] | list[Any] | None) -> str:
        """Who is counted: the key (its hash), or without keys the client address."""
        return owner or f"addr:{client[0] if client else '-'}"

    async def wait(self, identity: str) -> int | None:
        """``retry_after`` for this caller (:meth:`identity`). No limit: None at once. This process's own
        count is checked first, inline: a key over its rate in one process is over it everywhere, so a
        flooding key's excess is answered 429 without a thread hop or a Redis round trip. Only requests
        under the local count ask Redis (in a worker thread), which keeps the count shared between replicas."""
        if not self.items:
            return None
        local = self._local(identity)
        if local is not None or not self.blocking or self.in_memory:
            return local
        return await anyio.to_thread.run_sync(self._shared, identity)

    def retry_after(self, identity: str) -> int | None:
        """None when the request may go on; else the seconds until it may (this process's count, then
        the shared one)."""
        local = self._local(identity)
        if local is not None or not self.blocking or self.in_memory:
            return local
        return self._shared(identity)

    def _local(self, identity: str) -> int | None:
        """This process's count. A caller refused is refused, with no count asked, until the moment its
        window frees a place (``reset_time``): a refused request records no hit, so none can free one
        sooner; the same answers, without walking the window for each request of a flood."""
        until = self._blocked.get(identity)
        if until is not None:
            if time.time() < until:
                return _seconds_until(until)
            del self._blocked[identity]
        reset = self._refusal(self.local, identity)
        if reset is None:
            return None
        if len(self._blocked) >= MAX_BLOCKED:
            self._blocked.clear()  # a bound, not a policy: the counts themselves stay exact
        self._blocked[identity] = reset
        return _seconds_until(reset)

    def _shared(self, identity: str) -> int | None:
        """The shared (Redis) count; when Redis fails or does not answer, the request goes on (this
        process's count, already taken, stands alone for ``ADVISOR_RATE_LIMIT_PAUSE`` seconds)."""
        try:
            reset = self._refusal(self.limiter, identity)
            return None if reset is None else _seconds_until(reset)
        except Exception:  # noqa: BLE001 - storage down or hung: count in memory for a while
            self.storage_failures += 1
            self._skip_until = time.monotonic() + self.pause
            log.warning("rate-limit storage unavailable; counting in memory for %.0f s", self.pause, exc_info=True)
            return None

    def _refusal(self, limiter: MovingWindowRateLimiter, identity: str) -> float | None:
        """Count one hit of ``identity`` against each limit; None when every one took it, else the moment
        (``time.time()``) the first full window frees a place."""
        for item in self.items:
            if not limiter.hit(item, self.namespace, identity):
                return limiter.get_window_stats(item, self.namespace, identity).reset_time
        return None


def _seconds_until(moment: float) -> int:
    """A ``Retry-After``: whole seconds until ``moment``, at least 1."""
    return max(1, math.ceil(moment - time.time()))


def too_many_requests(wait: int, path: str) -> Any:
    return problem_response(
        429, f"Too many requests; retry in {wait} s.", slug="rate-limited", title="Too Many Requests",
        instance=path, headers={"Retry-After": str(wait)},
    )


class NoTurn(Exception):
    """A request that got no turn of its caller's (:class:`KeySlots`): too many wait, or it waited too long."""


class KeySlots:
    """At most ``per_key`` requests of each caller at once (``ADVISOR_MAX_IN_FLIGHT_PER_KEY``); the others
    wait for a turn, first come first served, behind their own caller's requests only, at most ``max_wait``
    seconds (``ADVISOR_MAX_TURN_WAIT``) and at most ``max_waiting`` of them (``ADVISOR_MAX_IN_FLIGHT``):
    else :class:`NoTurn`. The semaphore of a caller with nothing in flight is dropped."""

    def __init__(self, per_key: int, max_wait: float, max_waiting: int) -> None:
        self.per_key, self.max_wait, self.max_waiting = per_key, max_wait, max_waiting
        self._slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    def in_flight(self, identity: str) -> int:
        """Requests of ``identity`` in flight or waiting for a turn."""
        entry = self._slots.get(identity)
        return entry[1][0] if entry else 0

    async def acquire(self, identity: str) -> None:
        """A turn for ``identity`` (give it back with :meth:`release`), or :class:`NoTurn`."""
        entry = self._slots.get(identity)
        if entry is None:
            entry = self._slots[identity] = (asyncio.Semaphore(self.per_key), [0])
        semaphore, users = entry
        if users[0] >= self.per_key + self.max_waiting:
            raise NoTurn(f"{self.max_waiting} requests of this caller wait already")
        users[0] += 1
        try:
            if semaphore.locked():
                async with asyncio.timeout(self.max_wait):  # a timer on this task: no task of its own
                    await semaphore.acquire()
            else:
                await semaphore.acquire()  # free: at once, no timer
        except BaseException as exc:
            self._leave(identity)
            if isinstance(exc, TimeoutError):
                raise NoTurn(f"no turn within {self.max_wait:g} s for this caller's requests") from None
            raise

    def release(self, identity: str) -> None:
        self._slots[identity][0].release()
        self._leave(identity)

    def _leave(self, identity: str) -> None:
        users = self._slots[identity][1]
        users[0] -= 1
        if not users[0]:
            del self._slots[identity]


class RateLimited:
    """The route label of a request the gate answered itself, 429 or 503 (``RequestTiming`` reads
    ``scope["route"].path``)."""

    path = "<rate-limited>"


class RateGate:
    """ASGI middleware, in front of every other check: the caller of a ``/v1`` request is identified
    (:func:`~service.api.deps.owner_of`, its key's hash) and counted against its rate; over it, the answer
    is 429 problem+json with ``Retry-After`` here, before the request costs anything else (no routing,
    no dependencies, no thread). A caller within its rate goes on with its identity in
    ``scope["state"]`` (:data:`OWNER_STATE`), which the routes' :func:`~service.api.deps.get_owner` reads
    instead of hashing the key again, and waits for one of its caller's turns (:class:`KeySlots`). A request
    with no valid key goes on too: the route answers 401.

    This is what keeps one key's flood from costing the others (issue 23, probe 8): its excess is refused
    at the cost of parsing the request, the refusal asks nothing but this process's count while the key
    stays over (:meth:`RateLimiter._local`), and it is sent after ``ADVISOR_RATE_LIMIT_DELAY`` (1 s, never
    past its ``Retry-After``), so a client that asks again at once asks once a second per connection
    instead of filling the event loop with refusals."""

    def __init__(self, app: ASGIApp, settings: Settings, limiter: RateLimiter) -> None:
        self.app, self.settings, self.limiter = app, settings, limiter
        self.delayed = 0  # 429s held back now
        self.slots = KeySlots(settings.max_in_flight_per_key, settings.max_turn_wait, settings.max_in_flight)
        self.shed = 0  # 503s for want of a turn

    async def _hold(self, wait: int) -> None:
        """Hold a refusal back ``ADVISOR_RATE_LIMIT_DELAY`` seconds (at most its ``Retry-After``), unless
        :data:`MAX_DELAYED` already wait: a sleeping task, no thread, no CPU."""
        delay = min(self.settings.rate_limit_delay, wait)
        if delay <= 0 or self.delayed >= MAX_DELAYED:
            return
        self.delayed += 1
        try:
            await anyio.sleep(delay)
        finally:
            self.delayed -= 1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1"):
            await self.app(scope, receive, send)
            return
        key = authorization = None
        for name, value in scope.get("headers", ()):
            if name == b"x-api-key" and key is None:
                key = value.decode("latin-1")
            elif name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
        try:
            owner = owner_of(self.settings, key, authorization)
        except ProblemError:
            await self.app(scope, receive, send)  # the route's 401
            return
        identity = RateLimiter.identity(owner, scope.get("client"))
        wait = await self.limiter.wait(identity)
        if wait is not None:
            scope["route"] = RateLimited
            await self._hold(wait)
            await too_many_requests(wait, scope["path"])(scope, receive, send)
            return
        scope.setdefault("state", {})[OWNER_STATE] = owner
        try:
            await self.slots.acquire(identity)
        except NoTurn as exc:
            self.shed += 1
            scope["route"] = RateLimited
            await overloaded(self.settings, str(exc).capitalize())(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.release(identity)
