"""composite indexes for the job list's filters, sorts and keyset pages

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-27 09:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_jobs_created_at_id": ["created_at", "id"],
    "ix_jobs_final_loss_id": ["final_loss", "id"],
    "ix_jobs_status_created_at_id": ["status", "created_at", "id"],
    "ix_jobs_status_final_loss_id": ["status", "final_loss", "id"],
    "ix_jobs_sweep_id_final_loss_id": ["sweep_id", "final_loss", "id"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "jobs", columns, unique=False)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="jobs")
