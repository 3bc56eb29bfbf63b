"""Time the results queries at scale: a compare of 1,000 jobs x 500 steps, and filtered job
lists over 100,000 jobs, on SQLite and PostgreSQL, through the real app (test client).

Baseline in the same run: the list queries again after dropping revision 0005's composite
indexes, and offset paging next to cursor paging at the same depth.

    python bench/bench_queries.py [--jobs 100000] [--compared 1000] [--steps 500] [--repeat 5]

Only the compared jobs get histories (1,000 x 500 = 500,000 losses, in 256-step chunks); the
other jobs have summary columns only (bench_storage gives every job a history).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
import sqlalchemy.orm as so  # noqa: E402

from bench.in_process import each_database, parse_with_backends  # noqa: E402
from service.api import create_app  # noqa: E402
from service.config import Config  # noqa: E402
from service.job_list import Cursor, offset_page  # noqa: E402
from service.loss_store import pack  # noqa: E402
from service.models import Job, Sweep  # noqa: E402

OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam", "adamw")
INITS = ("normal", "default", "uniform", "xavier_uniform", "kaiming_normal")
STAGES = ("tensors", "autograd", "nn", "optim", "module")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
# Steps per stored chunk, as the worker flushes by default.
CHUNK = 256
INDEXES_0005 = {
    "ix_jobs_created_at_id": ("created_at", "id"),
    "ix_jobs_final_loss_id": ("final_loss", "id"),
    "ix_jobs_status_created_at_id": ("status", "created_at", "id"),
    "ix_jobs_status_final_loss_id": ("status", "final_loss", "id"),
    "ix_jobs_sweep_id_final_loss_id": ("sweep_id", "final_loss", "id"),
}


def job_rows(count: int, sweeps: int, seed: int = 0) -> list[dict[str, Any]]:
    """Finished, running and queued jobs with plausible fields and summaries."""
    rng = random.Random(seed)
    rows = []
    for i in range(1, count + 1):
        stage = STAGES[i % 5]
        optimizer = "sgd" if stage in ("tensors", "autograd", "nn") else rng.choice(OPTIMIZERS)
        roll = rng.random()
        status = (
            "succeeded"
            if roll < 0.8
            else "diverged"
            if roll < 0.85
            else "failed"
            if roll < 0.9
            else "running"
            if roll < 0.95
            else "queued"
        )
        created = T0 + timedelta(seconds=i * 3)
        started = created + timedelta(seconds=rng.uniform(0, 60)) if status != "queued" else None
        finished = (
            started + timedelta(seconds=rng.uniform(1, 600))
            if status not in ("queued", "running")
            else None
        )
        final = 10 ** rng.uniform(-6, 3) if status == "succeeded" else None
        rows.append(
            {
                "id": i,
                "sweep_id": 1 + i % sweeps if i % 2 else None,
                "status": status,
                "stage": stage,
                "optimizer": optimizer,
                "init": rng.choice(INITS),
                "lr": 10 ** rng.uniform(-6, 0),
                "iterations": 500,
                "n": 64,
                "d_in": 1000,
                "h": 100,
                "d_out": 10,
                "seed": rng.getrandbits(62),
                "device": "auto",
                "dtype": "float32",
                "queue": "cpu",
                "created_at": created,
                "started_at": started,
                "finished_at": finished,
                "cancel_requested": False,
                "attempts": 1 if started else 0,
                "steps_done": 500 if finished else 0,
                "final_loss": final,
                "min_loss": final,
            }
        )
    return rows


def loss_chunks(job_ids: list[int], steps: int) -> list[tuple[int, int, int, bytes]]:
    """Geometric decays with a little noise, one rate per job, packed in 256-step chunks."""
    rng = random.Random(1)
    rows = []
    for job_id in job_ids:
        rate, start = rng.uniform(0.95, 0.999), 10 ** rng.uniform(2, 4)
        values = [start * rate**s * (1 + 0.05 * math.sin(s + job_id)) for s in range(steps)]
        for first in range(0, steps, CHUNK):
            part = values[first : first + CHUNK]
            rows.append((job_id, first, len(part), pack(part)))
    return rows


def fill(url: str, args: argparse.Namespace) -> list[int]:
    """Insert sweeps, jobs and the compared jobs' histories in bulk; return the compared ids."""
    engine = sa.create_engine(url)
    jobs = job_rows(args.jobs, args.sweeps)
    finished = [r["id"] for r in jobs if r["status"] == "succeeded"]
    compared = random.Random(2).sample(finished, args.compared)
    chunks = loss_chunks(compared, args.steps)
    sweeps = [
        {
            "id": k,
            "name": f"s{k}",
            "created_at": T0,
            "seed": k,
            "request": {},
            "varied": [],
            "job_count": 0,
            "cancel_requested": False,
        }
        for k in range(1, args.sweeps + 1)
    ]
    with engine.begin() as connection:
        connection.execute(sa.insert(Sweep.__table__), sweeps)
        if engine.dialect.name == "postgresql":
            # COPY: the fastest bulk load PostgreSQL has.
            columns = list(jobs[0])
            raw = connection.connection.driver_connection
            with raw.cursor() as cursor:
                with cursor.copy(f"COPY jobs ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in jobs:
                        copy.write_row([row[c] for c in columns])
                copying = "COPY loss_chunks (job_id, first_step, count, data) FROM STDIN"
                with cursor.copy(copying) as copy:
                    for row in chunks:
                        copy.write_row(row)
            connection.execute(sa.text("SELECT setval('jobs_id_seq', :n)"), {"n": args.jobs})
        else:
            for start in range(0, len(jobs), 20_000):
                connection.execute(sa.insert(Job.__table__), jobs[start : start + 20_000])
            connection.exec_driver_sql(
                "INSERT INTO loss_chunks (job_id, first_step, count, data) VALUES (?, ?, ?, ?)",
                chunks,
            )
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")
    engine.dispose()
    return compared


def timed(client: Any, url: str, repeat: int) -> tuple[float, float, Any]:
    """Median and best wall time in ms of a GET (after one warm-up), and its last response."""
    response = client.get(url)
    body = response.get_data(as_text=True)  # a streamed body must be read to end its context
    assert response.status_code == 200, (url[:120], body[:300])
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url)
        response.get_data()
        times.append((time.perf_counter() - start) * 1000)
    assert response.status_code == 200
    return statistics.median(times), min(times), response


