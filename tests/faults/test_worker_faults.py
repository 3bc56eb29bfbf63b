"""Workers that die, stop, hang on to messages or take poison: every accepted job ends once."""

from __future__ import annotations

import os
import signal
import sqlite3
import statistics
import threading
import time

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from service.broker import enqueue_jobs, make_celery
from service.db import make_session_factory
from service.models import Checkpoint, JobStatus
from service.ops.reconcile import reconcile_once
from tests.conftest import TERMINAL
from tests.faults.checker import Expectation
from tests.faults.conftest import FIGURES, FaultEnv, record_recovery
from tests.support.waiting import wait_until

LONG = 20_000  # tensors steps of the small problem: a few seconds of training


def mid_job(job: dict) -> bool:
    return job["status"] == "running" and job["steps_done"] > 2500


def test_sigkill_of_a_worker_child_mid_job_resumes_from_its_checkpoint(env: FaultEnv) -> None:
    # Given a job training on a worker that checkpoints every 1000 steps
    worker = env.worker(concurrency=1)
    env.start_reconciler()
    job_id = env.submit(iterations=LONG)
    env.wait(job_id, mid_job)
    # When its pool process is killed in mid-job
    killed_at = time.monotonic()
    for pid in worker.children():
        os.kill(pid, signal.SIGKILL)
    env.fault()
    env.wait(job_id, lambda j: j["attempts"] == 2 and j["status"] == "running", timeout=60)
    record_recovery("kill -9 pool process mid-job", time.monotonic() - killed_at)
    # Then a second attempt resumes from the checkpoint and the history equals one whole run
    job = env.wait(job_id, lambda j: j["status"] in ("succeeded", "failed"), timeout=120)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2, job
    assert f"job {job_id} resumes from its checkpoint at step" in worker.log_tail(400)
    env.check()
    with env.sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Checkpoint)) == 0


def test_sigkill_of_the_worker_main_process(env: FaultEnv) -> None:
    # Given a running job and others waiting
    first = env.worker(concurrency=2)
    env.start_reconciler()
    ids = [env.submit(iterations=LONG)] + [env.submit(iterations=300) for _ in range(5)]
    env.wait(ids[0], mid_job)
    # When the worker's main process is killed (its pool processes are orphaned)
    os.kill(first.process.pid, signal.SIGKILL)
    env.fault()
    # Then a new worker, with the reconciler, finishes every job exactly once into the record
    env.worker(concurrency=2)
    env.wait_all(timeout=150)
    env.check()


# `make run`'s defaults for the lease and the heartbeat, as `trainq up` runs them.
DEFAULT_FAILOVER = {"TRAINQ_LEASE_SECONDS": "12", "TRAINQ_HEARTBEAT_SECONDS": "2"}
FAILOVER_ROUNDS = 3


def test_a_dead_workers_job_runs_again_elsewhere_within_seconds(env: FaultEnv) -> None:
    # Given two workers with the default lease and heartbeat, and the reconciler every 2 s
    env.start_reconciler(interval=2.0)
    spare = env.worker(concurrency=1, **DEFAULT_FAILOVER)
    recoveries = []
    for _ in range(FAILOVER_ROUNDS):
        # (the spare is kept busy until the victim has the job, so the victim takes it)
        blocker = env.submit(iterations=LONG * 5)
        env.wait(blocker, lambda j: j["status"] == "running")
        victim = env.worker(concurrency=1, **DEFAULT_FAILOVER)
        job_id = env.submit(iterations=LONG * 5)
        env.wait(job_id, lambda j: j["status"] == "running" and j["steps_done"] > 0)
        assert env.job(job_id)["worker"].startswith(victim.name)
        env.client.post(f"/api/v1/jobs/{blocker}/cancel")
        env.accepted[blocker].status = JobStatus.CANCELLED
        env.accepted[blocker].losses = None
        # When the worker's machine dies: its main process and its pool process, SIGKILL
        assert victim.process is not None
        killed_at = time.monotonic()
        os.killpg(victim.process.pid, signal.SIGKILL)
        env.fault()
        # Then the job is running again, on the spare, within seconds
        env.wait(
            job_id,
            lambda j: j["attempts"] == 2 and j["status"] == "running",
            timeout=60,
        )
        recoveries.append(time.monotonic() - killed_at)
        record_recovery("kill -9 whole worker mid-job (make run's lease)", recoveries[-1])
        assert env.job(job_id)["worker"].startswith(spare.name)
        env.wait(job_id, lambda j: j["status"] in TERMINAL, timeout=240)
    FIGURES["recovery_s"] = {
        "median": round(statistics.median(recoveries), 1),
        "worst": round(max(recoveries), 1),
        "each": [round(r, 1) for r in recoveries],
    }
    assert statistics.median(recoveries) <= 15, recoveries
    assert max(recoveries) <= 30, recoveries
    env.check()


def sqlite_write_locked(database_url: str) -> bool:
    """Whether some connection holds the SQLite database's one write lock (never on PostgreSQL)."""
    if make_url(database_url).get_backend_name() != "sqlite":
        return False
    connection = sqlite3.connect(make_url(database_url).database or "", timeout=0)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.rollback()
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        connection.close()


