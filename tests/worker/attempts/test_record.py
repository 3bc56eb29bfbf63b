"""The record of an attempt: chunks and checkpoints stored only while the attempt owns its job."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.db import session_scope
from service.models import Checkpoint, Job, JobStatus
from tests.support.loss_chunks import stored_steps
from worker.attempts.claims import claim_job
from worker.attempts.record import finish_job, record_chunk, save_checkpoints


def steps(factory: so.sessionmaker[so.Session], job_id: int) -> list[int]:
    with factory() as session:
        return stored_steps(session, job_id)


def test_an_attempt_that_lost_its_lease_writes_nothing(
    factory: so.sessionmaker[so.Session], make_job: Callable[[], int]
) -> None:
    job_id = make_job()
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
    factory: so.sessionmaker[so.Session], make_job: Callable[[], int]
) -> None:
    job_id = make_job()
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
