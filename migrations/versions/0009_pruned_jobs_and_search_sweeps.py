"""jobs.pruned_at/pruned_loss (the rung a rule stopped a job at); sweeps' search progress, lease

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-02 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
# 0008 (owners) is made on another branch at the same time: the merge chains them.
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Null for every job but a pruned one; status is a plain string, so `pruned` needs no DDL.
    op.add_column("jobs", sa.Column("pruned_at", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("pruned_loss", sa.Double(), nullable=True))
    # A search sweep: the trials it wants, the asks made, and the controller that drives it.
    op.add_column("sweeps", sa.Column("trials_wanted", sa.Integer(), nullable=True))
    op.add_column(
        "sweeps", sa.Column("trials_asked", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("sweeps", sa.Column("controller", sa.String(255), nullable=True))
    op.add_column("sweeps", sa.Column("controller_expires_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMNs, as in 0007: a batch copy of jobs would cascade to its children.
    for column in ("controller_expires_at", "controller", "trials_asked", "trials_wanted"):
        op.drop_column("sweeps", column)
    op.drop_column("jobs", "pruned_loss")
    op.drop_column("jobs", "pruned_at")