def freeze_between_writes(env: FaultEnv, pid: int) -> None:
    """SIGSTOP the worker's process group at a moment it holds no SQLite write lock.

    A worker frozen inside a write transaction keeps SQLite's one write lock, and the whole
    service waits until it is woken or killed: a limit of SQLite (docs/configuration.md).
    PostgreSQL ends such a transaction after TRAINQ_WORKER_IDLE_TRANSACTION_SECONDS, so there
    any moment will do.
    """
    for _ in range(50):
        os.killpg(pid, signal.SIGSTOP)
        if not sqlite_write_locked(env.database_url):
            return
        os.killpg(pid, signal.SIGCONT)
        wait_until(lambda: not sqlite_write_locked(env.database_url), 10, "the write to end")
    raise AssertionError("the worker was inside a write each of 50 times it was frozen")


def test_a_worker_frozen_past_its_lease_writes_nothing_more_and_stops(env: FaultEnv) -> None:
    # Given a job training on a worker
    frozen = env.worker(concurrency=1)
    env.start_reconciler()
    job_id = env.submit(iterations=LONG)
    env.wait(job_id, mid_job)
    # When the whole worker is frozen (SIGSTOP) until another worker has taken the job over
    assert frozen.process is not None
    freeze_between_writes(env, frozen.process.pid)
    env.fault()
    try:
        taker = env.worker(concurrency=1)
        started = time.monotonic()
        env.wait(job_id, lambda j: j["attempts"] == 2, timeout=90)
        record_recovery("SIGSTOP past the lease (taker started)", time.monotonic() - started)
    finally:
        os.killpg(frozen.process.pid, signal.SIGCONT)
    # Then the frozen attempt, woken, stops on its own and writes neither a loss nor a state
    wait_until(
        lambda: "lost its lease and stopped" in frozen.log_tail(400),
        60,
        lambda: "the woken attempt to stop:\n" + frozen.log_tail(),
    )
    job = env.wait(job_id, lambda j: j["status"] in TERMINAL, timeout=120)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2, job
    assert job["worker"].startswith(taker.name), job
    env.check()


def test_poison_job_fails_after_max_attempts_and_others_still_run(env: FaultEnv) -> None:
    # Given a job whose every attempt kills its worker process, among ordinary jobs
    env.worker(concurrency=2)
    env.start_reconciler()
    poison = env.submit(
        Expectation(status=JobStatus.FAILED, max_attempts=3), name="poison", iterations=300
    )
    others = [env.submit(iterations=300) for _ in range(6)]
    # Then the ordinary jobs finish, and the poison ends failed with the reason after 3 attempts
    for job_id in others:
        env.wait(job_id, lambda j: j["status"] == "succeeded", timeout=90)
    job = env.wait(poison, lambda j: j["status"] == "failed", timeout=120)
    env.fault(job["attempts"])
    assert job["attempts"] == 3, job
    assert "gave up after 3 attempts" in job["error"]
    env.check()


def test_a_job_outliving_the_visibility_timeout_runs_once(env: FaultEnv) -> None:
    # Given a broker that hands an unacknowledged message out again after 2 s
    worker = env.worker(concurrency=2, TRAINQ_VISIBILITY_TIMEOUT="2")
    # and a job that trains far longer than that (a fast machine must not finish it first)
    job_id = env.submit(Expectation(max_attempts=1), iterations=5 * LONG)
    env.fault()
    # Then the redelivered message finds the job held by a live lease and does not run it
    env.wait(job_id, lambda j: j["status"] in ("succeeded", "failed"), timeout=150)
    assert f"job {job_id} not run: held" in worker.log_tail(2000)
    assert env.job(job_id)["attempts"] == 1
    env.check()


def test_duplicate_messages_and_concurrent_reconcilers_run_each_job_once(env: FaultEnv) -> None:
    # Given every job sent three times over and four reconcilers racing on the same rows
    ids = [env.submit(Expectation(max_attempts=1), iterations=400) for _ in range(6)]
    celery = make_celery(env.config)
    enqueue_jobs(celery, [(job_id, "cpu") for job_id in ids for _ in range(2)])
    factory = make_session_factory(env.engine, writer=True)
    threads = [
        threading.Thread(target=reconcile_once, args=(factory, celery, env.config, 0.0))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    env.fault(len(ids) * 2)
    # When workers take them all
    worker = env.worker(concurrency=2)
    env.wait_all(timeout=90)
    wait_until(  # the last duplicates delivered and refused
        lambda: worker.log_tail(2000).count("not run: succeeded") >= len(ids),
        30,
        lambda: f"a refused duplicate per job:\n{worker.log_tail(60)}",
    )
    # Then each job ran once, and the extra deliveries were turned away
    assert all(env.job(job_id)["attempts"] == 1 for job_id in ids)
    assert worker.log_tail(2000).count("not run: succeeded") >= len(ids)
    env.check()
