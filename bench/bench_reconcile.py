"""The reconciler's lost-message check over a 10,000-message backlog: every message read and
decoded each pass (before) against a QueueView kept between passes (after), in one run.

    python -m bench.bench_reconcile [--jobs 10000] [--passes 20] [--backends sqlite,postgresql]

A real Redis holds one real Celery training message per queued job (sent by `enqueue_jobs`),
and the jobs' rows say they were sent an hour ago, so every pass asks the broker which are
present. Between passes a worker takes 5 messages and 5 new ones are sent, as a slow backlog
would. Each pass is `find_lost_messages` whole (its database query included), timed, with
tracemalloc's peak of what a pass allocated measured on separate passes.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from datetime import timedelta

import redis
import sqlalchemy as sa

from bench.in_process import each_database, parse_with_backends, redis_in_temporary_dir
from bench.report import machine, median, publish, spread, table
from service.broker import enqueue_jobs, make_celery
from service.config import Config
from service.db import make_engine, make_session_factory, session_scope
from service.jobspec import validate_job
from service.models import Job, Sweep
from service.models.base import utcnow
from service.ops.queued_messages import QueueView
from service.ops.reconcile import find_lost_messages
from service.sweeps.store import insert_sweep_jobs

HEADERS = ["backend", "path", "median ms", "ms range", "median peak alloc", "decoded per pass"]
CHURN = 5


def backlog(url: str, config: Config, jobs: int) -> list[int]:
    """`jobs` queued rows sent an hour ago, each with its message in the cpu queue."""
    factory = make_session_factory(make_engine(url), writer=True)
    spec = validate_job({"stage": "nn"})
    with session_scope(factory) as session:
        sweep = Sweep(name="backlog", seed=1, request={}, varied=["seed"], job_count=jobs)
        specs = [{**spec, "seed": k} for k in range(jobs)]
        sent = insert_sweep_jobs(session, sweep, specs, ["cpu"] * jobs)
        session.execute(sa.update(Job).values(enqueued_at=utcnow() - timedelta(hours=1)))
    app = make_celery(config)
    for start in range(0, jobs, 1000):
        enqueue_jobs(app, sent[start : start + 1000])
    return [job_id for job_id, _ in sent]


def passes(url: str, config: Config, ids: list[int], count: int, keep: bool) -> list[tuple]:
    """(ms, peak bytes, decoded) of each timed pass, the view kept between passes or not."""
    factory = make_session_factory(make_engine(url))
    app = make_celery(config)
    client = redis.Redis.from_url(config.broker_url)
    view = QueueView(config.broker_url) if keep else None
    if view is not None:
        find_lost_messages(factory, config, utcnow(), view)  # the first pass reads everything
    results = []
    for n in range(count):
        for _ in range(CHURN):
            client.rpop("cpu")
        enqueue_jobs(app, [(job_id, "cpu") for job_id in ids[n * CHURN : (n + 1) * CHURN]])
        # Every third pass is traced for memory, untimed (tracing slows a pass several-fold).
        traced = n % 3 == 2
        if traced:
            tracemalloc.start()
        started = time.perf_counter()
        lost = find_lost_messages(factory, config, utcnow(), view)
        elapsed = (time.perf_counter() - started) * 1000
        peak = tracemalloc.get_traced_memory()[1] if traced else None
        tracemalloc.stop()
        assert len(lost) <= CHURN * (n + 1), len(lost)  # only the messages workers took
        results.append(
            (None if traced else elapsed, peak, view.decoded if view else client.llen("cpu"))
        )
    client.close()
    if view is not None:
        view.close()
    return results


def size(n: float) -> str:
    """Bytes, shortly."""
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--passes", type=int, default=20)
    args = parse_with_backends(parser)
    started = machine()
    rows = []
    with redis_in_temporary_dir("trainq-reconcile-") as (tmp, server):
        for backend, url in each_database(args.backends, tmp, "reconcile"):
            redis.Redis.from_url(server.url).flushdb()
            config = Config.from_env(database_url=url, broker_url=server.url)
            ids = backlog(url, config, args.jobs)
            medians = {}
            for label, keep in (("every message (before)", False), ("QueueView (after)", True)):
                timed = passes(url, config, ids, args.passes, keep)
                ms = [t[0] for t in timed if t[0] is not None]
                peaks = [t[1] for t in timed if t[1] is not None]
                medians[keep] = (median(ms), median(peaks))
                rows.append(
                    [backend, label, f"**{median(ms):.1f}**", spread(ms),
                     size(medians[keep][1]), int(median([t[2] for t in timed]))]
                )  # fmt: skip
            ratio_ms = medians[False][0] / medians[True][0]
            ratio_mem = medians[False][1] / medians[True][1]
            rows.append(
                [backend, "ratio before/after", f"{ratio_ms:.1f}x", "", f"{ratio_mem:.0f}x", ""]
            )
    body = (
        f"A backlog of {args.jobs:,} queued jobs, one message each; {args.passes} passes of"
        f" `find_lost_messages` per path, {CHURN} messages taken and {CHURN} sent before each;"
        " every third pass traced for its peak allocation (tracemalloc) and left out of the"
        " times.\n" + table(HEADERS, rows)
    )
    publish("Reconciler pass over a backlog", started, body, record=not args.no_record)


if __name__ == "__main__":
    main()
