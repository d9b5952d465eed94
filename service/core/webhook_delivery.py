"""Sending webhook events: sign per Standard Webhooks, POST, record the attempt, retry with backoff.

Runs **outside the request path and outside the job**: a :class:`DeliveryThread` in each API process
polls the ``webhook_deliveries`` table (the outbox the job core writes when a job finishes) every
``ADVISOR_WEBHOOK_POLL_INTERVAL`` seconds and sends what is due. A slow or failing receiver therefore
never delays a job, a worker or a request, and a job's status never depends on its webhook. Several API
processes may poll at once: each attempt is claimed first (:func:`service.core.webhooks.claim_attempt`).

One delivery never affects another: whatever goes wrong with one (a URL that cannot be sent, an
exception of any kind) is recorded as that attempt's error, and the round goes on. Deliveries are sent in
one lane per API key (at most ``LANES`` keys at once, at most ``PER_KEY_PER_ROUND`` deliveries of one key
per round), so one key's slow or failing receivers hold only its own lane, never another key's webhooks.

Signing uses the maintained ``standardwebhooks`` package (headers ``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``) with the job owner's secret
(:func:`service.core.webhooks.owner_secret`). HTTP is the standard library's ``http.client``: no
redirects are followed (a redirect could lead to a private address) and nothing but the status is read.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from standardwebhooks import Webhook

from service.core import webhooks
from service.core.config import Settings
from service.core.db import session_scope
from service.core.links import job_links
from service.core.models import utcnow
from service.core.periodic import Periodic

log = logging.getLogger("service.webhooks")

USER_AGENT = "redundancy-advisor-webhooks/1"
LEASE_MARGIN = 30.0
LANES = 8  # API keys whose deliveries are sent at once
PER_KEY_PER_ROUND = 10  # deliveries of one key sent per round (the rest wait for the next round)


def signed_request(secret: str, msg_id: str, payload: dict[str, object]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one attempt (a fresh timestamp, the same ``webhook-id`` every time)."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    now = utcnow()
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }
    return body.encode(), headers


def post(url: str, body: bytes, headers: dict[str, str], timeout: float,
         allow: webhooks.Allowance) -> webhooks.AttemptOutcome:
    """One POST; any 2xx is success. The address is checked again first (a refusal is permanent)."""
    start = time.perf_counter()
    problem = webhooks.callback_url_problem(url, allow)
    if problem is not None:
        return webhooks.AttemptOutcome(None, f"refused: {problem}", 0.0, permanent=True)
    try:  # a row stored before URLs were normalised at submission may hold non-ASCII
        parts = urlsplit(webhooks.normalise_callback_url(url))
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname or "", parts.port, timeout=timeout)
    except (ValueError, UnicodeError) as exc:
        return webhooks.AttemptOutcome(None, f"refused: {exc}"[:500], 0.0, permanent=True)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read(65536)
        code = resp.status
    except (OSError, http.client.HTTPException, ValueError, UnicodeError) as exc:
        return webhooks.AttemptOutcome(None, f"{type(exc).__name__}: {exc}"[:500], time.perf_counter() - start)
    finally:
        conn.close()
    error = None if 200 <= code < 300 else f"HTTP {code}"
    return webhooks.AttemptOutcome(code, error, time.perf_counter() - start)


def run_deliveries_once(settings: Settings, *, send: Callable[..., webhooks.AttemptOutcome] | None = None
                        ) -> dict[str, int]:
    """Send every due delivery once, one lane per API key; returns how many ended in each state."""
    allow = webhooks.Allowance.parse(settings.webhook_allow)
    master = webhooks.master_secret(settings.webhook_secret, settings.data_path)
    with session_scope(settings.db_url) as s:
        due = webhooks.due_deliveries(s, utcnow(), limit=LANES * PER_KEY_PER_ROUND * 8,
                                      per_owner=PER_KEY_PER_ROUND)
    lanes: dict[str, list[tuple[str, int]]] = {}
    for delivery_id, seen, owner in due:
        lane = lanes.setdefault(owner, [])
        if len(lane) < PER_KEY_PER_ROUND:
            lane.append((delivery_id, seen))
    stats = dict.fromkeys(webhooks.STATES, 0)
    lock = threading.Lock()

    def run_lane(items: list[tuple[str, int]]) -> None:
        for delivery_id, seen in items:
            state = _deliver_one(settings, delivery_id, seen, allow, master, send or post)
            if state is not None:
                with lock:
                    stats[state] += 1

    if len(lanes) <= 1:
        for items in lanes.values():
            run_lane(items)
    else:
        with ThreadPoolExecutor(max_workers=min(LANES, len(lanes)), thread_name_prefix="advisor-webhook") as pool:
            list(pool.map(run_lane, lanes.values()))
    return stats


def _deliver_one(settings: Settings, delivery_id: str, seen: int, allow: webhooks.Allowance, master: bytes,
                 send: Callable[..., webhooks.AttemptOutcome]) -> str | None:
    """Claim, send and record one attempt; None when another process has it. Never raises: whatever goes
    wrong is this attempt's error (so it counts towards the attempt limit), and the round goes on."""
    try:
        with session_scope(settings.db_url) as s:
            claimed = webhooks.claim_attempt(s, delivery_id, seen, lease=settings.webhook_timeout + LEASE_MARGIN)
    except Exception:  # noqa: BLE001 - e.g. the database is away: due again next round
        log.warning("webhook %s: could not claim", delivery_id, exc_info=True)
        return None
    if claimed is None:
        return None
    try:
        payload = claimed.payload
        if settings.public_url:
            job_id = str(payload["data"]["job_id"])  # type: ignore[index]
            payload["data"]["links"] = job_links(job_id, settings.public_url)  # type: ignore[index]
        body, headers = signed_request(webhooks.owner_secret(master, claimed.owner), claimed.delivery_id, payload)
        outcome = send(claimed.url, body, headers, settings.webhook_timeout, allow)
    except Exception as exc:  # noqa: BLE001 - one delivery's failure is its own, never the round's
        outcome = webhooks.AttemptOutcome(None, f"{type(exc).__name__}: {exc}"[:500], 0.0)
    try:
        with session_scope(settings.db_url) as s:
            state = webhooks.record_attempt(s, claimed, outcome, max_attempts=settings.webhook_max_attempts,
                                            backoff=settings.webhook_backoff)
    except Exception:  # noqa: BLE001 - the lease expires and the attempt is due again
        log.warning("webhook %s: could not record attempt %d", claimed.delivery_id, claimed.attempt, exc_info=True)
        return None
    if not outcome.ok:
        log.warning("webhook %s attempt %d to %s: %s (now %s)", claimed.delivery_id, claimed.attempt,
                    claimed.url, outcome.error, state)
    return state


class DeliveryThread(Periodic):
    """Runs :func:`run_deliveries_once` every ``interval`` seconds in a daemon thread."""

    def __init__(self, settings: Settings, interval: float) -> None:
        super().__init__("advisor-webhooks", interval, lambda: run_deliveries_once(settings), log=log,
                         failed="webhook round failed", join_timeout=settings.webhook_timeout + 5)
