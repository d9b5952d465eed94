"""Webhooks, the job core's part: which callback URLs are acceptable, the event a finished job emits,
and every state change of a delivery. Sending is :mod:`service.core.webhook_delivery`.

A job may name a ``callback_url``. When the job reaches a terminal status (succeeded, failed, cancelled)
:func:`record_event` adds a ``webhook_deliveries`` row **in the same transaction** as the status change
(:mod:`service.core.lifecycle` calls it from its terminal transitions only), so an event is never lost
and never sent for a job that did not finish. The row's id is the event's ``webhook-id``: the same on
every retry, so a receiver can drop duplicates.

A delivery lives ``pending → delivered | failed``. Each attempt is claimed with a conditional UPDATE
fenced by the attempt count (two API processes never send the same attempt), then recorded; a failed
attempt is retried after ``backoff · 2^(n−1)`` seconds (capped at one hour) until ``max_attempts``.

Callback URLs are normalised at submission (:func:`normalise_callback_url`: the host IDNA-encoded, the
path, query and fragment percent-encoded as UTF-8), so what is stored and sent is plain ASCII; a URL that
cannot be encoded is refused (422 naming ``callback_url``).

Callback addresses: only ``http``/``https``; the host is resolved and **every** address it resolves to
must be public (``ipaddress``'s ``is_global``) unless the ``ADVISOR_WEBHOOK_ALLOW`` setting allows its
category (``loopback``, ``private``, ``link-local``) or a CIDR that contains it. The check runs at
submit (422) and again before each attempt (DNS may have changed).
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import hashlib
import hmac
import ipaddress
import os
import secrets
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from service.core.links import job_links
from service.core.models import Job, RecommendationRow, WebhookDelivery, as_utc, utcnow

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
STATES: tuple[str, ...] = (PENDING, DELIVERED, FAILED)
CATEGORIES: tuple[str, ...] = ("loopback", "private", "link-local")
MAX_BACKOFF = 3600.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# ---------------------------------------------------------------------------------------------
# which URLs


@dataclass(frozen=True)
class Allowance:
    """What ``ADVISOR_WEBHOOK_ALLOW`` lets through besides public addresses."""

    categories: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> Allowance:
        cats: set[str] = set()
        nets: list[IPNetwork] = []
        for raw in spec.split(","):
            item = raw.strip().lower().replace("_", "-")
            if not item:
                continue
            if item in CATEGORIES:
                cats.add(item)
            else:
                try:
                    nets.append(ipaddress.ip_network(item, strict=False))
                except ValueError as exc:
                    raise ValueError(
                        f"ADVISOR_WEBHOOK_ALLOW: {raw.strip()!r} is neither one of {', '.join(CATEGORIES)} nor a CIDR"
                    ) from exc
        return cls(frozenset(cats), tuple(nets))


NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d (:: and ::1 excepted below)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and may be routed to: IPv4-mapped (``::ffff:a.b.c.d``),
    6to4 (``2002:AABB:CCDD::/48``), Teredo (``2001::/32``, the client's), NAT64 (``64:ff9b::/96``) and
    IPv4-compatible (``::a.b.c.d``); None when it carries none."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64 or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_category(ip: IPAddress) -> str | None:
    """None for a public address, else why it is not one: loopback, link-local, private or reserved. An
    IPv6 address that embeds an IPv4 one (6to4, Teredo, NAT64, mapped, compatible) is judged by that one too
    (the stricter of the two)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            category = address_category(inner)
            if category is not None:
                return category
            if ip.ipv4_mapped is not None or ip in NAT64:  # a translation of a public IPv4 address
                return None
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return "reserved"
    if ip.is_global:
        return None
    return "private"


def address_allowed(ip: IPAddress, allow: Allowance) -> bool:
    category = address_category(ip)
    return category is None or category in allow.categories or any(ip in net for net in allow.networks)


RESOLVE_TIMEOUT = 3.0
"""Seconds a host name may take to resolve; past it the host counts as unresolvable."""

_resolver = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="advisor-resolve")


def resolve(host: str, port: int) -> list[Any]:
    """``socket.getaddrinfo(host, port)`` (stream sockets) within :data:`RESOLVE_TIMEOUT` seconds, else
    :class:`TimeoutError`. A lookup cannot be cancelled, so a hung one is left to its pool thread: a name
    server that never answers costs each request at most the timeout, never a hang."""
    future = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        return future.result(timeout=RESOLVE_TIMEOUT)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"no answer within {RESOLVE_TIMEOUT:g} s") from None


def host_problem(host: str, port: int, allow: Allowance, rule: str, setting: str) -> str | None:
    """Why ``host`` may not be reached, or None: it does not resolve (in time), or one of its addresses is
    not allowed by ``allow`` (``rule`` says what is; ``setting`` names what can allow more)."""
    try:
        infos = resolve(host, port)
    except (OSError, UnicodeError) as exc:  # socket.gaierror and TimeoutError are OSErrors
        return f"the host {host!r} cannot be resolved ({exc})"
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address_allowed(ip, allow):
            category = address_category(ip)
            return (f"{host} resolves to {ip}, a {category} address; {rule} "
                    f"(the server's {setting} can allow {category} ones)")
    return None


