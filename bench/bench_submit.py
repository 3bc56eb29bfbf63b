"""Submission: a 1,000-job sweep accepted, rows written and messages sent.

    python -m bench.bench_submit [--jobs 1000] [--repeats 5] [--backends sqlite,postgresql]

POST /api/v1/sweeps is not on main yet: this measures the bulk path the sweep endpoint uses,
directly: validate each job, build the rows (new_job), one bulk insert and commit, then
enqueue_jobs over one broker connection and one UPDATE of enqueued_at.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from bench.report import machine, median, publish, spread, table
from bench.workloads import sweep_fields
from service.broker import enqueue_jobs, make_celery
from service.config import Config
from service.db import make_engine, make_session_factory
from service.jobs import new_job
from service.jobspec import validate_job
from service.migrate import upgrade
from service.models import Job
from service.models.base import utcnow
from service.redis_server import RedisServer, free_port


def submit(sessions, app, fields: list[dict]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Accept one sweep's jobs as the API's bulk path does; seconds per phase."""
    marks = [time.perf_counter()]
    specs = [validate_job(job) for job in fields]
    marks.append(time.perf_counter())
    with sessions() as session:
        jobs = [new_job(spec, "cpu") for spec in specs]
        session.add_all(jobs)
        session.commit()
        marks.append(time.perf_counter())
        enqueue_jobs(app, [(job.id, job.queue) for job in jobs])
        session.execute(
            sa.update(Job).where(Job.id.in_([job.id for job in jobs])).values(enqueued_at=utcnow())
        )
        session.commit()
    marks.append(time.perf_counter())
    names = ("validate", "rows", "enqueue", "total")
    phases = [b - a for a, b in zip(marks, marks[1:], strict=False)] + [marks[-1] - marks[0]]
    return dict(zip(names, phases, strict=True))


def database(backend: str, tmp: Path):  # type: ignore[no-untyped-def]
    """A migrated database URL and a cleanup."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'submit.sqlite3'}"
        upgrade(url)
        return url, lambda: None
    from tests.support.postgres import PostgresServer

    server = PostgresServer()
    server.start()
    url = server.create_database(f"b_{uuid.uuid4().hex[:8]}")
    upgrade(url)
    return url, server.cleanup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args()
    started = machine()
    tmp = Path(tempfile.mkdtemp(prefix="trainq-submit-"))
    rows = []
    with RedisServer(free_port(), tmp / "redis") as redis:
        for backend in args.backends.split(","):
            url, cleanup = database(backend, tmp)
            engine = make_engine(url)
            app = make_celery(Config.from_env(database_url=url, broker_url=redis.url))
            try:
                sessions = make_session_factory(engine)
                submit(sessions, app, sweep_fields(10))  # warm connections and caches
                runs = [submit(sessions, app, sweep_fields(args.jobs)) for _ in range(args.repeats)]
            finally:
                engine.dispose()
                cleanup()
            phase = {name: [run[name] for run in runs] for name in runs[0]}
            rows.append([backend] + [f"{median(v) * 1e3:.0f}" for v in phase.values()]
                        + [spread(phase["total"])])  # fmt: skip
    body = (
        f"{args.jobs} jobs per sweep, {args.repeats} repeats, medians in ms.\n"
        f"{__doc__.split(chr(10), 4)[4]}\n"
        + table(["backend", "validate", "rows", "enqueue", "total", "total range s"], rows)
        + "\n\ngoal: total <= 1000 ms"
    )
    publish("Submission of a 1,000-job sweep", started, body, record=not args.no_record)


if __name__ == "__main__":
    main()
