"""One chunk of a job's losses into the losses table, a step already stored left as it is."""

from __future__ import annotations

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.dialects import postgresql, sqlite

from service.models import Loss


def _postgresql_insert(job_id: int, first_step: int, losses: list[float]) -> sa.Insert:
    # Two array parameters unnested by the server: one statement of three parameters. An
    # executemany of a 256-step chunk spent more time rendering rows on the client than the
    # database spent storing them (bench/bench_storage.py times the history write).
    steps = list(range(first_step, first_step + len(losses)))
    values = sa.func.unnest(
        sa.cast(steps, postgresql.ARRAY(sa.Integer)), sa.cast(losses, postgresql.ARRAY(sa.Double))
    )
    chunk = values.table_valued("step", "loss").render_derived()
    rows = sa.select(sa.literal(job_id, sa.Integer), chunk.c.step, chunk.c.loss)
    return (
        postgresql.insert(Loss)
        .from_select(["job_id", "step", "loss"], rows)
        .on_conflict_do_nothing(index_elements=["job_id", "step"])
    )


def insert_losses(session: so.Session, job_id: int, first_step: int, losses: list[float]) -> None:
    """Store losses[i] as the job's step first_step + i, keeping rows already there."""
    if not losses:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(_postgresql_insert(job_id, first_step, losses))
        return
    rows = [
        {"job_id": job_id, "step": first_step + i, "loss": value} for i, value in enumerate(losses)
    ]
    insert = sqlite.insert(Loss).on_conflict_do_nothing(index_elements=["job_id", "step"])
    # Core executemany: the ORM's bulk path costs more per row than the database does.
    connection.execute(insert, rows)
