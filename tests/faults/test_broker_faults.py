"""Redis lost, restarted or never reached, and a crash between commit and send: nothing is lost."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from service.db import session_scope
from service.jobs import new_job
from service.jobspec import validate_job
from service.ops.queued_messages import job_ids_in_broker
from tests.faults.checker import Expectation
from tests.faults.conftest import SMALL, FaultEnv
from tests.support.waiting import wait_until


def aof_written(url: str) -> bool:
    """Whether Redis has written every command it answered to its append-only file."""
    client = redis.Redis.from_url(url)
    try:
        return client.info("persistence")["aof_buffer_length"] == 0
    finally:
        client.close()


@pytest.mark.parametrize("appendonly", [True, False], ids=["aof", "no-aof"])
def test_redis_killed_with_jobs_queued_and_running_then_restarted(
    make_env: Callable[..., FaultEnv], appendonly: bool
) -> None:
    # Given one job training and five waiting in the queue
    env = make_env(appendonly=appendonly)
    worker = env.worker(concurrency=1)
    env.start_reconciler()
    # (A heavier problem than the others: it must still train when Redis dies.)
    ids = [env.submit(iterations=100_000, N=32, D_in=64, H=32, D_out=8)]
    env.wait(ids[0], lambda j: j["status"] == "running" and j["steps_done"] > 0)
    ids += [env.submit(iterations=300) for _ in range(5)]
    if appendonly:
        # A SIGKILL loses what Redis has not yet written to its file, not what it has not fsynced
        wait_until(lambda: aof_written(env.redis.url), 10, "the messages in the append-only file")
    assert [env.job(job_id)["status"] for job_id in ids] == ["running"] + ["queued"] * 5
    # When Redis is killed and comes back (without AOF: empty, every message gone)
    env.redis.kill()
    env.fault()
    wait_until(
        lambda: "Connection to broker lost" in worker.log_tail(400),
        30,
        lambda: f"the worker to notice:\n{worker.log_tail(60)}",
    )
    env.redis.start()
    # Then the worker reconnects, lost messages are sent again, and every job ends once
    env.wait_all(timeout=150)
    if not appendonly:
        assert any(counts["lost"] for counts in env.reconciled), env.reconciled
    env.check()


def test_redis_down_at_submission_is_accepted_and_sent_when_it_returns(env: FaultEnv) -> None:
    # Given Redis down
    env.redis.stop()
    env.fault()
    # When a job is submitted, it is accepted and persisted, not sent
    job_id = env.submit(iterations=300)
    assert env.job(job_id)["status"] == "queued"
    assert env.job(job_id)["enqueued_at"] is None
    # Then once Redis is back, the reconciler sends it and a worker runs it
    env.redis.start()
    env.start_reconciler()
    env.worker(concurrency=1)
    env.wait_all(timeout=90)
    assert env.reconciled
    assert env.reconciled[0]["sent"] >= 1
    env.check()


def test_crash_between_commit_and_enqueue_is_sent_by_the_reconciler(env: FaultEnv) -> None:
    # Given job rows committed by an API process that died before sending their messages
    limits = env.config.limits
    with session_scope(env.sessions) as session:
        jobs = [
            new_job(validate_job({**SMALL, "iterations": 300, "seed": s}, limits), "cpu")
            for s in range(3)
        ]
        session.add_all(jobs)
    for job in jobs:
        env.accepted[job.id] = Expectation(max_attempts=1)
    env.fault(len(jobs))
    env.worker(concurrency=2)
    # (no message for them anywhere, so the ready worker cannot run them)
    assert not {job.id for job in jobs} & job_ids_in_broker(env.redis.url, 3600)
    assert all(env.job(job.id)["status"] == "queued" for job in jobs)
    # When the reconciler runs
    env.start_reconciler()
    # Then each is sent once and runs once
    env.wait_all(timeout=90)
    env.check()
