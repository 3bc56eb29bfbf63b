"""Racing submissions, many SQLite writers, cancels, time limits and a database restart."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from service.models import Job, JobStatus
from tests.conftest import POSTGRESQL
from tests.faults.checker import Expectation
from tests.faults.conftest import FIGURES, SMALL, FaultEnv
from tests.support.postgres import PostgresServer
from tests.support.processes import WorkerProcess
from tests.support.waiting import wait_until


def runaway_job_ended(env: FaultEnv) -> dict:
    """Submit a job far longer than the time limits and wait until it ends (failed, it should)."""
    job_id = env.submit(Expectation(status=JobStatus.FAILED, max_attempts=1), iterations=100_000)
    env.fault()
    return env.wait(job_id, lambda j: j["status"] not in ("queued", "running"), timeout=60)


def worker_and_reconciler(env: FaultEnv, concurrency: int) -> WorkerProcess:
    """Start a worker and the reconciler: the service a database restart happens under."""
    worker = env.worker(concurrency=concurrency)
    env.start_reconciler()
    return worker


def restart_postgres_once_noticed(
    env: FaultEnv, postgres_server: PostgresServer, worker: WorkerProcess, who: str
) -> None:
    """Stop the server under the running jobs, and start it again once `who` log their retries."""
    postgres_server.stop()
    env.fault()
    wait_until(
        lambda: "database unavailable, retrying" in worker.log_tail(3000),
        30,
        lambda: f"{who} to notice:\n{env.logs()}",
    )
    postgres_server.start()


def test_same_idempotency_key_from_eight_threads_makes_one_job(env: FaultEnv) -> None:
    # Given eight clients retrying one submission at the same instant
    barrier = threading.Barrier(8)
    answers: list[tuple[int, int]] = []

    def post() -> None:
        client = env.app.test_client()
        barrier.wait(10)
        response = client.post(
            "/api/v1/jobs",
            json={**SMALL, "iterations": 200, "seed": 4},
            headers={"Idempotency-Key": "retry-me"},
        )
        answers.append((response.status_code, response.get_json()["id"]))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    env.fault()
    # Then exactly one was created and all eight answers name it
    assert sorted(code for code, _ in answers) == [200] * 7 + [201], answers
    (job_id,) = {job_id for _, job_id in answers}
    env.accepted[job_id] = Expectation(max_attempts=1)
    env.worker(concurrency=1)
    env.wait_all(timeout=60)
    env.check()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.timeout(360)  # eight workers on the CI's two cores; its own wait allows 240 s
def test_eight_workers_writing_to_sqlite_at_once(env: FaultEnv) -> None:
    # SQLite is the one-machine default: its single writer lock is what is under test here.
    env.worker(concurrency=8, TRAINQ_FLUSH_SECONDS="0.05")
    ids = [env.submit(iterations=1500) for _ in range(40)]
    env.fault()
    env.wait_all(timeout=240)
    assert all(env.job(job_id)["attempts"] == 1 for job_id in ids)
    env.check()


def test_cancel_of_queued_and_running_jobs(env: FaultEnv) -> None:
    # Given one job running on the only pool process and two waiting behind it
    worker = env.worker(concurrency=1)
    running = env.submit(Expectation(status=JobStatus.CANCELLED), iterations=100_000)
    queued = [env.submit(Expectation(status=JobStatus.CANCELLED), iterations=300) for _ in range(2)]
    env.wait(running, lambda j: j["status"] == "running" and j["steps_done"] > 500)
    # When all three are cancelled (the waiting ones first: the pool process would take them)
    for job_id in queued:
        response = env.client.post(f"/api/v1/jobs/{job_id}/cancel")
        assert response.status_code == 200
        assert response.get_json()["status"] == "cancelled"
    asked_at = time.monotonic()
    at_request = env.job(running)["steps_done"]
    assert env.client.post(f"/api/v1/jobs/{running}/cancel").status_code == 202
    env.fault(3)
    # Then the running one stops within a fraction of a second, the queued ones never run
    done = env.wait(running, lambda j: j["status"] == "cancelled", timeout=30)
    latency = time.monotonic() - asked_at
    assert latency < 5.0, latency
    assert done["steps_done"] < at_request + 20_000, (at_request, done["steps_done"])
    # (once the worker has taken their messages and turned them away)
    wait_until(
        lambda: all(f"job {i} not run: cancelled" in worker.log_tail(400) for i in queued),
        30,
        lambda: f"the queued jobs' messages refused:\n{worker.log_tail(60)}",
    )
    assert all(env.job(job_id)["attempts"] == 0 for job_id in queued)
    FIGURES["cancel_latency_s"] = max(FIGURES.get("cancel_latency_s", 0.0), round(latency, 3))
    env.check()


def test_soft_time_limit_fails_a_runaway_job_with_the_reason(env: FaultEnv) -> None:
    env.worker(concurrency=1, TRAINQ_JOB_SOFT_LIMIT_SECONDS="2", TRAINQ_JOB_HARD_LIMIT_SECONDS="30")
    job = runaway_job_ended(env)
    assert job["status"] == "failed", job
    assert "soft time limit" in job["error"], job
    env.check()


def test_hard_time_limit_fails_a_job_that_ignores_the_soft_one(env: FaultEnv) -> None:
    # No soft limit: the pool process is killed without warning.
    env.worker(concurrency=1, TRAINQ_JOB_SOFT_LIMIT_SECONDS="0", TRAINQ_JOB_HARD_LIMIT_SECONDS="2")
    env.start_reconciler()
    job = runaway_job_ended(env)
    assert job["status"] == "failed", job
    assert "hard time limit" in job["error"], job
    # A reconciler pass after the lease ran out did not send it again
    lease_over = time.monotonic() + env.config.lease_seconds
    wait_until(lambda: env.passes and env.passes[-1] > lease_over, 30, "a pass past the lease")
    assert env.job(job["id"])["attempts"] == 1
    env.check()


@pytest.mark.parametrize("database_url", [POSTGRESQL], indirect=True)
def test_postgresql_restarting_while_jobs_run(
    env: FaultEnv, postgres_server: PostgresServer
) -> None:
    # PostgreSQL only: a SQLite file has no server to restart.
    worker = worker_and_reconciler(env, concurrency=2)
    ids = [env.submit(iterations=15_000) for _ in range(2)] + [
        env.submit(iterations=300) for _ in range(3)
    ]
    env.wait(ids[0], lambda j: j["status"] == "running" and j["steps_done"] > 0)
    # When the server goes away for a couple of seconds under the running jobs
    restart_postgres_once_noticed(env, postgres_server, worker, "the workers")
    # Then the workers retry, survive, and every job ends once with its whole history
    env.wait_all(timeout=150)
    assert worker.process.poll() is None
    assert "database unavailable, retrying" in worker.log_tail(3000)
    with env.sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Job)) == len(ids)
    env.check()


@pytest.mark.parametrize("database_url", [POSTGRESQL], indirect=True)
def test_postgresql_restarting_under_a_fused_stack(
    env: FaultEnv, postgres_server: PostgresServer
) -> None:
    # Given a fused stack training
    worker = worker_and_reconciler(env, concurrency=1)
    ids = env.submit_stack({"seed": [1, 2, 3, 4]}, iterations=15_000)
    for job_id in ids:
        env.wait(job_id, lambda j: j["status"] == "running" and j["steps_done"] > 0)
    # When the server goes away for a while under it
    restart_postgres_once_noticed(env, postgres_server, worker, "the worker")
    # Then the stack retries, survives, and each job ends once, with its whole fused history
    env.wait_all(timeout=150)
    assert worker.process is not None
    assert worker.process.poll() is None
    env.check()
