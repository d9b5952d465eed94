"""Uploaded datasets (issue 19): one row per file a key uploaded with ``POST /v1/datasets``; the file
itself is in the artifact store under ``uploads/``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("store_key", sa.String(4096), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", "id", name="pk_datasets"),
    )
    op.create_index("ix_datasets_owner_created_id", "datasets", ["owner", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_datasets_owner_created_id", table_name="datasets")
    op.drop_table("datasets")
