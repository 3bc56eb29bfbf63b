"""Fused jobs end to end: rows -> one batch message -> a real worker -> each job's own history."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from flask.testing import FlaskClient

from service.broker import enqueue_batches, make_celery
from service.config import Config
from service.db import make_session_factory
from service.dispatch.fusing import plan_batches
from service.jobs import new_job
from service.jobspec import validate_job
from service.models import Job, LossChunk
from service.ops.queued_messages import job_ids_of
from service.ops.reconcile import reconcile_once
from service.ops.redis_server import RedisServer
from tests.conftest import (
    BACKEND_PARAMS,
    TERMINAL,
    DatabaseFactory,
    Stack,
    count_rows,
    make_test_app,
)
from tests.support.processes import WorkerProcess
from worker.training import TrainSpec, train_to_list

SMALL = {"stage": "optim", "optimizer": "sgd", "N": 16, "D_in": 12, "H": 10, "D_out": 3}


def submit_fused(stack: Stack, fields: list[dict]) -> list[int]:
    """Write the jobs' rows, then send them as planned fused batches."""
    with stack.sessions() as session:
        jobs = [new_job(validate_job({**SMALL, **f}), "cpu") for f in fields]
        session.add_all(jobs)
        session.commit()
        batches = plan_batches(jobs)
        ids = [job.id for job in jobs]
    app = make_celery(Config.from_env(database_url=stack.database_url, broker_url=stack.broker_url))
    enqueue_batches(app, batches)
    return ids


def test_eight_fused_jobs_each_end_with_their_own_history(stack: Stack) -> None:
    # Given 8 compatible jobs in one batch, each with its own seed and rate, one diverging
    fields = [{"seed": s, "lr": 5e-4 * (1 + s / 4), "iterations": 200} for s in range(7)]
    fields.append({"seed": 99, "lr": 10.0, "iterations": 200})
    ids = submit_fused(stack, fields)

    # When the worker has trained them
    jobs = [stack.wait(job_id, timeout=120) for job_id in ids]

    # Then the seven succeed with their own rows, equal to each job run alone
    for job in jobs[:7]:
        assert job["status"] == "succeeded", job
        assert job["steps_done"] == 200
        assert job["ran_on"] == "cpu"
        history = stack.losses(job["id"])
        assert history["steps"] == list(range(200))
        alone = train_to_list(TrainSpec.from_fields(job)).losses
        for a, b in zip(alone[:100], history["losses"][:100], strict=True):
            assert abs(a - b) <= 1e-4 * abs(a)
        assert math.isclose(alone[-1], history["losses"][-1], rel_tol=0.05)
        assert job["final_loss"] == history["losses"][-1]
    # and the diverging one ends diverged at its step, its finite history kept
    bad = jobs[7]
    assert bad["status"] == "diverged", bad
    expected = train_to_list(TrainSpec.from_fields(bad)).diverged_at
    assert bad["diverged_at"] == expected
    assert bad["steps_done"] == expected
    stored = count_rows(
        stack.sessions,
        sa.select(sa.func.sum(LossChunk.count)).where(LossChunk.job_id == bad["id"]),
    )
    assert stored == expected
    # All eight trained as one stack: they ran over the same span of time, and say so.
    assert max(job["started_at"] for job in jobs) <= min(job["finished_at"] for job in jobs)
    assert [job["stack_size"] for job in jobs] == [8] * 8


def test_a_cancelled_fused_job_ends_cancelled_and_the_others_finish(stack: Stack) -> None:
    fields = [{"seed": s, "lr": 1e-4, "iterations": 20000, "optimizer": "adam"} for s in range(3)]
    ids = submit_fused(stack, fields)
    stack.wait(ids[1], timeout=60, until=lambda job: job["steps_done"] > 0)
    assert stack.client.post(f"/api/v1/jobs/{ids[1]}/cancel").status_code in (200, 202)
    cancelled = stack.wait(ids[1], timeout=60)
    assert cancelled["status"] == "cancelled"
    assert 0 < cancelled["steps_done"] < 20000
    for job_id in (ids[0], ids[2]):
        job = stack.wait(job_id, timeout=120)
        assert job["status"] == "succeeded"
        assert job["steps_done"] == 20000
        assert job["stack_size"] == 3
    assert cancelled["stack_size"] == 3
    with stack.sessions() as session:
        assert session.get(Job, ids[1]).steps_done == cancelled["steps_done"]


