"""jobs.owner and sweeps.owner (the name of the token that created the row); an index for /metrics

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Null for rows made before tokens had names, or by a deployment without tokens.
    op.add_column("jobs", sa.Column("owner", sa.String(64), nullable=True))
    op.add_column("sweeps", sa.Column("owner", sa.String(64), nullable=True))
    # GET /jobs?owner= and the per-owner cap on queued-plus-running jobs.
    op.create_index("ix_jobs_owner_status", "jobs", ["owner", "status"], unique=False)
    # /metrics: jobs per (status, queue) and each queue's oldest queued job, from the index alone.
    op.create_index(
        "ix_jobs_status_queue_created_at", "jobs", ["status", "queue", "created_at"], unique=False
    )


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), never a batch copy that would cascade to child rows.
    op.drop_index("ix_jobs_status_queue_created_at", table_name="jobs")
    op.drop_index("ix_jobs_owner_status", table_name="jobs")
    op.drop_column("sweeps", "owner")
    op.drop_column("jobs", "owner")