def list_queries(client: Any, url_prefix: str, deep: int) -> list[tuple[str, str]]:
    """(label, url) of the job-list queries to time; one cursor taken at depth `deep`."""
    base = f"{url_prefix}/jobs"
    queries = [
        (
            "list: status=succeeded sort=final_loss",
            f"{base}?status=succeeded&sort=final_loss&limit=50",
        ),
        ("list: status=succeeded sort=-created", f"{base}?status=succeeded&sort=-created&limit=50"),
        ("list: sweep=8 sort=final_loss", f"{base}?sweep=8&sort=final_loss&limit=50"),
        (
            "list: optimizer=adam lr 1e-4..1e-2 sort=-created",
            f"{base}?optimizer=adam&lr_min=1e-4&lr_max=1e-2&sort=-created&limit=50",
        ),
        (
            "list: status=succeeded sort=-duration",
            f"{base}?status=succeeded&sort=-duration&limit=50",
        ),
        ("list: no filter sort=-final_loss", f"{base}?sort=-final_loss&limit=50"),
    ]
    # The same deep page two ways: OFFSET, and a cursor naming the row just before it.
    offset_url = f"{base}?status=succeeded&sort=final_loss&limit=50&offset={deep}"
    before = client.get(f"{base}?status=succeeded&sort=final_loss&limit=1&offset={deep - 1}")
    row = before.get_json()["jobs"][0]
    token = Cursor("final_loss", row["final_loss"], False, row["id"]).encode()
    queries += [
        (f"list: page at row {deep:,} by offset", offset_url),
        (
            f"list: page at row {deep:,} by cursor",
            f"{base}?status=succeeded&sort=final_loss&limit=50&cursor={token}",
        ),
    ]
    return queries


