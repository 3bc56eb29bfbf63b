"""Claims: a job taken by one attempt at a time, alone, for a stack or to refill one."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.db import session_scope
from service.dispatch.fusing import batch_key, fields_of
from service.jobs import new_job
from service.jobspec import validate_job
from service.models import Job, JobStatus, Sweep
from worker.attempts.claims import claim_job, claim_stack, refill_claims


def test_claim_refuses_beyond_max_attempts_and_fails_the_job(
    factory: so.sessionmaker[so.Session], make_job: Callable[[], int]
) -> None:
    job_id = make_job()
    for _ in range(2):
        with session_scope(factory) as session:
            claim, state = claim_job(session, job_id, "a", lease_seconds=-1, max_attempts=2)
            assert claim is not None
    with session_scope(factory) as session:
        claim, state = claim_job(session, job_id, "a", lease_seconds=-1, max_attempts=2)
    assert claim is None
    assert state == JobStatus.FAILED
    with factory() as session:
        job = session.get(Job, job_id)
        assert job.status == JobStatus.FAILED
        assert job.attempts == 2
        assert "gave up after 2 attempts" in job.error


def test_a_claimed_job_records_the_size_of_the_stack_it_trains_in(
    factory: so.sessionmaker[so.Session], make_job: Callable[[], int]
) -> None:
    alone, held, *stack = (make_job() for _ in range(5))
    with session_scope(factory) as session:
        claim_job(session, alone, "a", lease_seconds=60, max_attempts=3)
        claim_job(session, held, "a", lease_seconds=60, max_attempts=3)
    # Of a message of four jobs, one is held by another attempt: the stack is the other three
    with session_scope(factory) as session:
        claims, refused = claim_stack(session, [held, *stack], "b", 60, max_attempts=3)
    assert [claim.job_id for claim in claims] == stack
    assert refused == {held: "held"}
    with factory() as session:
        sizes = {job.id: job.stack_size for job in session.scalars(sa.select(Job))}
    assert sizes == {alone: 1, held: 1, **dict.fromkeys(stack, 3)}


def test_jobs_that_refill_a_stack_record_the_size_of_the_stack_they_join(
    factory: so.sessionmaker[so.Session],
) -> None:
    # Given a sweep of five queued jobs
    with session_scope(factory) as session:
        sweep = Sweep(name="s", request={}, job_count=5, seed=1)
        session.add(sweep)
        session.flush()
        jobs = [new_job(validate_job({"stage": "nn", "iterations": 10}), "cpu") for _ in range(5)]
        for job in jobs:
            job.sweep_id = sweep.id
        session.add_all(jobs)
        session.flush()
        sweep_id, key = sweep.id, batch_key(fields_of(jobs[0]), "cpu")
    # When a stack where three jobs still train refills its two free rows
    with session_scope(factory) as session:
        taken = refill_claims(session, sweep_id, key, 2, "w", 60, 3, training=3)
    # Then each joining job records the stack of five it trains in, not one alone
    joined = [claim.job_id for claim, _ in taken]
    assert len(joined) == 2
    with factory() as session:
        sizes = [session.get_one(Job, job_id).stack_size for job_id in joined]
    assert sizes == [5, 5]