# characters left as they are in each part (RFC 3986 unreserved + sub-delims + what the part allows);
# an existing %XX escape is kept, everything else (spaces, non-ASCII as UTF-8) is percent-encoded
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


def normalise_callback_url(url: str) -> str:
    """``url`` as plain ASCII: the host IDNA-encoded (lower case), the path, query and fragment
    percent-encoded as UTF-8. Raises ValueError (a sentence) when it cannot be: a host label IDNA refuses,
    a bad port, characters that are not text (a lone surrogate), control characters in the host."""
    try:
        url.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("the URL holds characters that cannot be encoded as UTF-8") from exc
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from exc
    host = parts.hostname or ""
    if host and ":" not in host:  # a name (an IPv6 literal has colons and stays as it is)
        if any(ord(c) < 33 or c in "\\%/?#@[]" for c in host):
            raise ValueError(f"the host {host!r} holds characters a host name cannot")
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError as exc:
            raise ValueError(f"the host {host!r} is not a valid (internationalised) domain name ({exc})") from exc
    elif host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    if parts.username is not None or parts.password is not None:  # kept, to be refused by name below
        userinfo = quote(parts.username or "", safe="") + (f":{quote(parts.password, safe='')}"
                                                            if parts.password is not None else "")
        netloc = f"{userinfo}@{netloc}"
    return urlunsplit((parts.scheme.lower(), netloc, quote(parts.path, safe=_PATH_SAFE),
                       quote(parts.query, safe=_QUERY_SAFE), quote(parts.fragment, safe=_QUERY_SAFE)))


def callback_url_problem(url: str, allow: Allowance) -> str | None:
    """Why ``url`` may not receive webhooks (a sentence), or None when it may. Resolves the host."""
    try:
        url = normalise_callback_url(url)
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return "only http and https callback URLs are allowed"
    host = parts.hostname
    if not host:
        return "the URL has no host"
    if parts.username or parts.password:
        return "credentials in the URL are not allowed"
    return host_problem(host, port or (443 if parts.scheme == "https" else 80), allow,
                        "callbacks go to public addresses only", "ADVISOR_WEBHOOK_ALLOW")
    return None


# ---------------------------------------------------------------------------------------------
# the secret each API key verifies with


def master_secret(secret_setting: str, data_path: Path) -> bytes:
    """The setting's bytes, else the random secret kept in ``DATA_DIR/webhook_secret`` (made once)."""
    if secret_setting:
        return secret_setting.encode()
    path = data_path / "webhook_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # atomic: a racing process keeps the first secret
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


