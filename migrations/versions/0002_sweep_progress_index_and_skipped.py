"""sweep progress: index on jobs (sweep_id, status), sweeps.skipped

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("skipped", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_sweep_id_status", ["sweep_id", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_sweep_id_status")
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.drop_column("skipped")
