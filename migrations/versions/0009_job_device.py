"""Queues by device (issue 23): a job's requested device, its fallback time, its route and when it fell back.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("device", sa.String(8), nullable=True))
        batch.add_column(sa.Column("device_fallback_after", sa.Float(), nullable=True))
        batch.add_column(sa.Column("route", sa.String(8), nullable=True))
        batch.add_column(sa.Column("fell_back_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("queue_depth", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("queue_depth")
        batch.drop_column("fell_back_at")
        batch.drop_column("route")
        batch.drop_column("device_fallback_after")
        batch.drop_column("device")
