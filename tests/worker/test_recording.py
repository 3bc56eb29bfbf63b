"""Claims, chunks and checkpoints in the database: one attempt owns the record at a time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from service.db import make_engine, make_session_factory, session_scope
from service.dispatch.fusing import batch_key, fields_of
from service.jobs import new_job
from service.jobspec import validate_job
from service.models import Checkpoint, Job, JobStatus, Sweep
from tests.support.loss_chunks import stored_steps
from worker.recording import (
    claim_job,
    claim_stack,
    finish_job,
    record_chunk,
    refill_claims,
    save_checkpoints,
)


@pytest.fixture
def factory(database_url: str) -> Iterator[so.sessionmaker[so.Session]]:
    """Writer sessions on a fresh database, its engine disposed after."""
    engine = make_engine(database_url)
    yield make_session_factory(engine, writer=True)
    engine.dispose()


def make_job(factory: so.sessionmaker[so.Session]) -> int:
    with session_scope(factory) as session:
        job = new_job(validate_job({"stage": "nn", "iterations": 10}), "cpu")
        session.add(job)
    return job.id


def steps(factory: so.sessionmaker[so.Session], job_id: int) -> list[int]:
    with factory() as session:
        return stored_steps(session, job_id)


def test_an_attempt_that_lost_its_lease_writes_nothing(
    factory: so.sessionmaker[so.Session],
) -> None:
    job_id = make_job(factory)
    with session_scope(factory) as session:
        first, _ = claim_job(session, job_id, "a", lease_seconds=-1, max_attempts=3)
    with session_scope(factory) as session:
        second, state = claim_job(session, job_id, "b", lease_seconds=60, max_attempts=3)
    assert first
    assert second
    assert state == JobStatus.RUNNING
    assert second.attempt == 2
    # The first attempt wakes up and tries to write: refused, nothing stored.
    with session_scope(factory) as session:
        assert record_chunk(session, first, 0, [1.0, 2.0], 60) is False
    assert steps(factory, job_id) == []
    with session_scope(factory) as session:
        assert record_chunk(session, second, 0, [3.0, 4.0], 60) is True
        assert finish_job(session, first, JobStatus.SUCCEEDED) is False
    assert steps(factory, job_id) == [0, 1]


def test_a_restarted_attempt_keeps_rows_before_the_checkpoint(
    factory: so.sessionmaker[so.Session],
) -> None:
    job_id = make_job(factory)
    with session_scope(factory) as session:
        claim, _ = claim_job(session, job_id, "a", lease_seconds=-1, max_attempts=3)
    with session_scope(factory) as session:
        record_chunk(session, claim, 0, [5.0, 1.0, 4.0, 3.0, 2.0], -1)
        assert (
            save_checkpoints(session, [(claim, 4, b"\x00" * 8, {"tensors": [], "extra": {}})]) == 1
        )
        record_chunk(session, claim, 5, [0.5, 0.4], -1)
    # The worker died; the next attempt resumes at step 4.
    with session_scope(factory) as session:
        again, _ = claim_job(session, job_id, "b", lease_seconds=60, max_attempts=3)
        job = session.get(Job, job_id)
        assert (job.steps_done, job.final_loss, job.min_loss, job.min_loss_step) == (4, 3.0, 1.0, 1)
    assert again.resume_step == 4
    assert again.resume_blob == b"\x00" * 8
    assert steps(factory, job_id) == [0, 1, 2, 3]
    with session_scope(factory) as session:
        assert finish_job(session, again, JobStatus.SUCCEEDED)
    with factory() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Checkpoint)) == 0


def test_claim_refuses_beyond_max_attempts_and_fails_the_job(
    factory: so.sessionmaker[so.Session],
) -> None:
    job_id = make_job(factory)
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
    factory: so.sessionmaker[so.Session],
) -> None:
    alone, held, *stack = (make_job(factory) for _ in range(5))
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
