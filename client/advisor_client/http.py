"""One HTTP request with the client's network manners: bounded retries, backoff, Retry-After.

* 429 and 503 are retried up to `RetryPolicy.retries` times. The wait is the server's `Retry-After`
  (seconds or an HTTP date) when it sends one, else exponential backoff `backoff·2^attempt` (capped
  at `max_backoff`, with jitter in [½, 1]). A `Retry-After` longer than `max_retry_after` is not
  waited for: the error is raised at once.
* No answer at all (connection refused, reset, timeout) is retried `connect_retries` times with the
  same backoff, then raised as `ServerUnreachable`. Every request this client sends may be repeated
  safely: reads and cancel are idempotent, and a submit carries one `Idempotency-Key` on all its tries.
* Any other error status becomes an `ApiError` subclass carrying the problem+json fields.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import ValidationError

from advisor_client.errors import ServerUnreachable, error_for
from advisor_client.models import Problem

USER_AGENT = "advisor-client/0.1"


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5
    connect_retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 300.0
    retry_statuses: frozenset[int] = frozenset({429, 503})
    jitter: bool = True
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def backoff_delay(self, attempt: int) -> float:
        """Seconds before try `attempt + 1` when the server gave no hint."""
        base = min(self.backoff * 2.0**attempt, self.max_backoff)
        return base * random.uniform(0.5, 1.0) if self.jitter else base

    def delay(self, attempt: int, retry_after: str | None) -> float | None:
        """Seconds to wait after a retryable status, or None to give up now."""
        hinted = parse_retry_after(retry_after)
        if hinted is None:
            return self.backoff_delay(attempt)
        return hinted if hinted <= self.max_retry_after else None


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now (RFC 9110 §10.2.3: delay-seconds or an HTTP-date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


def problem_of(resp: httpx.Response) -> Problem:
    """The response's problem+json body, or one built from the status line when it has none."""
    try:
        return Problem.model_validate(resp.json())
    except (ValueError, ValidationError):
        text = resp.text.strip()[:500] or None
        return Problem(title=resp.reason_phrase or "Error", status=resp.status_code, detail=text)


class Http:
    """An `httpx.Client` plus the retry rules above."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        timeout: float,
        retry: RetryPolicy,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retry = retry
        self.client = httpx.Client(
            base_url=base_url,
            headers={"User-Agent": USER_AGENT, **headers},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self.client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        files: Callable[[], Any] | None = None,
        retry_statuses: frozenset[int] | None = None,
    ) -> httpx.Response:
        """`files`: called on every try for httpx's `files` (a multipart body; an open file is read again
        from its start). `retry_statuses`: this request's, instead of the policy's."""
        policy = self.retry
        retried = policy.retry_statuses if retry_statuses is None else retry_statuses
        busy_tries = silent_tries = 0
        while True:
            try:
                resp = self.client.request(method, path, params=_clean(params), json=json, headers=headers,
                                           files=files() if files is not None else None)
            except httpx.TransportError as exc:
                if silent_tries >= policy.connect_retries:
                    raise ServerUnreachable(
                        f"{self.client.base_url} is unreachable ({type(exc).__name__}: {exc}) "
                        f"after {silent_tries + 1} tries"
                    ) from exc
                policy.sleep(policy.backoff_delay(silent_tries))
                silent_tries += 1
                continue
            if resp.status_code in retried and busy_tries < policy.retries:
                wait = policy.delay(busy_tries, resp.headers.get("Retry-After"))
                if wait is not None:
                    policy.sleep(wait)
                    busy_tries += 1
                    continue
            if resp.is_error:
                raise error_for(problem_of(resp), method=method, url=str(resp.request.url))
            return resp


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Drop unset query parameters (None) so the server applies its defaults."""
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None}
