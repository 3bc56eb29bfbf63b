"""Idempotency-Key unique per owner on jobs and sweeps (ownerless rows: unique among themselves)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("jobs", "sweeps")
# Null owners (no tokens) are one owner: a unique index holds NULLs all different, so they get
# a partial index of their own (as models/base.owner_key_indexes).
OWNERLESS = sa.text("owner IS NULL")


def upgrade() -> None:
    for table in TABLES:
        # SQLite cannot drop a table's constraint: the batch copies the table (with foreign
        # keys off, see migrations/env.py, so the copy's DROP deletes no child rows).
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_idempotency_key", type_="unique")
        op.create_index(
            f"uq_{table}_owner_idempotency_key", table, ["owner", "idempotency_key"], unique=True
        )
        op.create_index(
            f"uq_{table}_ownerless_idempotency_key",
            table,
            ["idempotency_key"],
            unique=True,
            sqlite_where=OWNERLESS,
            postgresql_where=OWNERLESS,
        )


def downgrade() -> None:
    # Fails where two owners used the same key since the upgrade: which row keeps it is a choice
    # for the operator, not the migration.
    for table in TABLES:
        op.drop_index(f"uq_{table}_ownerless_idempotency_key", table_name=table)
        op.drop_index(f"uq_{table}_owner_idempotency_key", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.create_unique_constraint(f"uq_{table}_idempotency_key", ["idempotency_key"])
