"""Fused stacks under the faults a single job survives: each of their jobs ends once, whole."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from service.models import Job, JobStatus
from tests.conftest import TERMINAL
from tests.faults.checker import Expectation
from tests.faults.conftest import FIGURES, FaultEnv, record_recovery
from tests.support.processes import WorkerProcess

LONG = 20_000  # tensors steps of the small problem: a few seconds of training
SEEDS = {"seed": [1, 2, 3, 4]}


def all_jobs(env: FaultEnv, ids: list[int], until: Callable[[dict], bool], timeout: float) -> None:
    """Wait until every job satisfies `until`."""
    for job_id in ids:
        env.wait(job_id, until, timeout)


def mid_stack(job: dict) -> bool:
    # Past the first checkpoint (every 1000 steps in the suite), far from the end.
    return job["status"] == "running" and job["steps_done"] > 2500


def exit_on_sigterm(env: FaultEnv, worker: WorkerProcess) -> tuple[int, float]:
    """SIGTERM the worker, as `docker stop` and systemd do: its exit code and seconds to exit."""
    assert worker.process is not None
    asked_at = time.monotonic()
    os.kill(worker.process.pid, signal.SIGTERM)
    env.fault()
    code = worker.process.wait(30)
    took = time.monotonic() - asked_at
    FIGURES["sigterm_exit_s"] = max(FIGURES.get("sigterm_exit_s", 0.0), round(took, 1))
    return code, took


def test_sigkill_of_a_pool_process_mid_stack_resumes_every_job(env: FaultEnv) -> None:
    # Given four jobs training as one fused stack that checkpoints every 1000 steps
    worker = env.worker(concurrency=1)
    env.start_reconciler()
    ids = env.submit_stack(SEEDS, iterations=LONG)
    all_jobs(env, ids, mid_stack, 60)
    assert {env.job(job_id)["stack_size"] for job_id in ids} == {4}
    # When its pool process is killed
    killed_at = time.monotonic()
    for pid in worker.children():
        os.kill(pid, signal.SIGKILL)
    env.fault()
    # Then the stack resumes from its checkpoints, and each history equals one whole fused run
    all_jobs(env, ids, lambda j: j["attempts"] == 2 and j["status"] == "running", 60)
    record_recovery("kill -9 pool process mid-stack", time.monotonic() - killed_at)
    all_jobs(env, ids, lambda j: j["status"] in TERMINAL, 120)
    assert "resume fused at step" in worker.log_tail(400)
    assert {env.job(job_id)["stack_size"] for job_id in ids} == {4}
    env.check()


def test_sigkill_of_the_whole_worker_mid_stack(env: FaultEnv) -> None:
    # Given a fused stack training on a worker, and a second worker (kept busy until then)
    spare = env.worker(concurrency=1)
    env.start_reconciler()
    blocker = env.submit(Expectation(status=JobStatus.CANCELLED), iterations=100_000)
    env.wait(blocker, lambda j: j["status"] == "running")
    victim = env.worker(concurrency=1)
    ids = env.submit_stack(SEEDS, iterations=LONG)
    all_jobs(env, ids, mid_stack, 60)
    assert env.client.post(f"/api/v1/jobs/{blocker}/cancel").status_code == 202
    env.wait(blocker, lambda j: j["status"] == "cancelled")
    # When the worker's machine dies: its main process and its pool process
    assert victim.process is not None
    killed_at = time.monotonic()
    os.killpg(victim.process.pid, signal.SIGKILL)
    env.fault()
    # Then the reconciler sends the stack again as a batch and the spare resumes it
    all_jobs(env, ids, lambda j: j["attempts"] == 2 and j["status"] == "running", 60)
    record_recovery("kill -9 whole worker mid-stack", time.monotonic() - killed_at)
    all_jobs(env, ids, lambda j: j["status"] in TERMINAL, 120)
    assert "resume fused at step" in spare.log_tail(400)
    assert all(env.job(job_id)["worker"].startswith(spare.name) for job_id in ids)
    env.check()


# Its check retrains eight 100,000-step references in the test process: minutes on a loaded
# machine, past the suite's 240 s default.
@pytest.mark.timeout(600)
def test_sigkill_mid_refilled_stack_ends_every_job_once_pruned_or_whole(env: FaultEnv) -> None:
    # Given an asha sweep of 8 fused jobs on a worker stacking 3 at most, a good job first:
    # the rows its pruned stack-mates leave take the sweep's later jobs, the 4th a better one
    worker = env.worker(concurrency=1, TRAINQ_MAX_STACK="3")
    env.start_reconciler()
    ended = frozenset({JobStatus.SUCCEEDED, JobStatus.PRUNED})
    rates = [1e-4, 1e-7, 3e-8, 2e-4, 1e-6, 1e-8, 5e-5, 3e-7]
    ids = env.submit_stack(
        {"lr": rates},
        lambda _: Expectation(status=ended, fused=True, max_attempts=2),
        early_stop={"rule": "asha", "grace": 8, "reduction": 2},
        iterations=5 * LONG,  # a stack of 3 of this size trains ~20,000 steps a second
    )

    def refilled_mid_stack(_job: dict) -> bool:
        jobs = [env.job(job_id) for job_id in ids]
        joined = jobs[3]["status"] == "running" and jobs[3]["steps_done"] > 1500
        return joined and mid_stack(jobs[0])

    env.wait(ids[0], refilled_mid_stack, 60)
    # When its pool process is killed, a refilled row and an original one mid-way
    killed_at = time.monotonic()
    for pid in worker.children():
        os.kill(pid, signal.SIGKILL)
    env.fault()
    # Then every job ends once, succeeded or pruned, each history the run's (or its beginning)
    env.wait(ids[0], lambda j: j["attempts"] == 2 and j["status"] == "running", 60)
    record_recovery("kill -9 pool process mid refilled stack", time.monotonic() - killed_at)
    all_jobs(env, ids, lambda j: j["status"] in TERMINAL, 180)
    assert "refilled with jobs" in worker.log_tail(2000)
    # (The first job may end pruned: resumed, it meets the better 4th at a rung again.)
    assert env.job(ids[3])["status"] == "succeeded"
    env.check()


def test_sigterm_hands_a_stack_back_within_ten_seconds(env: FaultEnv) -> None:
    # Given a stack of jobs far too long to finish before a shutdown's deadline
    leaving = env.worker(concurrency=1)
    ids = env.submit_stack(SEEDS, iterations=100_000)
    all_jobs(env, ids, mid_stack, 60)
    # When the worker is asked to stop, as `docker stop` and systemd ask
    code, took = exit_on_sigterm(env, leaving)
    # Then it checkpoints the stack, hands every job back and exits within 10 s
    assert code == 0
    assert took <= 10, took
    for job_id in ids:
        job = env.job(job_id)
        assert job["status"] == "queued", job
        assert job["steps_done"] > 2500, job
    # and the next worker resumes them from the checkpoint, each history one whole run
    env.worker(concurrency=1)
    started = time.monotonic()
    all_jobs(env, ids, lambda j: j["status"] == "running", 60)
    record_recovery("SIGTERM mid-stack (next worker started)", time.monotonic() - started)
    all_jobs(env, ids, lambda j: j["status"] in TERMINAL, 240)
    assert all(env.job(job_id)["attempts"] == 1 for job_id in ids)
    env.check()


def test_sigterm_hands_a_single_job_back_within_ten_seconds(env: FaultEnv) -> None:
    # Given one job of 100,000 steps training alone
    leaving = env.worker(concurrency=1)
    job_id = env.submit(iterations=100_000)
    env.wait(job_id, mid_stack)
    # When the worker gets SIGTERM
    code, took = exit_on_sigterm(env, leaving)
    # Then it exits within 10 s, the job queued again with its checkpoint
    assert code == 0
    assert took <= 10, took
    assert env.job(job_id)["status"] == "queued", leaving.log_tail(80)
    # and another worker finishes it from there: one whole history, one attempt counted
    taker = env.worker(concurrency=1)
    job = env.wait(job_id, lambda j: j["status"] in TERMINAL, timeout=240)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1, job
    assert f"job {job_id} resumes from its checkpoint at step" in taker.log_tail(400)
    env.check()


def test_a_poison_job_in_a_stack_takes_no_stack_mate_with_it(env: FaultEnv) -> None:
    # Given a stack where one job kills its worker process every time it is claimed
    env.worker(concurrency=1)
    env.start_reconciler()

    def expect(name: str | None) -> Expectation:
        if name == "poison":
            return Expectation(status=JobStatus.FAILED, max_attempts=3)
        return Expectation(fused=True, max_attempts=3)

    ids = env.submit_stack({"name": ["poison", "a", "b", "c"]}, expect, iterations=300)
    # Then the others succeed, and the poison ends failed after its three attempts
    all_jobs(env, ids, lambda j: j["status"] in TERMINAL, 150)
    poison, *mates = (env.job(job_id) for job_id in ids)
    env.fault(poison["attempts"])
    assert poison["status"] == "failed", poison
    assert "gave up after 3 attempts" in poison["error"]
    assert all(job["status"] == "succeeded" for job in mates), mates
    env.check()


def test_redis_restarted_empty_with_a_fused_sweep_queued(make_env: Callable[..., FaultEnv]) -> None:
    # Given a fused sweep queued, no worker yet, and a Redis that keeps nothing on restart
    env = make_env(appendonly=False)
    ids = env.submit_stack({"seed": list(range(1, 9))}, iterations=2000)
    # When Redis dies and comes back empty: every batch message is gone
    env.redis.kill()
    env.fault()
    env.redis.start()
    env.start_reconciler()
    worker = env.worker(concurrency=1)
    # Then the reconciler sends them again as batches: every job trains in a stack, once
    all_jobs(env, ids, lambda j: j["status"] in TERMINAL, 120)
    assert any(counts["lost"] for counts in env.reconciled), env.reconciled
    assert all(env.job(job_id)["stack_size"] > 1 for job_id in ids)
    assert "Task trainq.train_job[" not in worker.log_tail(2000)
    env.check()


@pytest.mark.parametrize(
    ("limit", "reason"),
    [
        ("TRAINQ_JOB_SOFT_LIMIT_SECONDS", "soft time limit"),
        ("TRAINQ_JOB_HARD_LIMIT_SECONDS", "hard time limit"),
    ],
    ids=["soft", "hard"],
)
def test_time_limits_are_each_stacks_not_the_messages(
    env: FaultEnv, limit: str, reason: str
) -> None:
    # Given stacks of one job (0.2 to 0.3 s each: far below the limit even on a loaded
    # machine) in one message that takes longer than the limit (the soft limit off unless it is
    # the one tested, so a hard limit is what stops the runaway)
    limits = {"TRAINQ_JOB_SOFT_LIMIT_SECONDS": "0", limit: "4"}
    env.worker(concurrency=1, TRAINQ_MAX_STACK="1", **limits)
    env.start_reconciler()
    ids = env.submit_stack({"seed": list(range(1, 33))}, iterations=3_000)
    # and a stack that runs past the limit on its own
    failed = Expectation(status=JobStatus.FAILED, max_attempts=1)
    runaway = env.submit_stack({"seed": [1]}, lambda _: failed, iterations=100_000, H=12)
    env.fault()
    # Then the runaway fails with the reason; the message's jobs, each within it, succeed
    all_jobs(env, ids + runaway, lambda j: j["status"] in TERMINAL, 120)
    job = env.job(runaway[0])
    assert job["status"] == "failed", job
    assert reason in job["error"], job
    assert_message_outlived_the_limit(env, ids, 4)
    unfinished = [job for job in map(env.job, ids) if job["status"] != "succeeded"]
    assert not unfinished, unfinished
    env.check()


def assert_message_outlived_the_limit(env: FaultEnv, ids: list[int], limit: float) -> None:
    """The jobs of one message took longer together than the limit (else the test shows nothing)."""
    with env.sessions() as session:
        first, last = session.execute(
            sa.select(sa.func.min(Job.started_at), sa.func.max(Job.finished_at)).where(
                Job.id.in_(ids)
            )
        ).one()
    assert (last - first).total_seconds() > limit, (first, last)
