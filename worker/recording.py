"""The job's record while it trains: claim, loss chunks with heartbeats, the terminal state."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.dialects import postgresql, sqlite

from service.models import Job, JobStatus, Loss
from service.models.base import utcnow
from worker.loss_rows import insert_losses


@dataclass
class Claim:
    """What a worker holds while it runs a job."""

    job_id: int
    attempt: int
    worker: str
    best_loss: float | None = None
    best_step: int | None = None
    last_loss: float | None = None
    steps: int = 0
    notes: list[str] = field(default_factory=list)


def claim_job(
    session: so.Session, job_id: int, worker: str, lease_seconds: float
) -> tuple[Claim | None, str]:
    """Take a job for this worker, or say why not (gone, finished, cancelled, held elsewhere)."""
    job = session.get(Job, job_id, with_for_update=True)
    if job is None:
        return None, "missing"
    now = utcnow()
    if job.is_terminal:
        return None, job.status
    if job.cancel_requested:
        job.status, job.finished_at = JobStatus.CANCELLED, now
        return None, JobStatus.CANCELLED
    if job.status == JobStatus.RUNNING and job.lease_expires_at and job.lease_expires_at > now:
        return None, "held"
    job.status = JobStatus.RUNNING
    job.attempts += 1
    job.worker = worker
    job.started_at = now
    job.lease_expires_at = now + timedelta(seconds=lease_seconds)
    job.error = None
    # A restarted attempt trains from step 0 again: rows of an earlier attempt go.
    session.execute(sa.delete(Loss).where(Loss.job_id == job_id))
    job.steps_done = 0
    job.final_loss = job.min_loss = job.min_loss_step = job.diverged_at = None
    return Claim(job_id=job_id, attempt=job.attempts, worker=worker), JobStatus.RUNNING


def _insert_ignoring_duplicates(session: so.Session) -> sa.Insert:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(Loss).on_conflict_do_nothing(index_elements=["job_id", "step"])
    if dialect == "sqlite":
        return sqlite.insert(Loss).on_conflict_do_nothing(index_elements=["job_id", "step"])
    return sa.insert(Loss)


def record_chunk(
    session: so.Session, claim: Claim, first_step: int, losses: list[float], lease_seconds: float
) -> bool:
    """Store a chunk of losses and renew the lease; False when the job should stop."""
    if losses:
        insert_losses(session, claim.job_id, first_step, losses)
        for i, value in enumerate(losses):
            if claim.best_loss is None or value < claim.best_loss:
                claim.best_loss, claim.best_step = value, first_step + i
        claim.last_loss = losses[-1]
        claim.steps = first_step + len(losses)
    job = session.get(Job, claim.job_id, with_for_update=True, populate_existing=True)
    if job is None or job.worker != claim.worker or job.attempts != claim.attempt:
        claim.notes.append("lost the job to another attempt")
        return False
    job.steps_done = claim.steps
    job.final_loss = claim.last_loss
    job.min_loss, job.min_loss_step = claim.best_loss, claim.best_step
    job.lease_expires_at = utcnow() + timedelta(seconds=lease_seconds)
    return not job.cancel_requested


def finish_job(
    session: so.Session,
    claim: Claim,
    status: str,
    *,
    ran_on: str | None = None,
    torch_version: str | None = None,
    diverged_at: int | None = None,
    error: str | None = None,
) -> bool:
    """Write the job's one terminal state, unless another attempt owns it now."""
    job = session.get(Job, claim.job_id, with_for_update=True, populate_existing=True)
    if job is None or job.worker != claim.worker or job.attempts != claim.attempt:
        return False
    if job.is_terminal:
        return False
    job.status = status
    job.finished_at = utcnow()
    job.lease_expires_at = None
    job.steps_done = claim.steps
    job.final_loss = claim.last_loss
    job.min_loss, job.min_loss_step = claim.best_loss, claim.best_step
    job.diverged_at = diverged_at
    job.error = error
    if ran_on is not None:
        job.ran_on = ran_on
    if torch_version is not None:
        job.torch_version = torch_version
    return True


def mark_started_on(session: so.Session, claim: Claim, ran_on: str, torch_version: str) -> None:
    """Record the device and torch version the attempt really uses."""
    job = session.get(Job, claim.job_id)
    if job is not None and job.attempts == claim.attempt:
        job.ran_on, job.torch_version = ran_on, torch_version
