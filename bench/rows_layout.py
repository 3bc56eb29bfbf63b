"""The storage layer alone: packed chunks (the service, since revision 0006) against rows per step.

bench_storage calls this after its own measurements: it builds a bench-only table
`bench_losses(job_id, step, loss)` with one row per step of every job's history, the layout
before revision 0006, then times on both layouts what the service does with histories: store
one 500-step history in the worker's chunks (a transaction each), read one history, and read
1,000 histories as (job_id, step, loss) rows. The rows side uses the inserts the worker used
before 0006 (server-side unnest on PostgreSQL, an executemany on SQLite), kept here only.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import numpy as np
import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.dialects import postgresql, sqlite

from service.db import make_engine, make_session_factory, session_scope
from service.jobs import read_losses
from service.loss_store import store_losses
from service.results.histories import read_rows

TABLE = "bench_losses"
rows_table = sa.table(
    TABLE,
    sa.column("job_id", sa.Integer),
    sa.column("step", sa.Integer),
    sa.column("loss", sa.Double),
)


def _create(connection: sa.Connection, jobs: int, steps: int) -> None:
    """The rows table with every job's history (and 0001's keys), built in the database."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            f"CREATE TABLE {TABLE} (job_id INTEGER NOT NULL, step INTEGER NOT NULL,"
            " loss DOUBLE PRECISION NOT NULL)"
        )
        connection.exec_driver_sql(
            f"INSERT INTO {TABLE} SELECT j, s, (mod(j, 1000) + 10)::float8 / (s + 1)"
            f" FROM generate_series(1, {jobs}) AS j"
            f" CROSS JOIN LATERAL generate_series(0, {steps - 1} + 0 * j) AS s"
        )
        connection.exec_driver_sql(f"ALTER TABLE {TABLE} ADD PRIMARY KEY (job_id, step)")
        connection.exec_driver_sql(
            f"ALTER TABLE {TABLE} ADD FOREIGN KEY (job_id) REFERENCES jobs (id) ON DELETE CASCADE"
        )
    else:
        connection.exec_driver_sql(
            f"CREATE TABLE {TABLE} (job_id INTEGER NOT NULL REFERENCES jobs (id)"
            " ON DELETE CASCADE, step INTEGER NOT NULL, loss FLOAT NOT NULL,"
            " PRIMARY KEY (job_id, step)) WITHOUT ROWID"
        )
        connection.exec_driver_sql(
            f"WITH RECURSIVE s(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM s WHERE x < {steps - 1})"
            f" INSERT INTO {TABLE} SELECT j.id, s.x, (j.id % 1000 + 10) * 1.0 / (s.x + 1)"
            " FROM jobs AS j CROSS JOIN s ORDER BY j.id, s.x"
        )
    connection.exec_driver_sql(f"ANALYZE {TABLE}")


def _insert_rows(session: so.Session, job_id: int, first_step: int, losses: list[float]) -> None:
    """The worker's chunk insert before revision 0006."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        steps = list(range(first_step, first_step + len(losses)))
        values = sa.func.unnest(
            sa.cast(steps, postgresql.ARRAY(sa.Integer)),
            sa.cast(losses, postgresql.ARRAY(sa.Double)),
        )
        chunk = values.table_valued("step", "loss").render_derived()
        rows = sa.select(sa.literal(job_id, sa.Integer), chunk.c.step, chunk.c.loss)
        insert = (
            postgresql.insert(rows_table)
            .from_select(["job_id", "step", "loss"], rows)
            .on_conflict_do_nothing(index_elements=["job_id", "step"])
        )
        connection.execute(insert)
        return
    insert = sqlite.insert(rows_table).on_conflict_do_nothing(index_elements=["job_id", "step"])
    connection.execute(
        insert,
        [{"job_id": job_id, "step": first_step + i, "loss": v} for i, v in enumerate(losses)],
    )


def _read_rows(connection: sa.Connection, job_ids: list[int]) -> np.ndarray:
    """(rows, 3) of job_id, step, loss from the rows table, as read_rows did before 0006."""
    query = sa.text(
        f"SELECT job_id, step, loss FROM {TABLE} WHERE job_id IN :ids ORDER BY job_id, step"
    ).bindparams(sa.bindparam("ids", expanding=True))
    parts = []
    for start in range(0, len(job_ids), 500):
        result = connection.execute(query, {"ids": sorted(job_ids)[start : start + 500]})
        rows = result.cursor.fetchall()
        result.close()
        parts.append(np.array(rows, dtype=np.float64))
    return np.concatenate(parts)


def compare_layouts(
    url: str, jobs: int, steps: int, chunk: int, repeat: int, measure: Callable
) -> list[tuple[str, list[float], list[float]]]:
    """(operation, rows ms, packed ms) on one database that bench_storage has loaded."""
    engine = make_engine(url)
    start = time.perf_counter()
    with engine.begin() as connection:
        _create(connection, jobs, steps)
    print(f"  rows table loaded in {time.perf_counter() - start:.0f} s", flush=True)
    factory = make_session_factory(engine, writer=True)
    rng = random.Random(5)
    values = [1.0 / (s + 1) for s in range(steps)]
    results = []

    # Write: one history in the worker's chunks, one transaction (and commit) per chunk. The
    # steps go past every stored step of an existing job on both layouts, so none collides.
    offset = [steps + 10]

    def writer(store: Callable) -> Callable[[], None]:
        def write() -> None:
            job_id = rng.randint(1, jobs)
            for first in range(0, steps, chunk):
                with session_scope(factory) as session:
                    store(session, job_id, offset[0] + first, values[first : first + chunk])
            offset[0] += steps

        return write

    writes = 10 * repeat
    results.append(
        (
            f"store one history, {-(-steps // chunk)} chunks, a transaction each",
            measure(writes, writer(_insert_rows)),
            measure(writes, writer(store_losses)),
        )
    )

    readers = make_session_factory(engine)

    def read_one_rows() -> None:
        with engine.connect() as connection:
            job_id = rng.randint(1, jobs)
            connection.execute(
                sa.select(rows_table.c.step, rows_table.c.loss)
                .where(rows_table.c.job_id == job_id, rows_table.c.step < steps)
                .order_by(rows_table.c.step)
            ).all()

    def read_one_packed() -> None:
        with readers() as session:
            read_losses(session, rng.randint(1, jobs), 0, steps)

    reads = 40 * repeat
    results.append(
        ("read one history", measure(reads, read_one_rows), measure(reads, read_one_packed))
    )
    sample = random.Random(6).sample(range(1, jobs + 1), min(1000, jobs))

    def read_many_rows() -> None:
        with engine.connect() as connection:
            _read_rows(connection, sample)

    def read_many_packed() -> None:
        with readers() as session:
            read_rows(session, sample)

    results.append(
        (
            f"read {len(sample)} histories as rows",
            measure(repeat, read_many_rows),
            measure(repeat, read_many_packed),
        )
    )
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE {TABLE}")
    engine.dispose()
    return results
