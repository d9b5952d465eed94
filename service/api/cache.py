"""An in-process cache of finished results, with ``ETag`` / ``If-None-Match`` → 304.

A succeeded job's result, recommendations and plots never change (only a delete removes them), so the
API serves them from memory after the first read: no database connection, no thread waiting on a pool.
Entries are keyed by owner, job and the request (path and query), so one key never sees another's
entry. Pages of finished jobs are cached too, for a short time (they grow as jobs finish).

A hit is answered by :class:`CacheHits`, an ASGI middleware in front of the router, behind the rate gate
(:class:`~service.api.limits.RateGate`, which checked the caller's key and rate), and the stored body is
sent, without routing, dependency resolution, a thread, a session or a connection (a cached
recommendation at 100 clients: 1,100 req/s through the route, 4,700 here; docs/operations.md). Anything it cannot
answer (no entry, no valid key) goes on to the route, which answers as always.
A miss builds the answer in the thread pool with a session of its own, opened and closed in that
thread (the rule of :mod:`service.api.sessions`); so the routes that use :func:`cached` are
``async def``.

A delete drops the job's entries (and its owner's cached pages) in this process; another API process
(``advisor serve --workers N``) sees the delete when its entries expire (``ADVISOR_RESULT_CACHE_TTL``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import anyio.to_thread
from fastapi import Request, Response
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.deps import OWNER_STATE
from service.core.config import Settings
from service.core.db import get_sessionmaker

Key = tuple[str, str, str]  # (owner, path, sorted query | Accept)


@dataclass(frozen=True)
class Entry:
    body: bytes
    status: int
    media_type: str | None
    headers: tuple[tuple[str, str], ...]
    etag: str
    expires: float
    job_id: str | None = None  # None: a page of the owner's jobs
    route: object = None  # the route that built it: its template labels the metrics of a hit


def etag_of(body: bytes) -> str:
    """A strong validator: the body's SHA-256 (the same body gets the same tag in every process)."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of If-None-Match against ``etag`` (as sent, quotes included)."""
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


class ResponseCache:
    """Least-recently-used entries up to ``max_bytes`` of bodies; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires < time.monotonic():
                self._pop(key)
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: Key, response: Response, ttl: float, job_id: str | None = None,
            route: object = None) -> Entry:
        body = bytes(response.body)
        headers = tuple((k, v) for k, v in response.headers.items()
                        if k.lower() not in ("content-length", "content-type", "etag"))
        entry = Entry(body, response.status_code, response.media_type, headers, etag_of(body),
                      time.monotonic() + ttl, job_id, route)
        if ttl <= 0 or len(body) > self.max_bytes:
            return entry
        with self._lock:
            if key in self._entries:
                self._pop(key)
            self._entries[key] = entry
            self._bytes += len(body)
            while self._bytes > self.max_bytes and self._entries:
                self._pop(next(iter(self._entries)))
        return entry

    def drop_job(self, owner: str, job_id: str) -> None:
        """Forget the job's entries and the owner's cached pages (they may list it)."""
        with self._lock:
            for key in [k for k, e in self._entries.items()
                        if e.job_id == job_id or (k[0] == owner and e.job_id is None)]:
                self._pop(key)

    def _pop(self, key: Key) -> None:
        entry = self._entries.pop(key)
        self._bytes -= len(entry.body)


def request_key(request: Request, owner: str) -> Key:
    query = "&".join(sorted(f"{k}={v}" for k, v in request.query_params.multi_items()))
    return (owner, request.url.path, query + "|" + request.headers.get("accept", ""))  # media type too


def _answer(request: Request, entry: Entry, state: str) -> Response:
    headers = dict(entry.headers) | {"ETag": entry.etag, "X-Cache": state}
    if etag_matches(request.headers.get("if-none-match"), entry.etag):
        return Response(status_code=304, headers={"ETag": entry.etag, "X-Cache": state})
    return Response(entry.body, status_code=entry.status, media_type=entry.media_type, headers=headers)


async def cached(
    request: Request, owner: str, job_id: str | None, ttl: float, build: Callable[[Session], Response]
) -> Response:
    """The cached answer to this request, else ``build(session)`` in a worker thread (cached for
    ``ttl`` seconds when it is a 200). Either way with an ``ETag``, and 304 when ``If-None-Match``
    names it."""
    cache: ResponseCache = request.app.state.response_cache
    key = request_key(request, owner)
    entry = cache.get(key)
    if entry is not None:
        return _answer(request, entry, "hit")
    response = await anyio.to_thread.run_sync(_with_session, request.app.state.settings.db_url, build)
    if response.status_code != 200:
        return response
    return _answer(request, cache.put(key, response, ttl, job_id, request.scope.get("route")), "miss")


def _with_session(url: str, build: Callable[[Session], Response]) -> Response:
    """``build(session)``, the session closed (its connection back in the pool) in this same thread."""
    session = get_sessionmaker(url)()
    try:
        return build(session)
    finally:
        session.close()


class CacheHits:
    """ASGI middleware: a GET whose answer is in the cache is answered here (see the module's doc).

    The caller is who the rate gate found (:data:`~service.api.deps.OWNER_STATE`, the identity the routes
    use too); a request it found no valid key on goes on to the route, which gives the 401."""

    def __init__(self, app: ASGIApp, cache: ResponseCache, settings: Settings) -> None:
        self.app, self.cache, self.settings = app, cache, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not len(self.cache):
            await self.app(scope, receive, send)
            return
        owner = scope.get("state", {}).get(OWNER_STATE)
        if owner is None:  # not a /v1 path, or no valid key
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        entry = self.cache.get(request_key(request, owner))
        if entry is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = entry.route
        await _answer(request, entry, "hit")(scope, receive, send)
