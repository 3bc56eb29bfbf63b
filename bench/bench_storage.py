"""Storage and queries at full scale: 100,000 jobs x 500 steps (50 M losses) per backend.

    python -m bench.bench_storage [--jobs 100000] [--steps 500] [--backends sqlite,postgresql]
                                  [--repeat 5] [--no-record]

Every job gets a whole history in the worker's chunks (256 steps packed in one row, as
revision 0006 stores them), generated with numpy (SQLite: one executemany with `PRAGMA
synchronous=OFF, journal_mode=OFF` for the bulk load only; PostgreSQL: COPY with the primary
key dropped and rebuilt after, and foreign-key triggers off for the load). Then, on that
live-size database, through the real code paths:

- history write: a new job claimed (claim_job), its 500 losses stored with record_chunk in the
  worker's chunks (flush_every, 256), each chunk its own transaction as run_job does;
- history read: read_losses of one job at random ids;
- compare: GET /api/v1/compare of 1,000 random succeeded jobs (Flask test client);
- list: GET /api/v1/jobs with filters and sorts (the queries of bench_queries);
- factors: GET /api/v1/sweeps/{id}/factors of a 1,000-job sweep.

SQLite runs with the service's own engine (WAL, synchronous=NORMAL). PostgreSQL runs on a
throwaway cluster with durable settings (fsync, synchronous_commit and full_page_writes on),
so a commit waits for its WAL flush as a real deployment's does.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from bench.bench_queries import job_rows, list_queries
from bench.report import machine, publish, table
from bench.rows_layout import compare_layouts
from service.api import create_app
from service.config import Config
from service.db import make_engine, make_session_factory, session_scope
from service.jobs import read_losses
from service.migrate import upgrade
from service.models import Job, Sweep
from worker.attempts.claims import claim_job
from worker.attempts.record import finish_job, record_chunk

SWEEP_JOBS = 1000
VARIED = ["optimizer", "init", "lr", "seed"]
LRS = (1e-1, 1e-2, 1e-3, 1e-4)
# PostgreSQL for the benchmark: durable like a deployment, room for the bulk load's WAL.
PG_SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_wal_size": "16GB",
    "checkpoint_timeout": "30min",
    "shared_buffers": "1GB",
    "maintenance_work_mem": "1GB",
}


def jobs_and_sweeps(count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """bench_queries' job rows, with sweeps of SWEEP_JOBS jobs each over 4 learning rates."""
    sweeps = max(1, count // 2 // SWEEP_JOBS)
    jobs = job_rows(count, sweeps)
    for row in jobs:
        if row["sweep_id"] is not None:
            # Every odd job is in a sweep, dealt round-robin: SWEEP_JOBS jobs per sweep.
            row["sweep_id"] = 1 + (row["id"] // 2) % sweeps
            row["lr"] = LRS[(row["id"] // 2 // sweeps) % len(LRS)]
    sweep_rows = [
        {
            "id": k,
            "name": f"s{k}",
            "created_at": datetime(2026, 1, 1, tzinfo=UTC),
            "seed": k,
            "request": {},
            "varied": VARIED,
            "job_count": sum(1 for r in jobs if r["sweep_id"] == k),
            "cancel_requested": False,
        }
        for k in range(1, sweeps + 1)
    ]
    return jobs, sweep_rows


def history_chunks(jobs: int, steps: int, chunk: int) -> Iterator[tuple[int, int, int, bytes]]:
    """(job_id, first_step, count, data) of every job's history, in the worker's chunks."""
    step = np.arange(steps, dtype=np.float64)
    for start in range(1, jobs + 1, 1000):
        ids = np.arange(start, min(start + 1000, jobs + 1))
        # A decay of its own per job: ((id mod 1000) + 10) / (step + 1), nudged by id mod 7.
        values = (ids % 1000 + 10)[:, None] / (step + 1)[None, :] + (ids % 7)[:, None] * 1e-3
        for row, job_id in enumerate(ids.tolist()):
            for first in range(0, steps, chunk):
                data = values[row, first : first + chunk].astype("<f8").tobytes()
                yield job_id, first, len(data) // 8, data


def load_sqlite(path: Path, jobs: list[dict], sweeps: list[dict], steps: int, chunk: int) -> None:
    """Jobs and histories by executemany, in (job_id, first_step) order."""
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(sa.insert(Sweep.__table__), sweeps)
        for start in range(0, len(jobs), 20_000):
            connection.execute(sa.insert(Job.__table__), jobs[start : start + 20_000])
    engine.dispose()
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None)
    # Bulk load only: no journal and no fsync (a crash here loses a benchmark, nothing else).
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1000000")
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO loss_chunks (job_id, first_step, count, data) VALUES (?, ?, ?, ?)",
        history_chunks(len(jobs), steps, chunk),
    )
    db.execute("COMMIT")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("ANALYZE")
    db.close()


def load_postgresql(url: str, jobs: list[dict], sweeps: list[dict], steps: int, chunk: int) -> None:
    """Jobs and histories by COPY, the histories' primary key built after."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.insert(Sweep.__table__), sweeps)
        columns = list(jobs[0])
        raw = connection.connection.driver_connection
        copying = f"COPY jobs ({', '.join(columns)}) FROM STDIN"
        with raw.cursor() as cursor, cursor.copy(copying) as copy:
            for row in jobs:
                copy.write_row([row[c] for c in columns])
        connection.execute(sa.text("SELECT setval('jobs_id_seq', :n)"), {"n": len(jobs)})
        connection.execute(sa.text("SELECT setval('sweeps_id_seq', :n)"), {"n": len(sweeps)})
    with engine.begin() as connection:
        connection.exec_driver_sql("SET synchronous_commit = off")
        # Foreign-key triggers off for the load only: every job_id below is a job's id.
        connection.exec_driver_sql("SET session_replication_role = replica")
        connection.exec_driver_sql("ALTER TABLE loss_chunks DROP CONSTRAINT pk_loss_chunks")
        raw = connection.connection.driver_connection
        copying = "COPY loss_chunks (job_id, first_step, count, data) FROM STDIN"
        with raw.cursor() as cursor, cursor.copy(copying) as copy:
            for row in history_chunks(len(jobs), steps, chunk):
                copy.write_row(row)
        connection.exec_driver_sql(
            "ALTER TABLE loss_chunks ADD CONSTRAINT pk_loss_chunks PRIMARY KEY (job_id, first_step)"
        )
        connection.exec_driver_sql("SET session_replication_role = origin")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
        connection.exec_driver_sql("CHECKPOINT")
    engine.dispose()


def database_size(engine: sa.Engine) -> str:
    """The database's size on disk."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            size = connection.exec_driver_sql("SELECT pg_database_size(current_database())")
            return f"{size.scalar() / 1e9:.2f} GB"
    return f"{Path(engine.url.database).stat().st_size / 1e9:.2f} GB"


def measure(repeat: int, run: Callable[[], object]) -> list[float]:
    """Wall times in ms of run(), after one warm-up."""
    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return times


def write_histories(url: str, steps: int, chunk: int, count: int) -> dict[str, list[float]]:
    """Claim, write (record_chunk per chunk, one transaction each) and finish new jobs."""
    engine = make_engine(url)
    factory = make_session_factory(engine, writer=True)
    with session_scope(factory) as session:
        template = session.get(Job, 1)
        fields = {
            c.key: getattr(template, c.key)
            for c in Job.__table__.columns
            if c.key not in ("id", "sweep_id")
        }
        new = [Job(**{**fields, "status": "queued", "attempts": 0}) for _ in range(count + 1)]
        session.add_all(new)
        session.flush()
        ids = [job.id for job in new]
    rng = random.Random(3)
    timings: dict[str, list[float]] = {"claim": [], "history": [], "finish": []}
    for n, job_id in enumerate(ids):
        losses = [1000 * 0.99**s * (1 + 0.01 * rng.random()) for s in range(steps)]
        t0 = time.perf_counter()
        with session_scope(factory) as session:
            claim, _ = claim_job(session, job_id, "bench", 60.0, max_attempts=3)
        t1 = time.perf_counter()
        for first in range(0, steps, chunk):
            with session_scope(factory) as session:
                assert record_chunk(session, claim, first, losses[first : first + chunk], 60.0)
        t2 = time.perf_counter()
        with session_scope(factory) as session:
            finish_job(session, claim, "succeeded")
        t3 = time.perf_counter()
        if n:  # the first job warms the pool and the statement caches
            timings["claim"].append((t1 - t0) * 1000)
            timings["history"].append((t2 - t1) * 1000)
            timings["finish"].append((t3 - t2) * 1000)
    engine.dispose()
    return timings


def read_histories(url: str, jobs: int, steps: int, count: int) -> list[float]:
    """read_losses of random jobs, one session each as the API opens one per request."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    rng = random.Random(4)
    times = []
    for n in range(count + 1):
        job_id = rng.randint(1, jobs)
        start = time.perf_counter()
        with factory() as session:
            got, _ = read_losses(session, job_id)
        elapsed = (time.perf_counter() - start) * 1000
        assert len(got) == steps, (job_id, len(got))
        if n:
            times.append(elapsed)
    engine.dispose()
    return times


def run_backend(
    name: str, url: str, args: argparse.Namespace
) -> tuple[list[list], list[list], str]:
    """Load one database at scale and time every operation on it."""
    upgrade(url)
    jobs, sweeps = jobs_and_sweeps(args.jobs)
    start = time.perf_counter()
    if name == "sqlite":
        load_sqlite(Path(make_engine(url).url.database), jobs, sweeps, args.steps, args.chunk)
    else:
        load_postgresql(url, jobs, sweeps, args.steps, args.chunk)
    load_s = time.perf_counter() - start
    engine = make_engine(url)
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT sum(count) FROM loss_chunks").scalar()
        chunk_rows = connection.exec_driver_sql("SELECT count(*) FROM loss_chunks").scalar()
    size = database_size(engine)
    engine.dispose()
    note = (
        f"{name}: {args.jobs:,} jobs, {rows:,} losses in {chunk_rows:,} chunks, {size},"
        f" loaded in {load_s:.0f} s"
    )
    print(note, flush=True)

    results: list[list] = []

    def add(what: str, times: list[float], goal: str, extra: str = "") -> None:
        results.append(
            [
                name,
                what,
                f"{statistics.median(times):.1f}",
                f"{min(times):.1f}..{max(times):.1f}",
                len(times),
                goal,
                extra,
            ]
        )
        print(f"[{name}] {what}: {statistics.median(times):.1f} ms", flush=True)

    written = write_histories(url, args.steps, args.chunk, args.writes)
    chunks = -(-args.steps // args.chunk)
    add(
        f"history write ({chunks} x record_chunk, {args.steps} steps)",
        written["history"],
        "<= 5 ms",
    )
    add("claim_job (context)", written["claim"], "")
    add("finish_job (context)", written["finish"], "")
    add(
        "history read (read_losses, random job)",
        read_histories(url, args.jobs, args.steps, args.reads),
        "<= 5 ms",
    )

    config = Config.from_env(database_url=url, broker_url="redis://127.0.0.1:1/0")
    app = create_app({"TESTING": True, "TRAINQ_CONFIG": config})
    client = app.test_client()

    def get(path: str) -> Callable[[], object]:
        def run() -> object:
            response = client.get(path)
            body = response.get_data()
            assert response.status_code == 200, (path[:100], body[:300])
            return body

        return run

    succeeded = [r["id"] for r in jobs if r["status"] == "succeeded"]
    ids = ",".join(map(str, random.Random(2).sample(succeeded, args.compared)))
    compare = f"/api/v1/compare?jobs={ids}"
    add(
        f"compare {args.compared} x {args.steps} (points=200 default)",
        measure(args.repeat, get(compare)),
        "<= 1000 ms",
    )
    add(
        f"compare {args.compared} x {args.steps} csv summary",
        measure(args.repeat, get(compare + "&format=csv")),
        "",
    )
    for label, path in list_queries(client, "/api/v1", min(args.jobs // 2, 50_000)):
        add(label, measure(args.repeat, get(path)), "<= 100 ms")
    add(
        f"sweep factors ({sweeps[0]['job_count']} jobs)",
        measure(args.repeat, get("/api/v1/sweeps/1/factors")),
        "",
    )
    app.extensions["trainq.engine"].dispose()
    layouts = []
    if not args.no_layouts:

        def timings(count: int, run: Callable[[], object]) -> list[float]:
            return measure(count, run)

        for what, rows, packed in compare_layouts(
            url, args.jobs, args.steps, args.chunk, args.repeat, timings
        ):
            rows_ms, packed_ms = statistics.median(rows), statistics.median(packed)
            layouts.append(
                [name, what, f"{packed_ms:.2f}", f"{rows_ms:.2f}", f"{rows_ms / packed_ms:.1f}x"]
            )
            print(f"[{name}] {what}: packed {packed_ms:.2f} ms, rows {rows_ms:.2f} ms", flush=True)
    return results, layouts, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--chunk", type=int, default=256, help="steps per record_chunk")
    parser.add_argument("--compared", type=int, default=1000)
    parser.add_argument("--writes", type=int, default=50, help="histories written")
    parser.add_argument("--reads", type=int, default=200, help="histories read")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument(
        "--no-layouts", action="store_true", help="skip rows-vs-packed-chunks storage comparison"
    )
    args = parser.parse_args()
    started = machine()
    rows, layouts, notes = [], [], []
    with tempfile.TemporaryDirectory(prefix="trainq-storage-") as tmp:
        if "sqlite" in args.backends:
            result, layout, note = run_backend("sqlite", f"sqlite:///{tmp}/bench.sqlite3", args)
            rows += result
            layouts += layout
            notes.append(note)
        if "postgresql" in args.backends:
            from tests.support.postgres import PostgresServer

            server = PostgresServer(settings=PG_SETTINGS)
            server.start()
            try:
                url = server.create_database("bench")
                result, layout, note = run_backend("postgresql", url, args)
                rows += result
                layouts += layout
                notes.append(note)
            finally:
                server.cleanup()
    headers = ["backend", "operation", "median ms", "range ms", "n", "goal", ""]
    body = (
        "\n".join(f"- {n}" for n in notes)
        + "\n\n"
        + table(headers, rows)
        + f"\n\nhistory write: {args.writes} new jobs; read: {args.reads} random jobs; HTTP"
        f" queries: Flask test client, {args.repeat} repeats after a warm-up."
    )
    if layouts:
        body += (
            "\n\nStorage layer alone (bench/rows_layout.py), median ms: the service's packed"
            f" chunks (store_losses, read_losses, read_rows; {args.chunk}-step chunks) against a"
            " bench-only table of one row per step, the layout before revision 0006, on the"
            " same database.\n\n"
            + table(["backend", "operation", "packed (now)", "rows/step", "rows/packed"], layouts)
        )
    publish("Storage and queries at scale", started, body, record=not args.no_record)


if __name__ == "__main__":
    main()
