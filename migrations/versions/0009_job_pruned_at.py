"""jobs.pruned_at: the rung (a step) at which a sweep's early-stopping rule stopped the job

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-02 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
# 0008 (owners) is made on another branch at the same time: the merge chains them.
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Null for every job but a pruned one; status is a plain string, so `pruned` needs no DDL.
    op.add_column("jobs", sa.Column("pruned_at", sa.Integer(), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN, as in 0007: a batch copy of jobs would cascade to its children.
    op.drop_column("jobs", "pruned_at")
