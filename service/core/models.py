"""SQLAlchemy 2 models: jobs, their results, curve points and stored recommendations.

The same models run on Postgres (psycopg 3) and SQLite. The schema changes only through Alembic
(``migrations/``); ``tests/service/test_service_migrations.py`` checks the two agree. ``Job.status`` holds a
:class:`~service.core.status.JobStatus`; how it changes is :mod:`service.core.lifecycle`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from service.core.status import JobStatus, status_check_sql

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
# Stored as its value in a VARCHAR(16) (the check constraint, not a database enum type, guards it).
StatusType = sa.Enum(
    JobStatus,
    native_enum=False,
    create_constraint=False,
    length=16,
    values_callable=lambda e: [m.value for m in e],
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(t: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if t is None:
        return None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        sa.UniqueConstraint("owner", "idempotency_key"),
        sa.Index("ix_jobs_status_created", "status", "created_at"),
        sa.Index("ix_jobs_created_id", "created_at", "id"),
        sa.Index("ix_jobs_model_dataset", "model_name", "dataset_spec", "status", "finished_at"),
        sa.Index("ix_jobs_owner_created_id", "owner", "created_at", "id"),  # a key's pages (migration 0006)
        sa.Index("ix_jobs_owner_status_created", "owner", "status", "created_at"),  # and its active count
        sa.CheckConstraint(status_check_sql(), name="status_valid"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(64), default="", server_default="")
    status: Mapped[JobStatus] = mapped_column(StatusType, default=JobStatus.QUEUED)
    stage: Mapped[str | None] = mapped_column(sa.String(128))  # 32 until migration 0011 (the gpu wait's liveness)
    progress: Mapped[float] = mapped_column(sa.Float, default=0.0)
    message: Mapped[str | None] = mapped_column(sa.Text)
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    config_hash: Mapped[str] = mapped_column(sa.String(64), index=True)
    model_name: Mapped[str] = mapped_column(sa.String(200))
    dataset_spec: Mapped[str] = mapped_column(sa.String(1000))
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255))
    cancel_requested: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    error_code: Mapped[str | None] = mapped_column(sa.String(64))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    error_field: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    enqueue_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    started_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    worker: Mapped[str | None] = mapped_column(sa.String(255))
    stage_timings: Mapped[dict[str, float] | None] = mapped_column(JSONType)
    callback_url: Mapped[str | None] = mapped_column(sa.Text)  # webhook target (service.core.webhooks)
    # extraction progress (issue 13): images through the model of all, and the estimated seconds left
    images_done: Mapped[int | None] = mapped_column(sa.Integer)
    images_total: Mapped[int | None] = mapped_column(sa.Integer)
    eta_s: Mapped[float | None] = mapped_column(sa.Float)
    # the job option `mlflow` (issue 22): {tracking_uri, experiment} to log the run to when it succeeds, and
    # how that went: {state: pending | logged | failed, run_id, error, at} (service.core.mlflow_runs)
    mlflow: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    mlflow_run: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # queues by device (issue 23): the requested device (auto | cpu | cuda), the seconds a gpu-queue job may wait
    # before it falls back to cpu (null: never), the queue it is routed to (cpu | gpu; null: sent before
    # routes existed, i.e. cpu), when it fell back, and the gpu queue's depth as the maintenance sweep last read it
    device: Mapped[str | None] = mapped_column(sa.String(8), nullable=True)
    device_fallback_after: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    route: Mapped[str | None] = mapped_column(sa.String(8), nullable=True)
    fell_back_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    queue_depth: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    # and how many workers consuming the gpu queue were alive then (service.core.presence; null: not looked yet)
    workers_alive: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    # the W3C trace context of the request that submitted it ({"traceparent": ...}; null: not traced), the
    # parent of every message sent for it, so a re-sent job's worker spans join its one trace (issue 23)
    trace_context: Mapped[dict[str, str] | None] = mapped_column(JSONType, nullable=True)

    result: Mapped[JobResult | None] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True, uselist=False
    )


class JobResult(Base):
    """The report minus its curve and recommendations (those have their own tables)."""

    __tablename__ = "job_results"

    job_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    d: Mapped[int] = mapped_column(sa.Integer)
    classes: Mapped[list[str]] = mapped_column(JSONType)
    full_accuracy: Mapped[float] = mapped_column(sa.Float)
    report: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)

    job: Mapped[Job] = relationship(back_populates="result")


class CurvePointRow(Base):
    __tablename__ = "curve_points"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(sa.Integer)
    fraction: Mapped[float] = mapped_column(sa.Float)
    k: Mapped[int] = mapped_column(sa.Integer)
    seed: Mapped[int] = mapped_column(sa.Integer)
    accuracy: Mapped[float] = mapped_column(sa.Float)
    per_class_accuracy: Mapped[list[float]] = mapped_column(JSONType)
    cka: Mapped[float | None] = mapped_column(sa.Float, nullable=True)  # None: undefined (no variance)
    lam: Mapped[float | None] = mapped_column(sa.Float)
    kind: Mapped[str] = mapped_column(sa.String(64), default="random")
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class RecommendationRow(Base):
    """The recommendations the engine made for the job's own deltas (other δ: from the curve)."""

    __tablename__ = "recommendations"
    __table_args__ = (sa.UniqueConstraint("job_id", "delta", "mode", "criterion"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    delta: Mapped[float] = mapped_column(sa.Float)
    mode: Mapped[str] = mapped_column(sa.String(16))
    criterion: Mapped[str] = mapped_column(sa.String(16))
    fraction: Mapped[float] = mapped_column(sa.Float)
    k: Mapped[int] = mapped_column(sa.Integer)
    d: Mapped[int] = mapped_column(sa.Integer)
    dr: Mapped[float] = mapped_column(sa.Float)
    accuracy: Mapped[float] = mapped_column(sa.Float)
    full_accuracy: Mapped[float] = mapped_column(sa.Float)
    fairness: Mapped[dict[str, Any]] = mapped_column(JSONType)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)


class WebhookDelivery(Base):
    """One webhook event of a job (its ``id`` is the ``webhook-id``) and its delivery attempts so far.

    Written in the transaction that finishes the job (:func:`service.core.webhooks.record_event`); sent
    by :mod:`service.core.webhook_delivery`. ``state``: pending → delivered | failed."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (sa.Index("ix_webhook_deliveries_state_due", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(sa.String(32))
    url: Mapped[str] = mapped_column(sa.Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    state: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(sa.Integer)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)


class JobStats(Base):
    """Where a succeeded job keeps the layer statistics a head is fitted from (issue 12): a reference
    to a file in the artifact store (``service.core.artifacts``), never the statistics themselves.
    ``path`` is null when they could not be kept; ``reason`` then says why."""

    __tablename__ = "job_stats"

    job_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str | None] = mapped_column(sa.String(4096), nullable=True)
    sha256: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    weights_sha256: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    data_config: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    reason: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class JobShard(Base):
    """One shard of a sharded job's extraction (issue 13): its row range and its own progress, so the
    job's `images_done` is their sum. Rows belong to the job's current attempt; a new attempt replaces them."""

    __tablename__ = "job_shards"

    job_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    attempt: Mapped[int] = mapped_column(sa.Integer)
    start_row: Mapped[int] = mapped_column(sa.Integer)
    stop_row: Mapped[int] = mapped_column(sa.Integer)
    images_done: Mapped[int] = mapped_column(sa.Integer, default=0)


class WorkerPresence(Base):
    """A worker process that is up (issue 23): the queues it consumes and when it last said so
    (:mod:`service.core.presence`). Rows of workers gone without a word age out; the maintenance sweep counts
    the live ones that consume the gpu queue for the jobs waiting there."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)  # host:pid:start:boot (service.core.process)
    name: Mapped[str] = mapped_column(sa.String(255))  # Celery's node name, e.g. gpu1@host
    queues: Mapped[list[str]] = mapped_column(JSONType)
    started_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    seen_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class DatasetUpload(Base):
    """A file a key uploaded (issue 19: ``POST /v1/datasets``), kept in the artifact store at
    ``store_key``; a job names it as ``upload:<id>``. The id is the file's sha256, so a key's same file
    uploaded twice is one upload; another key's copy is its own row (and its own file)."""

    __tablename__ = "datasets"
    __table_args__ = (sa.Index("ix_datasets_owner_created_id", "owner", "created_at", "id"),)

    owner: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    filename: Mapped[str] = mapped_column(sa.String(255))
    format: Mapped[str] = mapped_column(sa.String(16))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    store_key: Mapped[str] = mapped_column(sa.String(4096))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
