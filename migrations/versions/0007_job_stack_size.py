"""jobs.stack_size: how many jobs the latest attempt trained with (1 alone, K in a fused stack)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Null for jobs not yet run, and for those run before the column: nobody recorded it.
    op.add_column("jobs", sa.Column("stack_size", sa.Integer(), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+), not a batch copy: on SQLite, dropping the old jobs
    # table would cascade to every job's loss chunks, tags and checkpoint.
    op.drop_column("jobs", "stack_size")
