"""Chunks of losses stored by the worker's insert, on both backends."""

from __future__ import annotations

import sqlalchemy.orm as so

from service.jobs import new_job, read_losses
from service.jobspec import validate_job
from worker.loss_rows import insert_losses
from worker.recording import claim_job, record_chunk


def add_job(session: so.Session) -> int:
    """A queued job's id."""
    job = new_job(validate_job({"stage": "optim", "iterations": 600}), "cpu")
    session.add(job)
    session.commit()
    return job.id


def test_chunks_land_at_their_steps_and_repeats_keep_the_first_rows(
    session: so.Session,
) -> None:
    job_id, other = add_job(session), add_job(session)
    first = [10.0 / (i + 1) for i in range(256)]
    insert_losses(session, job_id, 0, first)
    insert_losses(session, job_id, 256, [0.5, 1e30, 1e-300])
    # A chunk sent twice (a retried flush) and overlapping the stored steps changes nothing.
    insert_losses(session, job_id, 250, [99.0] * 9)
    insert_losses(session, other, 3, [7.0])
    insert_losses(session, other, 4, [])
    session.commit()
    steps, losses = read_losses(session, job_id)
    assert steps == list(range(259))
    assert losses[:256] == first
    assert losses[256:] == [0.5, 1e30, 1e-300]
    assert read_losses(session, other) == ([3], [7.0])


def test_record_chunk_keeps_the_summary_over_chunks(session: so.Session) -> None:
    job_id = add_job(session)
    claim, state = claim_job(session, job_id, "w@host", 60)
    assert claim is not None, state
    assert record_chunk(session, claim, 0, [4.0, 2.0, 3.0], 60)
    assert record_chunk(session, claim, 3, [1.0, 5.0], 60)
    session.commit()
    assert read_losses(session, job_id) == ([0, 1, 2, 3, 4], [4.0, 2.0, 3.0, 1.0, 5.0])
    assert (claim.best_loss, claim.best_step, claim.last_loss, claim.steps) == (1.0, 3, 5.0, 5)