def offset_pages(
    name: str, engine: sa.Engine, deep: int, repeat: int
) -> list[tuple[str, str, float, float, str]]:
    """The deep offset page as offset_page reads it, beside one OFFSET over whole rows."""
    query = sa.select(Job).where(Job.status == "succeeded")

    def whole_rows(session: so.Session) -> list[int]:
        # The list's query before offset_page: NULL keys last by a CASE, OFFSET over rows.
        nulls_last = sa.case((Job.final_loss.is_(None), 1), else_=0)
        page = query.order_by(nulls_last, Job.final_loss, Job.id).limit(50).offset(deep)
        return [job.id for job in session.scalars(page)]

    def ids_first(session: so.Session) -> list[int]:
        return [job.id for job in offset_page(session, query, "final_loss", 50, deep)]

    factory = so.sessionmaker(engine)
    with factory() as session:
        assert whole_rows(session) == ids_first(session)
    results = []
    for label, read in (
        ("ids first (offset_page, now)", ids_first),
        ("OFFSET over whole rows (before)", whole_rows),
    ):
        times = []
        for _ in range(repeat + 1):
            with factory() as session:
                start = time.perf_counter()
                read(session)
                times.append((time.perf_counter() - start) * 1000)
        times = times[1:]  # the first warms the cache
        label = f"offset page at row {deep:,}, status=succeeded sort=final_loss: {label}"
        results.append((name, label, statistics.median(times), min(times), "session"))
    return results


def run_backend(
    name: str, url: str, args: argparse.Namespace
) -> list[tuple[str, str, float, float, str]]:
    """Every timing on one database."""
    start = time.perf_counter()
    compared = fill(url, args)
    print(
        f"[{name}] filled {args.jobs:,} jobs and {args.compared * args.steps:,} loss rows"
        f" in {time.perf_counter() - start:.1f} s",
        flush=True,
    )
    config = Config.from_env(database_url=url, broker_url="redis://127.0.0.1:1/0")
    app = create_app({"TESTING": True, "TRAINQ_CONFIG": config})
    client = app.test_client()
    results = []
    ids = ",".join(map(str, compared))
    for label, query in (
        (f"compare {args.compared} x {args.steps} (points=200 default)", f"jobs={ids}"),
        (f"compare {args.compared} x {args.steps} (points=0: every step)", f"jobs={ids}&points=0"),
        (f"compare {args.compared} x {args.steps} csv summary", f"jobs={ids}&format=csv"),
    ):
        median, best, response = timed(client, f"/api/v1/compare?{query}", args.repeat)
        size = f"{len(response.get_data()) / 1e6:.1f} MB"
        results.append((name, label, median, best, size))
        print(f"[{name}] {label}: {median:.0f} ms", flush=True)
    for label, query in list_queries(client, "/api/v1", args.deep):
        median, best, response = timed(client, query, args.repeat)
        results.append((name, label, median, best, f"total {response.get_json()['total']:,}"))
    engine = app.extensions["trainq.engine"]
    results += offset_pages(name, engine, args.deep, args.repeat)
    with engine.begin() as connection:
        for index in INDEXES_0005:
            connection.execute(sa.text(f"DROP INDEX {index}"))
        connection.exec_driver_sql("ANALYZE")
    for label, query in list_queries(client, "/api/v1", args.deep):
        median, best, response = timed(client, query, args.repeat)
        results.append((name, label + " [no 0005 indexes]", median, best, ""))
    engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--compared", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--sweeps", type=int, default=100)
    parser.add_argument("--deep", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parse_with_backends(parser, record=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend, url in each_database(args.backends, Path(tmp)):
            rows += run_backend(backend, url, args)
    header = "| backend | query | median ms | best ms | note |\n|---|---|---:|---:|---|\n"
    table = header + "".join(f"| {b} | {q} | {m:.1f} | {t:.1f} | {n} |\n" for b, q, m, t, n in rows)
    print(table)
    command = "python bench/bench_queries.py " + " ".join(sys.argv[1:])
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with args.results.open("a") as out:
        out.write(
            f"\n## Results queries ({stamp})\n\n`{command.strip()}`: {args.jobs:,} jobs,"
            f" histories only for the {args.compared:,} compared ({args.steps} steps each);"
            f" Flask test client, median of {args.repeat} after a warm-up.\n\n{table}"
        )


if __name__ == "__main__":
    main()
