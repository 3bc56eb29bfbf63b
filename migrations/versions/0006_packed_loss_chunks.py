"""loss histories packed in chunks: loss_chunks replaces one row per step in losses

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 12:10:00
"""

from collections.abc import Iterator, Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The worker's default flush (256 steps): packed rows look like the ones it writes.
STEPS_PER_CHUNK = 256
# Jobs whose histories move per select and insert: 250,000 rows in memory at 500 steps a job.
JOBS_PER_BATCH = 500

losses = sa.table(
    "losses", sa.column("job_id", sa.Integer), sa.column("step", sa.Integer),
    sa.column("loss", sa.Double),
)  # fmt: skip
loss_chunks = sa.table(
    "loss_chunks", sa.column("job_id", sa.Integer), sa.column("first_step", sa.Integer),
    sa.column("count", sa.Integer), sa.column("data", sa.LargeBinary),
)  # fmt: skip


def _job_id_batches(connection: sa.Connection, table: sa.TableClause) -> Iterator[list[int]]:
    ids = connection.execute(sa.select(table.c.job_id).distinct().order_by(table.c.job_id))
    batch = [row[0] for row in ids]
    for start in range(0, len(batch), JOBS_PER_BATCH):
        yield batch[start : start + JOBS_PER_BATCH]


def _packed(rows: Sequence[tuple[int, int, float]]) -> Iterator[dict]:
    """Chunk rows of runs of consecutive steps, rows given in (job_id, step) order."""
    run: list[float] = []
    job = first = None
    for job_id, step, loss in rows:
        if run and (job_id != job or step != first + len(run) or len(run) == STEPS_PER_CHUNK):
            yield {"job_id": job, "first_step": first, "count": len(run), "data": _bytes(run)}
            run = []
        if not run:
            job, first = job_id, step
        run.append(loss)
    if run:
        yield {"job_id": job, "first_step": first, "count": len(run), "data": _bytes(run)}


def _bytes(values: list[float]) -> bytes:
    # NULL came from SQLite, which stores a NaN as NULL.
    return np.array([np.nan if v is None else v for v in values], dtype="<f8").tobytes()


def upgrade() -> None:
    op.create_table(
        "loss_chunks",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("first_step", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_loss_chunks_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "first_step", name=op.f("pk_loss_chunks")),
    )
    connection = op.get_bind()
    if connection.dialect.name == "postgresql":
        # Losses do not compress: never try, and keep a default 256-step chunk (2 KiB) in the
        # row itself rather than in the TOAST table (one heap and one index write, not three).
        op.execute("ALTER TABLE loss_chunks ALTER COLUMN data SET STORAGE EXTERNAL")
        op.execute("ALTER TABLE loss_chunks SET (toast_tuple_target = 8160)")
    for ids in _job_id_batches(connection, losses):
        rows = connection.execute(
            sa.select(losses.c.job_id, losses.c.step, losses.c.loss)
            .where(losses.c.job_id.in_(ids))
            .order_by(losses.c.job_id, losses.c.step)
        ).all()
        chunks = list(_packed(rows))
        if chunks:
            connection.execute(loss_chunks.insert(), chunks)
    op.drop_table("losses")


def downgrade() -> None:
    op.create_table(
        "losses",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("loss", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_losses_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "step", name=op.f("pk_losses")),
        sqlite_with_rowid=False,
    )
    connection = op.get_bind()
    for ids in _job_id_batches(connection, loss_chunks):
        chunks = connection.execute(
            sa.select(loss_chunks.c.job_id, loss_chunks.c.first_step, loss_chunks.c.data)
            .where(loss_chunks.c.job_id.in_(ids))
            .order_by(loss_chunks.c.job_id, loss_chunks.c.first_step)
        ).all()
        rows = [
            {"job_id": job_id, "step": first + i, "loss": value}
            for job_id, first, data in chunks
            for i, value in enumerate(np.frombuffer(data, dtype="<f8").tolist())
        ]
        if rows:
            connection.execute(losses.insert(), rows)
    op.drop_table("loss_chunks")
