"""loss histories packed in chunks: loss_chunks replaces one row per step in losses

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 12:10:00
"""

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The worker's default flush (256 steps): packed rows look like the ones it writes.
STEPS_PER_CHUNK = 256
# Rows of the old table read per query, chunks written per insert: memory stays bounded
# whatever the number and the length of the histories.
ROWS_PER_PAGE = 100_000
CHUNKS_PER_PAGE = 1_000

losses = sa.table(
    "losses", sa.column("job_id", sa.Integer), sa.column("step", sa.Integer),
    sa.column("loss", sa.Double),
)
loss_chunks = sa.table(
    "loss_chunks", sa.column("job_id", sa.Integer), sa.column("first_step", sa.Integer),
    sa.column("count", sa.Integer), sa.column("data", sa.LargeBinary),
)


def _pages(
    connection: sa.Connection, table: sa.TableClause, key: str, columns: list[str], size: int
) -> Iterator[list[sa.Row]]:
    """Every row of `table` in (job_id, key) order, `size` rows a query, by keyset."""
    job_id, ordered = table.c.job_id, table.c[key]
    after: tuple[int, int] | None = None
    while True:
        query = sa.select(job_id, ordered, *(table.c[name] for name in columns))
        if after is not None:
            query = query.where(
                sa.or_(job_id > after[0], sa.and_(job_id == after[0], ordered > after[1]))
            )
        rows = connection.execute(query.order_by(job_id, ordered).limit(size)).all()
        if not rows:
            return
        yield rows
        after = (rows[-1][0], rows[-1][1])


def _packed(rows: Iterable[tuple[int, int, float]]) -> Iterator[dict]:
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
    pages = _pages(connection, losses, "step", ["loss"], ROWS_PER_PAGE)
    batch: list[dict] = []
    for chunk in _packed(row for page in pages for row in page):
        batch.append(chunk)
        if len(batch) == CHUNKS_PER_PAGE:
            connection.execute(loss_chunks.insert(), batch)
            batch = []
    if batch:
        connection.execute(loss_chunks.insert(), batch)
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
    for page in _pages(connection, loss_chunks, "first_step", ["data"], CHUNKS_PER_PAGE):
        rows = [
            {"job_id": job_id, "step": first + i, "loss": value}
            for job_id, first, data in page
            for i, value in enumerate(np.frombuffer(data, dtype="<f8").tolist())
        ]
        connection.execute(losses.insert(), rows)
    op.drop_table("loss_chunks")
