"""Reads: one job, a page of jobs (keyset pagination with opaque tokens), the latest succeeded job on a
model and dataset, and what the maintenance sweep looks at. Nothing here changes a row."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from service.core.errors import BadPageToken, JobNotFound
from service.core.models import Job, as_utc
from service.core.status import JobStatus


def get_job(session: Session, job_id: str, owner: str) -> Job:
    """The job, if it exists and belongs to ``owner``; else :class:`JobNotFound` (another owner's job
    is indistinguishable from a missing one)."""
    job = session.get(Job, job_id)
    if job is None or job.owner != owner:
        raise JobNotFound(job_id)
    return job


def encode_page_token(created_at: dt.datetime, job_id: str) -> str:
    raw = json.dumps({"t": as_utc(created_at).isoformat(), "i": job_id}, separators=(",", ":"))  # type: ignore[union-attr]
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


MAX_TOKEN_ID_CHARS = 64


def decode_page_token(token: str) -> tuple[dt.datetime, str]:
    """(created_at in UTC, job id) of a token from :func:`encode_page_token`; :class:`BadPageToken` for
    anything else (bad base64 or JSON, a date out of range, an id no job can have)."""
    try:
        pad = "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(token + pad))
        t = dt.datetime.fromisoformat(data["t"]).astimezone(dt.UTC)
        i = data["i"]
    except (binascii.Error, ValueError, KeyError, TypeError, OverflowError, json.JSONDecodeError) as exc:
        raise BadPageToken() from exc
    if not isinstance(i, str) or len(i) > MAX_TOKEN_ID_CHARS or "\x00" in i:
        raise BadPageToken()
    return t, i


def one_statement_read(session: Session) -> Session:
    """``session``, before its first query, set to run each statement on its own (autocommit): a read
    that is one statement sees one consistent snapshot without a transaction, and saves the two round
    trips of ``BEGIN`` and ``ROLLBACK`` to the database. Only for a session that will not write."""
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return session


JSON_COLUMNS = tuple(c.name for c in Job.__table__.columns if isinstance(c.type, sa.JSON))
"""The job's JSON columns: :func:`list_job_rows` reads them as their text."""

_AS_ROWS = tuple(sa.cast(c, sa.Text).label(c.name) if c.name in JSON_COLUMNS else c for c in Job.__table__.columns)


@functools.lru_cache(maxsize=512)
def _page_statement(
    rows: bool, status: bool, model: bool, dataset: bool, after: bool, page_size: int
) -> sa.Select[Any]:
    """The select of one page of this shape (which filters, whether after a token, the size), built once: its
    values are bound parameters, and SQLAlchemy's key for its compiled form is memoised on the statement.
    ``rows``: every column, the JSON ones as text (:func:`list_job_rows`); else the ORM entity."""
    q = sa.select(*_AS_ROWS) if rows else sa.select(Job)
    q = q.where(Job.owner == sa.bindparam("owner"))
    if status:
        q = q.where(Job.status == sa.bindparam("status", type_=Job.__table__.c.status.type))
    if model:
        q = q.where(Job.model_name == sa.bindparam("model"))
    if dataset:
        q = q.where(Job.dataset_spec == sa.bindparam("dataset"))
    if after:
        t, i = sa.bindparam("after_t", type_=Job.__table__.c.created_at.type), sa.bindparam("after_id")
        q = q.where(sa.or_(Job.created_at < t, sa.and_(Job.created_at == t, Job.id < i)))
    return q.order_by(Job.created_at.desc(), Job.id.desc()).limit(page_size + 1)  # one more: is there a next?


def _page_query(
    session: Session, rows: bool, owner: str, *, page_size: int, page_token: str | None, status: JobStatus | None,
    model: str | None, dataset: str | None,
) -> tuple[sa.Select[Any], dict[str, Any]]:
    """The statement and parameters of one page, newest first."""
    params: dict[str, Any] = {"owner": owner, "status": status, "model": model, "dataset": dataset}
    if page_token:
        t, params["after_id"] = decode_page_token(page_token)
        params["after_t"] = t.replace(tzinfo=None) if session.get_bind().dialect.name == "sqlite" else t
    q = _page_statement(rows, bool(status), bool(model), bool(dataset), bool(page_token), page_size)
    return q, {k: v for k, v in params.items() if v is not None}


def _cut(rows: list[Any], page_size: int) -> tuple[list[Any], str | None]:
    if len(rows) <= page_size:
        return rows, None
    rows = rows[:page_size]
    return rows, encode_page_token(rows[-1].created_at, rows[-1].id)


