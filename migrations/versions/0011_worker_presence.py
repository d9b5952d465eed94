"""Whether a gpu worker is alive (issue 23): the workers' own presence rows, the count of live gpu workers on
a job waiting for one, and room in `stage` for saying so.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("queues", _json(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workers"),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("workers_alive", sa.Integer(), nullable=True))
        batch.alter_column("stage", existing_type=sa.String(32), type_=sa.String(128), existing_nullable=True)


def downgrade() -> None:
    # a waiting job's stage with its liveness no longer fits: back to the bare stage
    op.execute("UPDATE jobs SET stage = 'waiting for a gpu worker' WHERE stage LIKE 'waiting for a gpu worker (%'")
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("stage", existing_type=sa.String(128), type_=sa.String(32), existing_nullable=True)
        batch.drop_column("workers_alive")
    op.drop_table("workers")
