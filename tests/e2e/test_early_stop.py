"""Early stopping end to end: a grid sweep with asha on real workers ends with jobs pruned."""

from __future__ import annotations

from typing import Any

import pytest

from service.models import Job, JobStatus
from tests.conftest import Stack
from tests.e2e.test_sweeps import SMALL, sweep_jobs, wait_for_sweep
from tests.support.rung_decisions import asha_rung_decisions

ITERATIONS = 1000
RUNGS = [8 * 2**k for k in range(7)]  # grace 8, reduction 2: 8 ... 512 (< 999)


def drained_grid(
    stack: Stack, name: str, rates: list[float], early_stop: dict, fused: bool
) -> tuple[dict[str, Any], list[Job]]:
    """Submit a grid of adam over `rates` (seed 1), let the workers drain it: its end, its jobs."""
    body = {
        "name": name,
        "base": {**SMALL, "D_out": 4, "optimizer": "adam", "iterations": ITERATIONS},
        "grid": {"lr": rates},
        "seeds": [1],
        "early_stop": early_stop,
        "fused": fused,
    }
    sweep_id = stack.submit_sweep(body)
    return wait_for_sweep(stack, sweep_id), sweep_jobs(stack, sweep_id)


@pytest.mark.parametrize("fused", [False, True])
def test_an_asha_grid_sweep_prunes_the_worse_jobs_keeping_their_history(
    stack: Stack, fused: bool
) -> None:
    # Given a grid whose first jobs learn fastest (adam, lr falling by decades)
    # When the workers drain it
    asha = {"rule": "asha", "grace": 8, "reduction": 2}
    sweep, jobs = drained_grid(stack, "asha", [1e-2, 3e-3, 1e-4, 1e-5, 1e-6, 1e-7], asha, fused)
    # Then the worst ones ended pruned at a rung, the best ran to the end
    counts = sweep["counts"]
    assert counts["pruned"] >= 2, sweep
    assert counts["pruned"] + counts["succeeded"] == 6, sweep
    assert jobs[0].status == JobStatus.SUCCEEDED  # the best is never stopped
    trained = sum(job.steps_done for job in jobs)
    print(f"\nfused={fused}: {counts['pruned']} of 6 pruned, {trained} of {6 * ITERATIONS} steps")
    for job in jobs:
        history = stack.losses(job.id)
        assert history["steps"] == list(range(job.steps_done))
        assert job.final_loss == history["losses"][-1]
        if job.status == JobStatus.PRUNED:
            # Stopped at its rung: flushed as its loss there was computed, trained no further.
            assert job.pruned_at in RUNGS
            assert job.steps_done == job.pruned_at + 1
            assert job.pruned_loss == history["losses"][job.pruned_at]
            assert job.finished_at is not None
            body = stack.client.get(f"/api/v1/jobs/{job.id}").get_json()
            assert (body["status"], body["pruned_at"]) == ("pruned", job.pruned_at)
        else:
            assert (job.pruned_at, job.steps_done) == (None, ITERATIONS)
    # And each decision at each rung is the rule's on the histories stored when it was made
    with stack.sessions() as session:
        wrong = [d for d in asha_rung_decisions(session, sweep["id"]) if not d.agrees]
    assert not wrong, wrong


def test_a_median_grid_sweep_prunes_jobs_worse_than_the_ended_ones(stack: Stack) -> None:
    # Given a grid whose first jobs learn fastest, run two at a time (one job per message)
    # When the workers drain it
    median = {"rule": "median", "warmup": 8}
    sweep, jobs = drained_grid(stack, "median", [1e-2, 3e-3, 1e-6, 1e-7, 3e-8, 1e-8], median, False)
    # Then jobs that started once better ones had ended stopped at a flush, worse than those
    counts = sweep["counts"]
    assert counts["pruned"] >= 2, sweep
    assert counts["pruned"] + counts["succeeded"] == 6, sweep
    assert jobs[0].status == JobStatus.SUCCEEDED
    for job in jobs:
        if job.status == JobStatus.PRUNED:
            history = stack.losses(job.id)
            assert job.pruned_at is not None
            assert job.steps_done == job.pruned_at + 1
            assert job.pruned_loss == history["losses"][job.pruned_at]