def list_jobs(
    session: Session,
    owner: str,
    *,
    page_size: int,
    page_token: str | None,
    status: JobStatus | None,
    model: str | None,
    dataset: str | None,
) -> tuple[list[Job], str | None]:
    """Newest first; returns the page and the token of the next one (None at the end)."""
    q, params = _page_query(session, False, owner, page_size=page_size, page_token=page_token, status=status,
                            model=model, dataset=dataset)
    return _cut(list(session.scalars(q, params)), page_size)


def list_job_rows(
    session: Session,
    owner: str,
    *,
    page_size: int,
    page_token: str | None,
    status: JobStatus | None,
    model: str | None,
    dataset: str | None,
) -> tuple[list[Row[Any]], str | None]:
    """The page of :func:`list_jobs` as plain rows of every column of ``jobs``, the JSON ones
    (:data:`JSON_COLUMNS`) as their text: hashable, so whoever renders a row can tell an unchanged one
    (``service.api.job_pages``), and no JSON decoded for it. Run on the session's connection (no ORM)."""
    q, params = _page_query(session, True, owner, page_size=page_size, page_token=page_token, status=status,
                            model=model, dataset=dataset)
    return _cut(list(session.connection().execute(q, params).all()), page_size)


def active_jobs(session: Session, owner: str) -> int:
    """How many queued or running jobs ``owner`` has."""
    q = sa.select(sa.func.count()).select_from(Job).where(
        Job.owner == owner, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING])
    )
    return int(session.scalar(q) or 0)


def by_idempotency_key(session: Session, owner: str, key: str) -> Job | None:
    return session.scalar(sa.select(Job).where(Job.owner == owner, Job.idempotency_key == key))


def latest_succeeded(session: Session, owner: str, model: str, dataset: str, weights: str | None) -> Job | None:
    q = (
        sa.select(Job)
        .where(
            Job.owner == owner,
            Job.model_name == model,
            Job.dataset_spec == dataset,
            Job.status == JobStatus.SUCCEEDED,
        )
        .order_by(Job.finished_at.desc(), Job.created_at.desc())
    )
    for job in session.scalars(q.limit(200)):
        if weights is None or job.request.get("model", {}).get("weights") == weights:
            return job
    return None


def queued_jobs(session: Session) -> Sequence[Row[tuple[str, dt.datetime, dt.datetime | None, int]]]:
    """(id, created_at, enqueued_at, enqueue_count) of every queued job."""
    return session.execute(
        sa.select(Job.id, Job.created_at, Job.enqueued_at, Job.enqueue_count).where(Job.status == JobStatus.QUEUED)
    ).all()


def stale_running_jobs(session: Session, stale_before: dt.datetime) -> Sequence[Row[tuple[str, int, bool]]]:
    """(id, attempts, cancel_requested) of running jobs with no heartbeat since ``stale_before``."""
    return session.execute(
        sa.select(Job.id, Job.attempts, Job.cancel_requested).where(
            Job.status == JobStatus.RUNNING, Job.heartbeat_at < stale_before
        )
    ).all()


def unsent_jobs(session: Session) -> Sequence[str]:
    """Queued jobs whose message is not (or no longer) sent."""
    return session.scalars(
        sa.select(Job.id).where(Job.status == JobStatus.QUEUED, Job.enqueued_at.is_(None))
    ).all()


def running_jobs(session: Session) -> Sequence[Row[tuple[str, int, bool, dt.datetime | None, str | None]]]:
    """(id, attempts, cancel_requested, heartbeat_at, worker) of every running job."""
    return session.execute(
        sa.select(Job.id, Job.attempts, Job.cancel_requested, Job.heartbeat_at, Job.worker).where(
            Job.status == JobStatus.RUNNING
        )
    ).all()


def send_target(session: Session, job_id: str) -> tuple[str | None, dict[str, str] | None]:
    """(route, trace context) a job's message is sent with: its device queue (None: sent before routes
    existed, or deleted) and the W3C context of the request that submitted it (None: not traced)."""
    row = session.execute(sa.select(Job.route, Job.trace_context).where(Job.id == job_id)).first()
    return (row.route, row.trace_context) if row is not None else (None, None)


def running_owner(session: Session, job_id: str) -> str | None:
    """The worker holding the job, when it is running."""
    return session.scalar(sa.select(Job.worker).where(Job.id == job_id, Job.status == JobStatus.RUNNING))


def job_request(session: Session, job_id: str) -> dict | None:
    """The job's analysis request as submitted (None: the job is gone). For a shard of a sharded job."""
    request = session.scalar(sa.select(Job.request).where(Job.id == job_id))
    return dict(request) if request is not None else None
