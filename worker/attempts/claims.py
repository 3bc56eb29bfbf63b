"""Claims: a worker takes a job (alone, for a stack, or to refill one) with its history so far."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from service import job_states
from service.dispatch.fusing import batch_key, fields_of
from service.job_states import Attempt
from service.jobs import job_spec
from service.loss_store import cut_history, read_history
from service.models import Checkpoint, Job, JobStatus, Sweep
from service.sweeps.early_stop import Rule
from service.sweeps.policy import SweepPolicy


@dataclass
class Claim(Attempt):
    """An attempt a worker holds, with the summary of the history it has recorded so far."""

    best_loss: float | None = None
    best_step: int | None = None
    last_loss: float | None = None
    steps: int = 0
    # Why the attempt must end as failed though training went well (e.g. a time limit).
    failure: str | None = None
    # The checkpoint this attempt resumes from (None: from step 0).
    resume_step: int = 0
    resume_blob: bytes | None = None
    resume_layout: dict | None = None
    # The sweep's early-stopping rule, read once at the claim (None: the job runs to its end).
    early_stop: Rule | None = None
    # The sweep the job belongs to: a fused stack refills freed rows from its queued jobs.
    sweep_id: int | None = None
    # Its sweep is a search: its end is announced, so the controller asks the next trial.
    searched: bool = False

    def write_summary(self, job: Job) -> None:
        """Copy the summary into the job's row."""
        job.steps_done = self.steps
        job.final_loss = self.last_loss
        job.min_loss, job.min_loss_step = self.best_loss, self.best_step

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
    session: so.Session,
    job_id: int,
    worker: str,
    lease_seconds: float,
    max_attempts: int,
    stack_size: int = 1,
) -> tuple[Claim | None, str]:
    """Take a job for this worker with its history up to its checkpoint, or say why not."""
    job, state = job_states.claim(session, job_id, worker, lease_seconds, max_attempts, stack_size)
    if job is None:
        return None, state
    claim = Claim(job_id=job_id, attempt=job.attempts, worker=worker, sweep_id=job.sweep_id)
    if job.sweep_id is not None:
        request = session.scalar(sa.select(Sweep.request).where(Sweep.id == job.sweep_id))
        policy = SweepPolicy.of(request)
        claim.early_stop, claim.searched = policy.early_stop, policy.search
    checkpoint = session.get(Checkpoint, job_id)
    if checkpoint is not None:
        claim.resume_step = checkpoint.step
        claim.resume_blob, claim.resume_layout = checkpoint.tensors, checkpoint.layout
    # A restarted attempt trains again from its checkpoint (or step 0): later losses go.
    cut_history(session, job_id, claim.resume_step)
    _summarise_kept_rows(session, claim)
    claim.write_summary(job)
    job.diverged_at = None
    return claim, state


def claim_stack(
    session: so.Session,
    job_ids: Sequence[int],
    worker: str,
    lease_seconds: float,
    max_attempts: int,
) -> tuple[list[Claim], dict[int, str]]:
    """Take jobs to train as one stack: their claims, and why each job not taken was not."""
    claims: list[Claim] = []
    refused: dict[int, str] = {}
    for job_id in job_ids:
        claim, state = claim_job(
            session, job_id, worker, lease_seconds, max_attempts, stack_size=len(job_ids)
        )
        if claim is None:
            refused[job_id] = state
        else:
            claims.append(claim)
    if refused:
        # The stack trains the jobs taken, not every job of the message.
        for claim in claims:
            session.get_one(Job, claim.job_id).stack_size = len(claims)
    return claims, refused


def refill_claims(
    session: so.Session,
    sweep_id: int,
    key: tuple,
    free: int,
    worker: str,
    lease_seconds: float,
    max_attempts: int,
    training: int = 0,
) -> list[tuple[Claim, dict[str, Any]]]:
    """Take up to `free` queued jobs of the sweep that fuse with `key`, to train from step 0
    beside the `training` jobs left in the stack; each claim with its job's fields.

    Only fresh jobs join a live stack: one with a checkpoint resumes its own way, and one
    already retried twice trains alone (see planning.plan_stacks). Their messages, when they
    come, find them taken.
    """
    candidates = session.scalars(
        sa.select(Job)
        .outerjoin(Checkpoint, Checkpoint.job_id == Job.id)
        .where(
            Job.sweep_id == sweep_id,
            Job.status == JobStatus.QUEUED,
            Job.queue == key[0],
            Job.attempts < 2,
            Job.cancel_requested.is_(False),
            Checkpoint.job_id.is_(None),
        )
        .order_by(Job.id)
        .limit(max(4 * free, 16))
    ).all()
    claims: list[tuple[Claim, dict[str, Any]]] = []
    for job in candidates:
        if len(claims) == free:
            break
        if batch_key(fields_of(job), job.queue) != key:
            continue
        claim, _ = claim_job(session, job.id, worker, lease_seconds, max_attempts)
        if claim is not None:
            claims.append((claim, job_spec(job)))
    # Each joins a stack of the jobs still training and those joining with it.
    for claim, _ in claims:
        session.get_one(Job, claim.job_id).stack_size = training + len(claims)
    return claims


def _summarise_kept_rows(session: so.Session, claim: Claim) -> None:
    """Carry the summary of the losses before the checkpoint into the new attempt."""
    if claim.resume_step == 0:
        return
    steps, losses = read_history(session, claim.job_id, 0, claim.resume_step)
    claim.take_best(steps.tolist(), losses.tolist())
    has_last = len(steps) and steps[-1] == claim.resume_step - 1
    claim.last_loss = float(losses[-1]) if has_last else None
    claim.steps = claim.resume_step
