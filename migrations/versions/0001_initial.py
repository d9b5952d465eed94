"""Initial schema: jobs, job results, curve points, recommendations.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from service.core.status import status_check_sql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=64), server_default="", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("request", _json(), nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("dataset_spec", sa.String(length=1000), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_field", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("enqueue_count", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("stage_timings", _json(), nullable=True),
        sa.CheckConstraint(
            status_check_sql(),  # from the one JobStatus enum (see service/core/status.py)
            name=op.f("ck_jobs_status_valid"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("owner", "idempotency_key", name=op.f("uq_jobs_owner_idempotency_key")),
    )
    op.create_index(op.f("ix_jobs_config_hash"), "jobs", ["config_hash"], unique=False)
    op.create_index("ix_jobs_created_id", "jobs", ["created_at", "id"], unique=False)
    op.create_index(
        "ix_jobs_model_dataset", "jobs", ["model_name", "dataset_spec", "status", "finished_at"], unique=False
    )
    op.create_index("ix_jobs_status_created", "jobs", ["status", "created_at"], unique=False)

    op.create_table(
        "curve_points",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("fraction", sa.Float(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=False),
        sa.Column("per_class_accuracy", _json(), nullable=False),
        sa.Column("cka", sa.Float(), nullable=False),
        sa.Column("lam", sa.Float(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("extra", _json(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_curve_points_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_curve_points")),
    )
    op.create_index(op.f("ix_curve_points_job_id"), "curve_points", ["job_id"], unique=False)

    op.create_table(
        "job_results",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("d", sa.Integer(), nullable=False),
        sa.Column("classes", _json(), nullable=False),
        sa.Column("full_accuracy", sa.Float(), nullable=False),
        sa.Column("report", _json(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_results_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_results")),
    )

    op.create_table(
        "recommendations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("criterion", sa.String(length=16), nullable=False),
        sa.Column("fraction", sa.Float(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("d", sa.Integer(), nullable=False),
        sa.Column("dr", sa.Float(), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=False),
        sa.Column("full_accuracy", sa.Float(), nullable=False),
        sa.Column("fairness", _json(), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_recommendations_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recommendations")),
        sa.UniqueConstraint(
            "job_id",
            "delta",
            "mode",
            "criterion",
            name=op.f("uq_recommendations_job_id_delta_mode_criterion"),
        ),
    )
    op.create_index(op.f("ix_recommendations_job_id"), "recommendations", ["job_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_recommendations_job_id"), table_name="recommendations")
    op.drop_table("recommendations")
    op.drop_table("job_results")
    op.drop_index(op.f("ix_curve_points_job_id"), table_name="curve_points")
    op.drop_table("curve_points")
    op.drop_index("ix_jobs_status_created", table_name="jobs")
    op.drop_index("ix_jobs_model_dataset", table_name="jobs")
    op.drop_index("ix_jobs_created_id", table_name="jobs")
    op.drop_index(op.f("ix_jobs_config_hash"), table_name="jobs")
    op.drop_table("jobs")
