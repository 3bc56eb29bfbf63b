"""Fused stacks that refill: rows that pruned jobs leave take the sweep's queued jobs at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from service.jobs import job_spec
from service.models import Job, JobStatus
from tests.conftest import TERMINAL, Stack
from tests.e2e.conftest import OneWorker
from tests.e2e.test_search import Controllers
from tests.e2e.test_sweeps import SMALL, sweep_jobs, wait_for_sweep
from worker.training import TrainSpec
from worker.training.fused import train_fused_to_lists

STACK = 3
# The best first, then worse ones: asha prunes the two behind it at the first rung.
RATES = [1e-2, 1e-6, 1e-7, 3e-3, 1e-5, 3e-7, 1e-4, 3e-6]


@pytest.fixture(scope="module")
def one_worker() -> OneWorker:
    """One worker process that fuses at most three jobs per stack."""
    return OneWorker(6, {"TRAINQ_MAX_STACK": str(STACK)})


def test_pruned_rows_take_the_sweeps_queued_jobs_each_with_its_own_history(
    own_stack: Stack,
) -> None:
    stack = own_stack
    # Given an asha sweep of 8 fused jobs, one message, on a worker that stacks 3 at most
    body = {
        "name": "refill",
        "base": {**SMALL, "D_out": 4, "optimizer": "adam", "iterations": 600},
        "grid": {"lr": RATES},
        "early_stop": {"rule": "asha", "grace": 8, "reduction": 2},
        "fused": True,
    }
    sweep_id = stack.submit_sweep(body)
    # When the worker drains it
    sweep = wait_for_sweep(stack, sweep_id)
    with stack.sessions() as session:
        jobs = session.scalars(
            sa.select(Job).where(Job.sweep_id == sweep_id).order_by(Job.id)
        ).all()
        specs = [TrainSpec.from_fields(job_spec(job)) for job in jobs]
    # Then jobs were pruned, and rows they freed took later jobs while the first stack ran:
    # without refills the later stacks start only once all of the first has finished.
    assert sweep["counts"]["pruned"] >= 2, sweep
    assert sweep["counts"]["pruned"] + sweep["counts"]["succeeded"] == len(RATES), sweep
    first, later = jobs[:STACK], jobs[STACK:]
    assert jobs[0].status == JobStatus.SUCCEEDED
    assert jobs[0].attempts == 1
    refilled = [job for job in later if job.started_at < jobs[0].finished_at]
    assert refilled, [(job.id, job.started_at, job.finished_at) for job in jobs]
    # each refilled row records the stack it joined (the first job still trained in it)
    assert all(1 < job.stack_size <= STACK for job in refilled), [
        (job.id, job.stack_size) for job in refilled
    ]
    assert {job.worker for job in jobs} == {jobs[0].worker}
    # and every job, refilled or not, stored the history it has in a stack of its own
    for job, spec in zip(jobs, specs, strict=True):
        history = stack.losses(job.id)
        alone = train_fused_to_lists([spec])[0].losses
        assert history["steps"] == list(range(job.steps_done))
        assert history["losses"] == alone[: job.steps_done], job.id
        if job.status == JobStatus.PRUNED:
            assert job.pruned_at is not None
            assert job.steps_done == job.pruned_at + 1  # flushed at its rung
        else:
            assert job.steps_done == 600
    assert all(job.attempts == 1 for job in first + later)


def test_a_search_sweeps_stack_takes_the_trials_asked_after_its_pruned_ones(
    own_stack: Stack, tmp_path: Path
) -> None:
    stack = own_stack
    # Given a TPE search over adam's lr, 3 trials in flight, asha, and a controller
    body = {
        "name": "refill-search",
        # Long enough that the trials that go on outlast a controller pass (0.2 s) many times.
        "base": {**SMALL, "D_out": 4, "optimizer": "adam", "iterations": 4000},
        "search": {
            "method": "tpe",
            "n": 9,
            "parallel": STACK,
            "space": {"lr": {"log_uniform": [1e-7, 1e-2]}},
        },
        "early_stop": {"rule": "asha", "grace": 8, "reduction": 2},
        "seed": 3,
    }
    sweep_id = stack.submit_sweep(body)
    controllers = Controllers(stack, tmp_path)
    controllers.start("refill")
    try:
        # When the controller asks trials as others end and the one worker process trains them
        sweep = wait_for_sweep(stack, sweep_id)
    finally:
        controllers.stop_all()
    jobs = sweep_jobs(stack, sweep_id)
    # Then all 9 trials ended, each once, and a trial asked after the first three started
    # while one of those still trained: with one pool process, only in that same stack.
    assert len(jobs) == sweep["job_count"] == 9, sweep
    assert all(job.attempts == 1 and job.status in TERMINAL for job in jobs), jobs
    assert sweep["counts"]["pruned"] >= 1, sweep
    first_done = max(job.finished_at for job in jobs[:STACK])
    timeline = [(job.id, job.status, job.started_at, job.finished_at) for job in jobs]
    assert any(job.started_at < first_done for job in jobs[STACK:]), timeline
