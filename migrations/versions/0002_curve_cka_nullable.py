"""curve_points.cka may be NULL: an undefined CKA (a subset with no variance) is absent, not 0.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("curve_points") as batch:
        batch.alter_column("cka", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE curve_points SET cka = 0.0 WHERE cka IS NULL")  # the old schema cannot say 'undefined'
    with op.batch_alter_table("curve_points") as batch:
        batch.alter_column("cka", existing_type=sa.Float(), nullable=False)
