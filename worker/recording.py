"""The job's record while it trains: claim, loss chunks with heartbeats, the terminal state."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so

from service.loss_store import cut_history, read_history, store_losses
from service.models import Checkpoint, Job, JobStatus
from service.models.base import utcnow


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
    # Why the attempt must end as failed though training went well (e.g. a time limit).
    failure: str | None = None
    # The checkpoint this attempt resumes from (None: from step 0).
    resume_step: int = 0
    resume_blob: bytes | None = None
    resume_layout: dict | None = None

    def take(self, first_step: int, losses: Sequence[float]) -> None:
        """Fold a stored chunk into the summary: best (earliest on ties), last, steps done."""
        self.take_best(range(first_step, first_step + len(losses)), losses)
        if len(losses):
            self.last_loss = float(losses[-1])
            self.steps = first_step + len(losses)

    def take_best(self, steps: Iterable[int], losses: Iterable[float]) -> None:
        """Keep the lowest loss seen and its step (the earliest of equal ones)."""
        for step, value in zip(steps, losses, strict=True):
            if self.best_loss is None or value < self.best_loss:
                self.best_loss, self.best_step = value, step

    def summary(self) -> tuple[float | None, int | None, float | None, int]:
        """The history's summary so far, to restore when a write is rolled back."""
        return self.best_loss, self.best_step, self.last_loss, self.steps

    def restore(self, summary: tuple[float | None, int | None, float | None, int]) -> None:
        """Go back to a summary taken before a write that did not commit."""
        self.best_loss, self.best_step, self.last_loss, self.steps = summary


def claim_job(
    session: so.Session, job_id: int, worker: str, lease_seconds: float, max_attempts: int = 3
) -> tuple[Claim | None, str]:
    """Take a job for this worker, or say why not (gone, ended, cancelled, held, out of tries)."""
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
    if job.attempts >= max_attempts:
        # Every earlier attempt died with its worker (a job that ends its own attempt records
        # a terminal state): a job that kills its worker must not take the queue down with it.
        job.status, job.finished_at, job.lease_expires_at = JobStatus.FAILED, now, None
        job.error = f"gave up after {job.attempts} attempts: the worker was lost each time"
        return None, JobStatus.FAILED
    job.status = JobStatus.RUNNING
    job.attempts += 1
    job.worker = worker
    job.started_at = now
    job.lease_expires_at = now + timedelta(seconds=lease_seconds)
    job.error = None
    claim = Claim(job_id=job_id, attempt=job.attempts, worker=worker)
    checkpoint = session.get(Checkpoint, job_id)
    if checkpoint is not None:
        claim.resume_step = checkpoint.step
        claim.resume_blob, claim.resume_layout = checkpoint.tensors, checkpoint.layout
    # A restarted attempt trains again from its checkpoint (or step 0): later losses go.
    cut_history(session, job_id, claim.resume_step)
    _summarise_kept_rows(session, claim)
    job.steps_done = claim.steps
    job.final_loss, job.min_loss, job.min_loss_step = (
        claim.last_loss,
        claim.best_loss,
        claim.best_step,
    )
    job.diverged_at = None
    return claim, JobStatus.RUNNING


def _summarise_kept_rows(session: so.Session, claim: Claim) -> None:
    """Carry the summary of the losses before the checkpoint into the new attempt."""
    if claim.resume_step == 0:
        return
    steps, losses = read_history(session, claim.job_id, 0, claim.resume_step)
    claim.take_best(steps.tolist(), losses.tolist())
    has_last = len(steps) and steps[-1] == claim.resume_step - 1
    claim.last_loss = float(losses[-1]) if has_last else None
    claim.steps = claim.resume_step


def save_checkpoint(
    session: so.Session, claim: Claim, step: int, blob: bytes, layout: dict
) -> bool:
    """Store the state to resume from at `step`, unless another attempt owns the job now."""
    job = session.get(Job, claim.job_id, with_for_update=True, populate_existing=True)
    if job is None or job.worker != claim.worker or job.attempts != claim.attempt:
        return False
    checkpoint = session.get(Checkpoint, claim.job_id) or Checkpoint(job_id=claim.job_id)
    checkpoint.step, checkpoint.attempt, checkpoint.created_at = step, claim.attempt, utcnow()
    checkpoint.tensors, checkpoint.layout = blob, layout
    session.add(checkpoint)
    return True


def record_chunk(
    session: so.Session, claim: Claim, first_step: int, losses: list[float], lease_seconds: float
) -> bool:
    """Store a chunk of losses and renew the lease; False when the job should stop."""
    # The job row first, locked: an attempt that lost the job writes nothing into its record.
    job = session.get(Job, claim.job_id, with_for_update=True, populate_existing=True)
    if job is None or job.worker != claim.worker or job.attempts != claim.attempt:
        claim.notes.append("lost the job to another attempt")
        return False
    if job.is_terminal:
        claim.notes.append(f"the job already ended as {job.status}")
        return False
    store_losses(session, claim.job_id, first_step, losses)
    claim.take(first_step, losses)
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
    # The record is complete: the state to resume from is no longer needed.
    session.execute(sa.delete(Checkpoint).where(Checkpoint.job_id == claim.job_id))
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


def fail_job(session: so.Session, job_id: int, error: str) -> bool:
    """End a job that is not yet terminal as failed with the reason (its attempt was killed)."""
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None or job.is_terminal:
        return False
    job.status, job.finished_at, job.lease_expires_at = JobStatus.FAILED, utcnow(), None
    job.error = error
    session.execute(sa.delete(Checkpoint).where(Checkpoint.job_id == job_id))
    return True