def owner_secret(master: bytes, owner: str) -> str:
    """The Standard Webhooks secret (``whsec_`` + base64 of 32 bytes) of one API key, derived from the
    master secret and the key's hash: HMAC-SHA256(master, "advisor-webhook-v1:" + owner). Nothing per key
    is stored; a key holder reads theirs at ``GET /v1/webhooks/secret``."""
    raw = hmac.new(master, b"advisor-webhook-v1:" + owner.encode(), hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(raw).decode()


# ---------------------------------------------------------------------------------------------
# the event (called by service.core.lifecycle inside a terminal transition)


def record_event(session: Session, job_id: str) -> None:
    """Add the job's webhook event to ``session`` if it has a callback URL; the caller commits it with
    the status change. The event: ``{type, timestamp, data: {job_id, status, error, recommendations,
    links}}`` where ``recommendations`` are the answers at the job's own deltas (empty unless succeeded)."""
    row = session.execute(
        sa.select(Job.callback_url, Job.status, Job.error_code, Job.error_message, Job.error_field,
                  Job.message, Job.finished_at).where(Job.id == job_id)
    ).first()
    if row is None or not row.callback_url:
        return
    session.flush()  # a succeeding job's recommendation rows are pending in this session
    recs = session.scalars(
        sa.select(RecommendationRow.payload).where(RecommendationRow.job_id == job_id).order_by(RecommendationRow.id)
    ).all()
    now = utcnow()
    status = str(row.status.value if hasattr(row.status, "value") else row.status)
    error = ({"code": row.error_code, "message": row.error_message or "", "field": row.error_field}
             if row.error_code else None)
    payload: dict[str, Any] = {
        "type": f"job.{status}",
        "timestamp": now.isoformat(),
        "data": {
            "job_id": job_id,
            "status": status,
            "message": row.message,
            "error": error,
            "finished_at": (as_utc(row.finished_at) or now).isoformat(),
            "recommendations": list(recs),
            "links": job_links(job_id),  # made absolute at send time when ADVISOR_PUBLIC_URL is set
        },
    }
    session.add(WebhookDelivery(
        id=f"msg_{uuid.uuid4().hex}", job_id=job_id, event=payload["type"], url=row.callback_url,
        payload=payload, state=PENDING, attempts=0, next_attempt_at=now, created_at=now, history=[],
    ))


# ---------------------------------------------------------------------------------------------
# deliveries: reads and transitions


def due_deliveries(session: Session, now: dt.datetime, limit: int = 50,
                   per_owner: int | None = None) -> list[tuple[str, int, str]]:
    """(id, attempts, owner) of pending deliveries whose next attempt is due, oldest first; with
    ``per_owner``, at most that many of each API key (so one key's backlog cannot fill the page)."""
    rank = sa.func.row_number().over(partition_by=Job.owner, order_by=WebhookDelivery.next_attempt_at)
    due = (
        sa.select(WebhookDelivery.id, WebhookDelivery.attempts, WebhookDelivery.next_attempt_at,
                  Job.owner.label("owner"), rank.label("rank"))
        .join(Job, Job.id == WebhookDelivery.job_id)
        .where(WebhookDelivery.state == PENDING, WebhookDelivery.next_attempt_at <= now)
        .subquery()
    )
    query = sa.select(due.c.id, due.c.attempts, due.c.owner).order_by(due.c.next_attempt_at).limit(limit)
    if per_owner is not None:
        query = query.where(due.c.rank <= per_owner)
    return [(r.id, int(r.attempts), str(r.owner or "")) for r in session.execute(query)]


@dataclass(frozen=True)
class ClaimedAttempt:
    delivery_id: str
    attempt: int
    url: str
    payload: dict[str, Any]
    owner: str


def claim_attempt(session: Session, delivery_id: str, seen_attempts: int, lease: float) -> ClaimedAttempt | None:
    """Take attempt ``seen_attempts + 1``; its next try is pushed ``lease`` seconds away in case this
    process dies while sending. None: another process took it, or it is no longer pending."""
    now = utcnow()
    res = session.execute(
        sa.update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state == PENDING,
               WebhookDelivery.attempts == seen_attempts)
        .values(attempts=seen_attempts + 1, next_attempt_at=now + dt.timedelta(seconds=lease))
    )
    session.commit()
    if not res.rowcount:  # type: ignore[attr-defined]
        return None
    row = session.execute(
        sa.select(WebhookDelivery.url, WebhookDelivery.payload, Job.owner)
        .join(Job, Job.id == WebhookDelivery.job_id)
        .where(WebhookDelivery.id == delivery_id)
    ).first()
    if row is None:  # the job was deleted meanwhile
        return None
    return ClaimedAttempt(delivery_id, seen_attempts + 1, row.url, dict(row.payload), row.owner)


@dataclass(frozen=True)
class AttemptOutcome:
    status_code: int | None
    error: str | None
    seconds: float
    permanent: bool = False  # refused (e.g. the host now resolves to a private address): no retry

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_delay(attempt: int, backoff: float) -> float:
    """Seconds between failed attempt ``attempt`` (1-based) and the next: backoff · 2^(attempt−1), capped."""
    return min(MAX_BACKOFF, backoff * 2 ** (attempt - 1))


def record_attempt(
    session: Session, claimed: ClaimedAttempt, outcome: AttemptOutcome, *, max_attempts: int, backoff: float
) -> str:
    """Write the attempt's outcome; returns the delivery's new state."""
    now = utcnow()
    if outcome.ok:
        state, next_at = DELIVERED, None
    elif outcome.permanent or claimed.attempt >= max_attempts:
        state, next_at = FAILED, None
    else:
        state, next_at = PENDING, now + dt.timedelta(seconds=retry_delay(claimed.attempt, backoff))
    history = session.scalar(sa.select(WebhookDelivery.history).where(WebhookDelivery.id == claimed.delivery_id))
    entry = {"attempt": claimed.attempt, "at": now.isoformat(), "status_code": outcome.status_code,
             "error": outcome.error, "duration_s": round(outcome.seconds, 6)}
    session.execute(
        sa.update(WebhookDelivery)
        .where(WebhookDelivery.id == claimed.delivery_id, WebhookDelivery.attempts == claimed.attempt)
        .values(state=state, next_attempt_at=next_at, last_status_code=outcome.status_code,
                last_error=outcome.error, delivered_at=now if outcome.ok else None,
                history=[*(history or []), entry])
    )
    session.commit()
    return state


def deliveries_of(session: Session, job_id: str) -> list[WebhookDelivery]:
    return list(session.scalars(
        sa.select(WebhookDelivery).where(WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.created_at)
    ))


def counts_by_state(session: Session) -> dict[str, int]:
    out = dict.fromkeys(STATES, 0)
    for state, n in session.execute(
        sa.select(WebhookDelivery.state, sa.func.count()).group_by(WebhookDelivery.state)
    ):
        out[state] = int(n)
    return out
