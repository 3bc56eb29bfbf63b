"""Fused jobs end to end: rows -> one batch message -> a real worker -> each job's own history."""

from __future__ import annotations

import math

import sqlalchemy as sa

from service.broker import enqueue_batches, make_celery
from service.config import Config
from service.jobs import new_job
from service.jobspec import validate_job
from service.models import Job, LossChunk
from service.sweeps.batching import plan_batches
from tests.conftest import Stack, count_rows
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
    # All eight trained as one stack: they ran over the same span of time.
    assert max(job["started_at"] for job in jobs) <= min(job["finished_at"] for job in jobs)


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
    with stack.sessions() as session:
        assert session.get(Job, ids[1]).steps_done == cancelled["steps_done"]
