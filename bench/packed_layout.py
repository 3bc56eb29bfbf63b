"""The storage layer alone, rows per step against one packed row per chunk, on a live database.

bench_storage calls this after its own measurements: it builds a bench-only table
`bench_loss_chunks(job_id, first_step, count, data)` with a history for every job (two
chunks of little-endian float64, as the worker's flushes would give), then times on both
layouts what the service does with histories: store one 500-step history in the worker's
chunks (a transaction each), read one history, and read 1,000 histories into a grid. The
packed table is not the service's: it weighs the design before anyone migrates to it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import numpy as np
import sqlalchemy as sa

from service.db import make_engine, make_session_factory, session_scope
from service.histories import read_grid
from service.jobs import read_losses
from worker.loss_rows import insert_losses
from worker.recording import _insert_ignoring_duplicates

TABLE = "bench_loss_chunks"


def _create(connection: sa.Connection, jobs: int, steps: int, chunk: int) -> None:
    """The packed table with every job's history, zeros as the values (sizes are what count)."""
    postgres = connection.dialect.name == "postgresql"
    blob = "BYTEA" if postgres else "BLOB"
    connection.exec_driver_sql(
        f"CREATE TABLE {TABLE} (job_id INTEGER NOT NULL, first_step INTEGER NOT NULL,"
        f" count INTEGER NOT NULL, data {blob} NOT NULL, PRIMARY KEY (job_id, first_step))"
    )
    if postgres:
        # Real losses do not compress; zeros would, so compression is off as for noise.
        connection.exec_driver_sql(f"ALTER TABLE {TABLE} ALTER COLUMN data SET STORAGE EXTERNAL")
        connection.exec_driver_sql(
            f"INSERT INTO {TABLE} SELECT j, f, least({chunk}, {steps} - f),"
            f" decode(repeat('00', 8 * least({chunk}, {steps} - f)), 'hex')"
            f" FROM generate_series(1, {jobs}) AS j"
            f" CROSS JOIN LATERAL generate_series(0, {steps - 1} + 0 * j, {chunk}) AS f"
        )
    else:
        connection.exec_driver_sql(
            f"WITH RECURSIVE c(f) AS (SELECT 0 UNION ALL SELECT f + {chunk} FROM c"
            f" WHERE f + {chunk} < {steps}) INSERT INTO {TABLE}"
            f" SELECT j.id, c.f, min({chunk}, {steps} - c.f),"
            f" zeroblob(8 * min({chunk}, {steps} - c.f)) FROM jobs AS j CROSS JOIN c"
            " ORDER BY j.id, c.f"
        )
    connection.exec_driver_sql(f"ANALYZE {TABLE}")


def _read_packed(connection: sa.Connection, job_ids: list[int], steps: int) -> np.ndarray:
    """(jobs, steps) float64 grid from the packed chunks, 500 ids a query."""
    grid = np.full((len(job_ids), steps), np.nan)
    where = {job_id: i for i, job_id in enumerate(job_ids)}
    query = sa.text(
        f"SELECT job_id, first_step, data FROM {TABLE} WHERE job_id IN :ids"
    ).bindparams(sa.bindparam("ids", expanding=True))
    for start in range(0, len(job_ids), 500):
        result = connection.execute(query, {"ids": job_ids[start : start + 500]})
        for job_id, first, data in result.cursor.fetchall():
            values = np.frombuffer(data, dtype="<f8")
            grid[where[job_id], first : first + len(values)] = values
        result.close()
    return grid


def compare_layouts(
    url: str, jobs: int, steps: int, chunk: int, repeat: int, measure: Callable
) -> list[tuple[str, list[float], list[float] | None]]:
    """(operation, rows ms, packed ms) on one database that bench_storage has loaded."""
    engine = make_engine(url)
    start = time.perf_counter()
    with engine.begin() as connection:
        _create(connection, jobs, steps, chunk)
        last = connection.exec_driver_sql(f"SELECT max(job_id) FROM {TABLE}").scalar_one()
    print(f"  packed table loaded in {time.perf_counter() - start:.0f} s", flush=True)
    factory = make_session_factory(engine, writer=True)
    rng = random.Random(5)
    values = [1.0 / (s + 1) for s in range(steps)]
    results = []

    # Write: one history in the worker's chunks, one transaction (and commit) per chunk. The
    # rows go past every stored step of an existing job, so the primary key never collides.
    offset = [steps + 10]

    def write_rows() -> None:
        job_id = rng.randint(1, jobs)
        for first in range(0, steps, chunk):
            with session_scope(factory) as session:
                insert_losses(session, job_id, offset[0] + first, values[first : first + chunk])
        offset[0] += steps

    def write_executemany() -> None:
        # The insert record_chunk used before worker/loss_rows.py: a Core executemany of dicts.
        job_id = rng.randint(1, jobs)
        for first in range(0, steps, chunk):
            rows = [
                {"job_id": job_id, "step": offset[0] + first + i, "loss": value}
                for i, value in enumerate(values[first : first + chunk])
            ]
            with session_scope(factory) as session:
                session.connection().execute(_insert_ignoring_duplicates(session), rows)
        offset[0] += steps

    packed_insert = sa.text(f"INSERT INTO {TABLE} VALUES (:job_id, :first, :count, :data)")
    next_id = [last + 1]

    def write_packed() -> None:
        job_id, next_id[0] = next_id[0], next_id[0] + 1
        for first in range(0, steps, chunk):
            data = np.asarray(values[first : first + chunk], dtype="<f8").tobytes()
            with session_scope(factory) as session:
                session.execute(
                    packed_insert,
                    {"job_id": job_id, "first": first, "count": len(data) // 8, "data": data},
                )

    writes = 10 * repeat
    results.append(
        (f"store one history, {-(-steps // chunk)} chunks by executemany (the insert before)",
         measure(writes, write_executemany), None)
    )  # fmt: skip
    results.append(
        (f"store one history, {-(-steps // chunk)} chunks by insert_losses (now)",
         measure(writes, write_rows), measure(writes, write_packed))
    )  # fmt: skip

    readers = make_session_factory(engine)

    def read_one_rows() -> None:
        with readers() as session:
            read_losses(session, rng.randint(1, jobs), 0, steps)

    def read_one_packed() -> None:
        with engine.connect() as connection:
            _read_packed(connection, [rng.randint(1, jobs)], steps)

    reads = 40 * repeat
    results.append(
        ("read one history", measure(reads, read_one_rows), measure(reads, read_one_packed))
    )
    sample = random.Random(6).sample(range(1, jobs + 1), min(1000, jobs))

    def read_many_rows() -> None:
        with readers() as session:
            read_grid(session, sample)

    def read_many_packed() -> None:
        with engine.connect() as connection:
            _read_packed(connection, sample, steps)

    results.append(
        (f"read {len(sample)} histories into a grid", measure(repeat, read_many_rows),
         measure(repeat, read_many_packed))
    )  # fmt: skip
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE {TABLE}")
    engine.dispose()
    return results
