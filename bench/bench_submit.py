"""Submission: a 1,000-job sweep accepted through POST /api/v1/sweeps, rows written, messages sent.

    python -m bench.bench_submit [--jobs 1000] [--repeats 5] [--backends sqlite,postgresql]

The real endpoint, in process: `create_app` and Flask's test client (no HTTP socket), a migrated
database and a real Redis with no worker, so every message stays in the queue's list to be
counted. Each request is timed whole; the endpoint's two bulk steps are timed inside it by
wrapping the functions it calls: insert (`insert_sweep_jobs`: sweep row, one bulk INSERT of the
jobs) and send (`service.dispatch.send.send`: one enqueue over one connection, one UPDATE,
commit); `rest` is the remainder (parse, expand, validate, the insert's commit, the
response). After each request the script checks the sweep's Job rows and that the queue
holds exactly one message per job (unfused) or batches covering every job once (`"fused": true`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import redis
import sqlalchemy as sa

import service.api.sweeps as sweeps_api
from bench.in_process import (
    app_in_process,
    each_database,
    parse_with_backends,
    redis_in_temporary_dir,
)
from bench.report import machine, median, publish, spread, table
from bench.workloads import sweep_request
from service.broker import BATCH_TASK, TRAIN_TASK
from service.models import Job

QUEUE = "cpu"
HEADERS = [
    "backend",
    "fused",
    "messages",
    "total ms",
    "total range s",
    "insert ms",
    "send ms",
    "rest ms",
]
# 5 optimizers x 8 rates x seeds: 1,000 jobs exactly at 25 seeds (the jobs never train here).
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam", "adamw")
RATES = (1e-8, 3e-8, 1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5)


@contextlib.contextmanager
def timed_steps(phases: dict[str, float]) -> Iterator[None]:
    """Time the endpoint's insert and send steps into phases while inside the block."""
    originals = {"insert": sweeps_api.insert_sweep_jobs, "send": sweeps_api.send}

    def timing(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                phases[name] = time.perf_counter() - start

        return wrapper

    sweeps_api.insert_sweep_jobs = timing("insert", originals["insert"])
    sweeps_api.send = timing("send", originals["send"])
    try:
        yield
    finally:
        sweeps_api.insert_sweep_jobs = originals["insert"]
        sweeps_api.send = originals["send"]


def queued_job_ids(broker: redis.Redis) -> tuple[int, list[int]]:
    """Messages in the queue's list and the job ids they carry, one entry per job sent."""
    messages = broker.lrange(QUEUE, 0, -1)
    ids: list[int] = []
    for raw in messages:
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        task = message["headers"]["task"]
        ids.extend(args[0] if task == BATCH_TASK else [args[0]] if task == TRAIN_TASK else [])
    return len(messages), ids


def submit(client, broker: redis.Redis, engine: sa.Engine, jobs: int, fused: bool) -> dict:  # type: ignore[no-untyped-def]
    """POST one sweep of jobs, check its rows and messages; seconds per phase and messages."""
    broker.delete(QUEUE)
    name = f"submit-{uuid.uuid4().hex[:8]}"
    body = {**sweep_request(jobs, name=name, optimizers=OPTIMIZERS, rates=RATES), "fused": fused}
    phases: dict[str, float] = {}
    with timed_steps(phases):
        start = time.perf_counter()
        response = client.post("/api/v1/sweeps", json=body)
        phases["total"] = time.perf_counter() - start
    assert response.status_code == 201, response.get_json()
    sweep = response.get_json()
    with engine.connect() as db:
        rows = db.scalars(sa.select(Job.id).where(Job.sweep_id == sweep["id"])).all()
        unsent = db.scalar(
            sa.select(sa.func.count())
            .where(Job.sweep_id == sweep["id"], Job.enqueued_at.is_(None))
            .select_from(Job)
        )
    messages, sent_ids = queued_job_ids(broker)
    expected = len(body["grid"]["optimizer"]) * len(body["grid"]["lr"]) * len(body["seeds"])
    assert sweep["job_count"] == len(rows) == expected, (sweep["job_count"], len(rows), expected)
    assert unsent == 0, f"{unsent} jobs without enqueued_at"
    assert sorted(sent_ids) == sorted(rows), "the queue does not carry each job exactly once"
    if not fused:
        assert messages == len(rows), (messages, len(rows))
    phases["rest"] = phases["total"] - phases["insert"] - phases["send"]
    return {**phases, "jobs": len(rows), "messages": messages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="rounded up to a multiple of 40")
    parser.add_argument("--repeats", type=int, default=5)
    args = parse_with_backends(parser)
    started = machine()
    rows, jobs = [], 0
    with redis_in_temporary_dir("trainq-submit-") as (tmp, server):
        broker = redis.Redis.from_url(server.url)
        for backend, url in each_database(args.backends, tmp, "submit"):
            runs: dict[bool, list[dict]] = {False: [], True: []}
            with app_in_process(url, server.url) as app:
                engine = app.extensions["trainq.engine"]
                client = app.test_client()
                for fused in (False, True):  # warm connections, caches and both code paths
                    submit(client, broker, engine, 10, fused)
                for _ in range(args.repeats):  # alternating, so drift hits both alike
                    for fused in (False, True):
                        runs[fused].append(submit(client, broker, engine, args.jobs, fused))
            for fused, done in runs.items():
                jobs = done[0]["jobs"]
                phase = {name: [run[name] for run in done] for name in ("insert", "send", "rest")}
                total = [run["total"] for run in done]
                rows.append(
                    [
                        backend,
                        "true" if fused else "false",
                        done[0]["messages"],
                        f"**{median(total) * 1e3:.0f}**",
                        spread(total),
                    ]
                    + [f"{median(v) * 1e3:.0f}" for v in phase.values()]
                )
        broker.close()
    body = (
        f"{jobs} jobs per sweep (grid optimizer x lr x seeds), {args.repeats} repeats of each "
        f"kind, alternating; medians in ms.\n{__doc__.split(chr(10), 4)[4].strip()}\n\n"
        + table(HEADERS, rows)
        + "\n\ngoal: total <= 1000 ms for a 1,000-job sweep"
    )
    publish(f"Submission of a {jobs:,}-job sweep", started, body, record=not args.no_record)


if __name__ == "__main__":
    main()
