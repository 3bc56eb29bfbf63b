"""Every change of a job's status: once its row is created queued, only this module writes it.

queued -> running (claim) -> one of succeeded, diverged, failed, cancelled, pruned (finish,
fail, cancel, give up, prune). A running job belongs to one attempt: the row names its worker
and attempt number, and an attempt that no longer matches them (its lease ran out and another
attempt claimed the job) writes nothing, neither a loss nor a terminal state. Every time
written here is the database's (`db.database_now`): hosts compare each other's leases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeGuard

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.db import database_now, locked, locking
from service.models import Checkpoint, Job, JobStatus
from service.models.base import UTCDateTime


@dataclass
class Attempt:
    """One attempt at a job: what a worker holds while it runs it."""

    job_id: int
    attempt: int
    worker: str


def owns(job: Job | None, attempt: Attempt) -> TypeGuard[Job]:
    """The ownership rule: the row still names this attempt's worker and number."""
    return job is not None and job.worker == attempt.worker and job.attempts == attempt.attempt


def claim(
    session: so.Session,
    job_id: int,
    worker: str,
    lease_seconds: float,
    max_attempts: int,
    stack_size: int = 1,
) -> tuple[Job | None, str]:
    """Start the job's next attempt (running, under a lease), or say why not.

    The reasons: missing, held (another attempt's lease runs), or the state it ended in;
    a job asked to stop ends cancelled, one out of attempts ends failed. `stack_size` is how
    many jobs the attempt trains with: 1 alone, K in a fused stack of K.
    """
    job = locked(session, Job, job_id)
    if job is None:
        return None, "missing"
    now = database_now(session)
    if job.is_terminal:
        return None, job.status
    if job.cancel_requested:
        _end(session, job, JobStatus.CANCELLED, now)
        return None, JobStatus.CANCELLED
    if job.status == JobStatus.RUNNING and job.lease_expires_at and job.lease_expires_at > now:
        return None, "held"
    if job.attempts >= max_attempts:
        # Every earlier attempt died with its worker (a job that ends its own attempt records
        # a terminal state): a job that kills its worker must not take the queue down with it.
        give_up(session, job, now)
        return None, JobStatus.FAILED
    job.status = JobStatus.RUNNING
    job.attempts += 1
    job.worker = worker
    job.started_at = now
    job.lease_expires_at = now + timedelta(seconds=lease_seconds)
    job.error = None
    job.stack_size = stack_size
    return job, JobStatus.RUNNING


def held(session: so.Session, attempts: Sequence[Attempt]) -> dict[int, Job]:
    """Lock the attempts' job rows; those each attempt still owns and that have not ended."""
    ids = [attempt.job_id for attempt in attempts]
    jobs = {job.id: job for job in session.scalars(locking(sa.select(Job).where(Job.id.in_(ids))))}
    return {
        attempt.job_id: jobs[attempt.job_id]
        for attempt in attempts
        if owns(jobs.get(attempt.job_id), attempt) and not jobs[attempt.job_id].is_terminal
    }


def renew(session: so.Session, jobs: Sequence[Job], lease_seconds: float) -> None:
    """Extend the leases of jobs their attempts hold (see `held`)."""
    if not jobs:
        return
    lease = database_now(session) + timedelta(seconds=lease_seconds)
    for job in jobs:
        job.lease_expires_at = lease


def finish(
    session: so.Session, attempt: Attempt, status: str, error: str | None = None
) -> Job | None:
    """End the attempt's job in `status`; None (nothing written) unless the attempt holds it."""
    job = held(session, [attempt]).get(attempt.job_id)
    if job is None:
        return None
    _end(session, job, status, database_now(session), error)
    return job


def hand_back(session: so.Session, attempt: Attempt) -> Job | None:
    """Queue a held job again, its attempt not counted: its worker stopped, not the job."""
    job = held(session, [attempt]).get(attempt.job_id)
    if job is None:
        return None
    job.status, job.worker, job.lease_expires_at = JobStatus.QUEUED, None, None
    job.attempts -= 1
    return job


def fail(session: so.Session, job_id: int, error: str) -> bool:
    """End a job that has not ended as failed, whichever attempt runs it (one was killed)."""
    job = locked(session, Job, job_id)
    if job is None or job.is_terminal:
        return False
    _end(session, job, JobStatus.FAILED, database_now(session), error)
    return True


def give_up(session: so.Session, job: Job, now: datetime) -> None:
    """End a job whose every attempt died with its worker as failed."""
    error = f"gave up after {job.attempts} attempts: the worker was lost each time"
    _end(session, job, JobStatus.FAILED, now, error)


def cancel(session: so.Session, job: Job) -> None:
    """Cancel a job that has not ended: a queued one at once, a running one at its next flush."""
    job.cancel_requested = True
    if job.status == JobStatus.QUEUED:
        _end(session, job, JobStatus.CANCELLED, database_now(session))


def cancel_sweep(session: so.Session, sweep_id: int) -> None:
    """`cancel` for every job of a sweep that has not ended, in one UPDATE."""
    queued = Job.status == JobStatus.QUEUED.value
    session.execute(
        sa.update(Job)
        .where(Job.sweep_id == sweep_id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
        .values(
            cancel_requested=True,
            status=sa.case((queued, JobStatus.CANCELLED.value), else_=Job.status),
            finished_at=sa.case(
                (queued, sa.literal(database_now(session), UTCDateTime())), else_=Job.finished_at
            ),
        )
        .execution_options(synchronize_session=False)
    )


def prune(session: so.Session, job: Job, rung: int, loss: float) -> None:
    """End a running job its sweep's early-stopping rule stopped at step `rung` (its loss there).

    The caller holds the row (see `held`); the history and steps_done stay as they are.
    """
    _end(session, job, JobStatus.PRUNED, database_now(session))
    job.pruned_at, job.pruned_loss = rung, loss


def _end(
    session: so.Session, job: Job, status: str, now: datetime, error: str | None = None
) -> None:
    """The terminal write: status, end time, no lease, and no checkpoint left to resume from."""
    job.status, job.finished_at, job.lease_expires_at, job.error = status, now, None, error
    session.execute(sa.delete(Checkpoint).where(Checkpoint.job_id == job.id))
