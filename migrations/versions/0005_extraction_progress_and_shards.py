"""Extraction progress on a job (images_done, images_total, eta_s) and the shards of a sharded job.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("images_done", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("images_total", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("eta_s", sa.Float(), nullable=True))
    op.create_table(
        "job_shards",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("index", sa.Integer(), primary_key=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("start_row", sa.Integer(), nullable=False),
        sa.Column("stop_row", sa.Integer(), nullable=False),
        sa.Column("images_done", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_shards")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("eta_s")
        batch.drop_column("images_total")
        batch.drop_column("images_done")