def queued_messages(broker: redis.Redis) -> list[tuple[str, list[int]]]:
    """(task, job ids) of every message waiting in the cpu queue."""
    return [
        (json.loads(raw)["headers"]["task"], job_ids_of(raw)) for raw in broker.lrange("cpu", 0, -1)
    ]


def wait_until_ended(client: FlaskClient, job_id: int, timeout: float = 120) -> dict:
    """The job once it has ended, or as it is when the time runs out."""
    deadline = time.monotonic() + timeout
    job = client.get(f"/api/v1/jobs/{job_id}").get_json()
    while job["status"] not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.1)
        job = client.get(f"/api/v1/jobs/{job_id}").get_json()
    return job


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_a_fused_sweep_queued_past_the_lost_message_time_still_trains_in_one_stack(
    backend: str,
    databases: DatabaseFactory,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    # Given a fused sweep of 6 jobs, no worker yet, and messages counted lost after 0.2 s
    database_url = databases.create(backend)
    broker_url = redis_server.url.rsplit("/", 1)[0] + "/3"  # the stacks use 1 and 2
    broker = redis.Redis.from_url(broker_url)
    broker.flushdb()
    app = make_test_app(database_url, broker_url, lost_message_seconds=0.2)
    config = app.config["TRAINQ"]
    factory = make_session_factory(app.extensions["trainq.engine"])
    celery = make_celery(config)
    sweep = {
        "name": "lost",
        "base": {**SMALL, "iterations": 50},
        "fused": True,
        "grid": {"seed": [1, 2, 3, 4, 5, 6]},
    }
    response = app.test_client().post("/api/v1/sweeps", json=sweep)
    assert response.status_code == 201, response.get_json()
    ((task, ids),) = queued_messages(broker)
    assert task == "trainq.train_batch"
    assert len(ids) == 6
    nothing = {"sent": 0, "lost": 0, "resent": 0, "failed": 0, "batches": 0}
    try:
        # When they wait in the queue past the lost-message time: the batch is there, not lost
        time.sleep(0.3)
        assert reconcile_once(factory, celery, config, grace_seconds=0) == nothing
        # When Redis loses the message: the next pass sends the six again as one batch
        broker.flushdb()
        counts = reconcile_once(factory, celery, config, grace_seconds=0)
        assert counts == {**nothing, "lost": 6, "batches": 1}
        time.sleep(0.3)
        assert reconcile_once(factory, celery, config, grace_seconds=0) == nothing
        assert queued_messages(broker) == [("trainq.train_batch", sorted(ids))]
        # Then a worker started now trains all six in one stack, each once
        worker = WorkerProcess(database_url, broker_url, tmp_path).start()
        try:
            client = app.test_client()
            jobs = [wait_until_ended(client, job_id) for job_id in ids]
            log = worker.log_path.read_text(errors="replace")
        finally:
            worker.stop()
        for job in jobs:
            assert job["status"] == "succeeded", (job, worker.log_tail())
            assert job["stack_size"] == 6
            assert job["attempts"] == 1
            assert job["steps_done"] == 50
        # The worker received one message, the batch: nothing went singly, nothing twice
        assert re.findall(r"Task (\S+)\[\S+\] received", log) == ["trainq.train_batch"]
        assert reconcile_once(factory, celery, config, grace_seconds=0) == nothing
    finally:
        broker.close()
        app.extensions["trainq.engine"].dispose()
